"""The archive's manifest: where the model came from, what each file hashes to, which versions.

``reranker-manifest.json`` is the archive's first entry, so reading it never decompresses the
weights. It is checked before anything acts on it: at most ``MAX_MANIFEST_BYTES``, each field
of the right type, and (``verify.py``) every file's hash against the archive's contents.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sagemaker_reranker.inference.reranker_contract import (
    MANIFEST,
    MAX_INSTRUCTION_CHARS,
    MAX_MANIFEST_BYTES,
    PROMPTS,
    SCORING_KINDS,
)

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
PRINTABLE = re.compile(r"^[\x20-\x7e]{1,256}$")


class PackageError(Exception):
    """A problem with the model or the output path, reported in one line."""


@dataclass
class Manifest:
    """What the archive holds; deploy tags resources with ``sha256`` and ``revision``."""

    source: str
    revision: str | None
    weights: bool
    """Whether weight files are baked in (``reranker_contract.is_weight_file``)."""
    files: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    # How the handler scores pairs (decided by ``package``, see ``kinds.py``); None in
    # archives that could not tell (no weights, config not read): the handler decides.
    scoring: str | None = None
    """``"classifier"`` (``*ForSequenceClassification``, 1 label: the logit; 2 labels:
    ``logit[1] − logit[0]``) or ``"yes-no"`` (causal LM: ``logit(yes) − logit(no)``)."""
    prompt: str | None = None
    """``"qwen3-reranker"`` when each pair is wrapped in Qwen3-Reranker's prompt (every yes-no
    model, and a converted Qwen3 classifier); None for plain (query, document) pairs."""
    instruction: str | None = None
    """The prompt's default instruction (a request's ``instruction`` replaces it); set when
    ``prompt`` is, and when ``scoring`` is null and ``package`` was given one."""
    weights_bytes: int | None = None
    """Bytes of weight files in the archive (0 without weights)."""
    parameters: int | None = None
    """Parameters in the safetensors weights (None for pickle weights or none)."""
    body_parameters: int | None = None
    """``parameters`` less embedding tables and LM head: what each token is multiplied
    through, so compute per token is about twice this."""

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and type-check; keys this version does not know (a newer one's) are ignored."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise PackageError(f"{MANIFEST} is over {MAX_MANIFEST_BYTES} bytes: not a manifest")
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError) as error:
            raise PackageError(f"{MANIFEST} is not valid JSON ({error})") from None
        if not isinstance(payload, dict):
            raise PackageError(f"{MANIFEST} is not a JSON object")
        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in payload.items() if key in known}
        for key, value in values.items():
            problem = _FIELD_CHECKS.get(key, _any)(value)
            if problem:
                raise PackageError(f"{MANIFEST}: {key!r} {problem}")
        try:
            return cls(**values)
        except TypeError:
            missing = [name for name in ("source", "revision", "weights") if name not in values]
            raise PackageError(f"{MANIFEST} lacks {', '.join(map(repr, missing))}") from None


def _any(value: Any) -> str | None:
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and PRINTABLE.match(value):
        return None
    return "must be printable text of at most 256 characters"


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _scoring(value: Any) -> str | None:
    return None if value is None or value in SCORING_KINDS else "must be null or a scoring kind"


def _prompt(value: Any) -> str | None:
    return None if value is None or value in PROMPTS else "must be null or a known prompt"


def _instruction(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and 0 < len(value) <= MAX_INSTRUCTION_CHARS):
        return None
    return f"must be null or text of 1 to {MAX_INSTRUCTION_CHARS} characters"


def _count(value: Any) -> str | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return None
    return "must be null or a whole number of at least 0"


def _hashes(value: Any) -> str | None:
    if isinstance(value, dict) and all(
        isinstance(name, str) and isinstance(digest, str) and SHA256_HEX.match(digest)
        for name, digest in value.items()
    ):
        return None
    return "must map file names to sha256 hex digests"


def _strings(value: Any) -> str | None:
    if isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        return None
    return "must map names to strings"


_FIELD_CHECKS = {
    "source": _text,
    "revision": _optional_text,
    "weights": _bool,
    "files": _hashes,
    "versions": _strings,
    "scoring": _scoring,
    "prompt": _prompt,
    "instruction": _instruction,
    "weights_bytes": _count,
    "parameters": _count,
    "body_parameters": _count,
}


def file_sha256(path: Path, advance: Callable[[int], None] | None = None) -> str:
    """The file's sha256; ``advance(n)`` is told of every ``n`` bytes read (progress)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            if advance is not None:
                advance(len(chunk))
    return digest.hexdigest()


def read_manifest(archive: Path) -> Manifest | None:
    """The manifest of a packaged archive, or None for archives made elsewhere.

    Only parsed and type-checked: ``verify.inspect_archive`` also checks it against the files.
    """
    from sagemaker_reranker.deploy.packaging.tar_reader import TarReader, read_small

    with TarReader(archive) as reader:
        for member in reader:  # first in our archives; a foreign one is scanned to its end
            if member.name == MANIFEST and not member.is_dir:
                return Manifest.from_json(read_small(member, MAX_MANIFEST_BYTES))
    return None
