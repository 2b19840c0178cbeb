"""The archive's manifest: where the model came from, what each file hashes to, which versions.

``reranker-manifest.json`` is the archive's first entry, so reading it never decompresses the
weights.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "reranker-manifest.json"


class PackageError(Exception):
    """A problem with the model or the output path, reported in one line."""


@dataclass
class Manifest:
    """What the archive holds; deploy tags resources with ``sha256`` and ``revision``."""

    source: str
    revision: str | None
    weights: bool
    files: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        return cls(**json.loads(data))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(archive: Path) -> Manifest | None:
    """The manifest of a packaged archive, or None for archives made elsewhere."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:  # first in our archives; a foreign one is scanned to its end
            if member.name == MANIFEST and member.isfile():
                return Manifest.from_json(tar.extractfile(member).read())
    return None
