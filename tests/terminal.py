"""A command run with its stderr on a pseudo-terminal, as a user at a shell sees it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
from typing import Any

SILENCE_TIMEOUT = 120


def stderr_on_a_terminal(command: list[str], **popen: Any) -> str:
    """Everything ``command`` drew on its terminal stderr (stdout discarded); it must exit 0."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=follower, **popen)
    os.close(follower)
    drawn = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], SILENCE_TIMEOUT)
            if not ready:
                raise AssertionError(f"no output for {SILENCE_TIMEOUT} s: {drawn[-500:]!r}")
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closes when the process ends
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
        assert process.wait(timeout=SILENCE_TIMEOUT) == 0, drawn.decode(errors="replace")
    return drawn.decode("utf-8", errors="replace")
