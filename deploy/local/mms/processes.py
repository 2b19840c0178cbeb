"""The model server's process tree, read from ``/proc``: MMS's Java process and its workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def processes() -> Iterator[tuple[int, str, int]]:
    """``(pid, state, parent pid)`` of every process; one that ends while read is left out."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
            parent = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
        yield int(entry.name), fields[0], parent


def descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (MMS's Python workers), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for child, _, parent in processes():
        children.setdefault(parent, []).append(child)
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found
