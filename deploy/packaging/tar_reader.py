"""A strict, bounded reader of ``model.tar.gz``: regular files and folders, nothing else.

``package`` writes only regular files, so an archive holding a link, a device, a FIFO or a
sparse file was made elsewhere and is refused outright: without links, no entry can make a
later one land outside the extraction folder, whatever the platform's path limits
(CVE-2025-4517 broke ``tarfile``'s own link checks that way). Headers are parsed one 512-byte
block at a time, so a GNU long name or a pax header is read only when it is small, and the
sizes the headers declare are checked against the limits before any data is read: a
decompression bomb is refused at its first header, not after filling the disk.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sagemaker_reranker.deploy.packaging.manifest import PackageError

BLOCK = 512
CHUNK = 1 << 20
MAX_META_BYTES = 64 * 1024  # a GNU long name or a pax header; real ones are a few hundred bytes
MAX_NAME_BYTES = 4096
MAX_COMPONENT_BYTES = 255
# An 8B-parameter reranker in bf16 is ~16 GB (14.9 GiB) of weights; tokenizer and margin on top.
DEFAULT_MAX_BYTES = 24 << 30
DEFAULT_MAX_ENTRIES = 10_000
# Weights barely compress (~1.1:1), tokenizer JSON ~5:1; zeros reach ~1000:1. Past 256 MiB, an
# archive must not expand more than this many times its compressed size.
MAX_RATIO = 100
RATIO_FREE_BYTES = 256 << 20
ENV_MAX_BYTES = "RERANKER_EXTRACT_MAX_BYTES"
ENV_MAX_ENTRIES = "RERANKER_EXTRACT_MAX_FILES"

FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
KIND_NAMES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.GNUTYPE_LONGLINK: "a link (long link name)",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.CONTTYPE: "a contiguous file",
}


@dataclass(frozen=True)
class Limits:
    """How much an archive may hold: total bytes of its files, and entries (files, folders)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, or ``RERANKER_EXTRACT_MAX_BYTES`` / ``RERANKER_EXTRACT_MAX_FILES``."""
        return cls(
            _env_int(ENV_MAX_BYTES, DEFAULT_MAX_BYTES),
            _env_int(ENV_MAX_ENTRIES, DEFAULT_MAX_ENTRIES),
        )


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise PackageError(f"{name}={raw!r} must be a positive whole number")
    return int(raw)


@dataclass
class Member:
    """One entry: ``name`` is relative and normalised (no ``.``, ``..`` or empty parts)."""

    name: str
    is_dir: bool
    size: int
    _reader: TarReader

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.name.split("/"))

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, in chunks (only while this is the current entry)."""
        return self._reader._data(self)


class _HashingFile:
    """The raw archive, hashed as gzip reads it (the archive's sha256 in the same pass)."""

    def __init__(self, raw: BinaryIO, digest, advance: Callable[[int], None] | None) -> None:
        self.raw = raw
        self.digest = digest
        self.advance = advance

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        if self.advance is not None:
            self.advance(len(data))
        return data


class TarReader:
    """Iterate a gzip-compressed tar archive's members, refusing anything but files and folders.

    ``for member in reader`` yields each entry; a file's data is read with ``member.chunks()``
    (skipped if not read). ``sha256()`` reads the rest of the file and returns its digest.
    ``advance(n)`` is told of every ``n`` bytes of the archive file read (progress).
    """

    def __init__(
        self,
        archive: Path,
        limits: Limits | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> None:
        self.archive = Path(archive)
        self.limits = limits or Limits.from_env()
        self._raw = open(self.archive, "rb")  # noqa: SIM115 - closed by close()
        self._digest = hashlib.sha256()
        compressed = os.fstat(self._raw.fileno()).st_size
        self._hashing = _HashingFile(self._raw, self._digest, advance)
        self._gzip = gzip.GzipFile(fileobj=self._hashing, mode="rb")
        self.budget = min(self.limits.max_bytes, max(RATIO_FREE_BYTES, MAX_RATIO * compressed))
        self._compressed = compressed
        self.total = 0
        self.entries = 0
        self._pending = 0  # unread data + padding of the current member
        self._current = ""

    def __enter__(self) -> TarReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._gzip.close()
        self._raw.close()

    def sha256(self) -> str:
        """The sha256 of the whole archive file (reads what gzip has not)."""
        while self._hashing.read(CHUNK):
            pass
        return self._digest.hexdigest()

    # ------------------------------------------------------------------ reading

    def _read(self, size: int) -> bytes:
        """Exactly ``size`` decompressed bytes; a short read means a truncated archive."""
        parts = []
        left = size
        while left:
            try:
                data = self._gzip.read(min(left, CHUNK))
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
                raise self._broken(error) from None
            if not data:
                raise self._broken(None)
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def _broken(self, error: Exception | None) -> PackageError:
        where = f" inside entry {self._current!r}" if self._current else ""
        if error is None or isinstance(error, EOFError):
            return PackageError(f"{self.archive} is truncated{where}")
        return PackageError(f"{self.archive} is not a gzip-compressed tar archive ({error})")

    def _skip_pending(self) -> None:
        while self._pending:
            step = min(self._pending, CHUNK)
            self._read(step)
            self._pending -= step

    def _data(self, member: Member) -> Iterator[bytes]:
        left = member.size
        while left:
            step = min(left, CHUNK)
            data = self._read(step)
            left -= step
            self._pending -= step
            yield data
        self._skip_pending()

    # ------------------------------------------------------------------ headers

    def __iter__(self) -> Iterator[Member]:
        pax: dict[str, str] = {}
        long_name: str | None = None
        while True:
            self._skip_pending()
            self._current = ""
            block = self._read_header_block()
            if block is None:
                return
            info = self._parse(block)
            size = info.size
            if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE):
                meta = self._meta(info)
                if info.type == tarfile.GNUTYPE_LONGNAME:
                    long_name = self._decode(meta.split(b"\0", 1)[0], "long name")
                elif info.type == tarfile.XHDTYPE:
                    pax = self._pax(meta)
                continue  # a global pax header ('g') sets defaults this reader has no use for
            name = pax.get("path", long_name if long_name is not None else info.name)
            if "size" in pax:
                size = _pax_size(pax["size"], name)
            pax, long_name = {}, None
            self._current = name
            kind = KIND_NAMES.get(info.type)
            if kind is None and info.type not in (*FILE_TYPES, tarfile.DIRTYPE):
                kind = f"of unknown type {info.type!r}"
            if kind is not None:
                raise PackageError(
                    f"archive entry {name!r} is {kind}, not a file or folder: a model archive "
                    "holds only those (`package` never writes links or special files)"
                )
            parts = _normal_parts(name)
            is_dir = info.type == tarfile.DIRTYPE
            if not parts:
                if is_dir:
                    continue  # "./", the archive's own root
                raise PackageError(f"archive entry {name!r} has no file name")
            self._count(name, 0 if is_dir else size)
            self._pending = 0 if is_dir else _padded(size)
            yield Member("/".join(parts), is_dir, 0 if is_dir else size, self)

    def _read_header_block(self) -> bytes | None:
        try:
            first = self._gzip.read(BLOCK)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
            raise self._broken(error) from None
        if not first and self.entries == 0:
            raise PackageError(f"{self.archive} is an empty archive")
        if not first:
            return None  # no end-of-archive blocks: tolerated, as tar itself does
        block = first if len(first) == BLOCK else first + self._read(BLOCK - len(first))
        self._spend(BLOCK)
        return None if block.count(0) == BLOCK else block

    def _parse(self, block: bytes) -> tarfile.TarInfo:
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except UnicodeDecodeError:
            raise PackageError(f"{self.archive} has an entry whose name is not UTF-8") from None
        except tarfile.HeaderError as error:
            raise PackageError(f"{self.archive} has a damaged tar header ({error})") from None
        if info.size < 0:
            raise PackageError(f"archive entry {info.name!r} declares a negative size")
        return info

    def _meta(self, info: tarfile.TarInfo) -> bytes:
        """The data of a long-name or pax header, which only ever describes the next entry."""
        if info.size > MAX_META_BYTES:
            raise PackageError(
                f"{self.archive} has a {info.size}-byte metadata header (at most "
                f"{MAX_META_BYTES}): not a model archive"
            )
        self._count("(metadata header)", 0)
        data = self._read(_padded(info.size))
        self._spend(_padded(info.size))
        return data[: info.size]

    def _pax(self, data: bytes) -> dict[str, str]:
        """pax records: ``"<length> <key>=<value>\\n"``; sparse files are refused."""
        records: dict[str, str] = {}
        position = 0
        while position < len(data):
            length_text, _, _ = data[position : position + 20].partition(b" ")
            if not length_text.isdigit() or int(length_text) <= len(length_text):
                raise PackageError(f"{self.archive} has a damaged pax header")
            record = data[position : position + int(length_text)]
            position += int(length_text)
            key, sep, value = record[len(length_text) + 1 : -1].partition(b"=")
            if not sep or not record.endswith(b"\n"):
                raise PackageError(f"{self.archive} has a damaged pax header")
            records[self._decode(key, "pax key")] = self._decode(value, "pax value")
        if any(key.startswith("GNU.sparse") for key in records):
            raise PackageError(f"{self.archive} holds a sparse file: not a model archive")
        return records

    def _decode(self, raw: bytes, what: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PackageError(f"{self.archive} has a {what} that is not UTF-8") from None

    # ------------------------------------------------------------------ limits

    def _count(self, name: str, size: int) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise PackageError(
                f"{self.archive} holds more than {self.limits.max_entries} entries "
                f"(limit {ENV_MAX_ENTRIES}): not a model archive"
            )
        self._spend(_padded(size), name)

    def _spend(self, size: int, name: str | None = None) -> None:
        """Count decompressed bytes against the budget, before they are read."""
        self.total += size
        if self.total <= self.budget:
            return
        what = f"entry {name!r} takes it" if name else "it expands"
        if self.budget < self.limits.max_bytes:
            raise PackageError(
                f"{self.archive} expands more than {MAX_RATIO}x its {self._compressed}-byte "
                f"size past {RATIO_FREE_BYTES >> 20} MiB ({what} over {self.budget} bytes): "
                "refused as a decompression bomb"
            )
        raise PackageError(
            f"{self.archive} holds more than {self.limits.max_bytes} bytes ({what} over the "
            f"limit; raise {ENV_MAX_BYTES} for a larger model)"
        )


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _pax_size(raw: str, name: str) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise PackageError(f"archive entry {name!r} has a damaged pax size {raw[:40]!r}")
    return int(raw)


def _normal_parts(name: str) -> list[str]:
    """The entry's path parts; absolute paths, ``..``, NUL and overlong names are refused."""
    if "\0" in name:
        raise PackageError(f"archive entry {name!r} has a NUL byte in its name")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise PackageError(f"archive entry {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PackageError(f"archive entry {name!r} climbs out with '..'")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES or any(
        len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES for part in parts
    ):
        raise PackageError(f"archive entry {name[:80]!r}… has an overlong name")
    return parts


def read_small(member: Member, limit: int) -> bytes:
    """A small file's whole content (a manifest), refused over ``limit`` bytes before reading."""
    if member.size > limit:
        raise PackageError(f"archive entry {member.name!r} is over {limit} bytes")
    return b"".join(member.chunks())
