"""A strict, bounded reader of ``model.tar.gz``: one archive form, regular files and folders.

Extractors disagree about everything beyond the plain tar header: GNU tar and ``tarfile``
apply a global pax header that other readers skip, ``tarfile`` prefers a GNU long name to a
pax path, and GNU tar reads a GNU header's ``prefix`` bytes as timestamps where ``tarfile``
joins them to the name. An archive that could mean two things is refused, so this reader
accepts exactly the form ``package`` writes (``docs/security.md``): plain ustar or GNU
headers, no extended headers of any kind, names of at most 100 printable ASCII bytes in the
name field alone, canonical sizes, and nothing but zeros after the end-of-archive block.

``package`` writes only regular files, so a link, a device, a FIFO or a sparse file was made
elsewhere and is refused outright: without links, no entry can make a later one land outside
the extraction folder (CVE-2025-4517 broke ``tarfile``'s own link checks that way). Sizes are
checked against the limits before any data is read: a decompression bomb is refused at its
first header, not after filling the disk.
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
NAME_FIELD = 100  # bytes: the header's name field, the only name this reader accepts
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
MAGICS = (tarfile.GNU_MAGIC, tarfile.POSIX_MAGIC)
KIND_NAMES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.CONTTYPE: "a contiguous file",
}
# Metadata headers rename, resize or re-time what follows, each read its own way by each
# extractor (or not at all); ``package`` writes none.
EXTENDED_NAMES = {
    tarfile.XGLTYPE: "a global pax header, which GNU tar and tarfile apply to the entries "
    "after it and other extractors skip",
    tarfile.XHDTYPE: "a pax extended header (a metadata header that renames or resizes the "
    "next entry)",
    tarfile.SOLARIS_XHDTYPE: "a Solaris extended header (a metadata header that renames or "
    "resizes the next entry)",
    tarfile.GNUTYPE_LONGNAME: "a GNU long-name header (a metadata header that renames the "
    "next entry)",
    tarfile.GNUTYPE_LONGLINK: "a GNU long-link header (a metadata header for a link)",
}
REPACK = (
    "`package` writes plain headers only: re-create the archive with `sagemaker-reranker "
    "package`, or GNU tar's default --format=gnu with names of at most 100 bytes"
)


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
        while True:
            self._skip_pending()
            self._current = ""
            block = self._read_header_block()
            if block is None:
                return
            info = self._parse(block)
            name = info.name
            self._current = name
            parts = _normal_parts(name)
            is_dir = info.type == tarfile.DIRTYPE
            if not parts:
                if is_dir:
                    continue  # "./", the archive's own root
                raise PackageError(f"archive entry {name!r} has no file name")
            self._count(name, 0 if is_dir else info.size)
            self._pending = 0 if is_dir else _padded(info.size)
            yield Member("/".join(parts), is_dir, 0 if is_dir else info.size, self)

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
        if block.count(0) != BLOCK:
            return block
        self._check_only_zeros_follow()
        return None

    def _check_only_zeros_follow(self) -> None:
        """After the end-of-archive block, only the zeros that pad the last record: an
        extractor told to read past zero blocks (``tar --ignore-zeros``) finds anything else."""
        offset = self.total
        while True:
            try:
                data = self._gzip.read(CHUNK)
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
                raise self._broken(error) from None
            if not data:
                return
            self._spend(len(data))
            if data.count(0) != len(data):
                raise PackageError(
                    f"{self.archive} has data after its end-of-archive block (past byte "
                    f"{offset}), which `tar --ignore-zeros` reads as more entries; {REPACK}"
                )

    def _parse(self, block: bytes) -> tarfile.TarInfo:
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except UnicodeDecodeError:
            raise PackageError(f"{self.archive} has an entry whose name is not UTF-8") from None
        except tarfile.HeaderError as error:
            raise PackageError(f"{self.archive} has a damaged tar header ({error})") from None
        name, kind = info.name, block[156:157]
        extended = EXTENDED_NAMES.get(kind)
        if extended is not None:
            raise PackageError(f"archive entry {name!r} is {extended}; {REPACK}")
        if kind in KIND_NAMES or kind not in (*FILE_TYPES, tarfile.DIRTYPE):
            what = KIND_NAMES.get(kind, f"of unknown type {kind!r}")
            raise PackageError(
                f"archive entry {name!r} is {what}, not a file or folder: a model archive "
                "holds only those (`package` never writes links or special files)"
            )
        problem = _form_problem(block, info)
        if problem:
            raise PackageError(f"archive entry {name!r} {problem}; {REPACK}")
        return info

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


def _form_problem(block: bytes, info: tarfile.TarInfo) -> str | None:
    """What in a parsed header another extractor could read differently (None: nothing)."""
    raw_name = block[:NAME_FIELD].rstrip(b"\0")
    if block[257:265] not in MAGICS:
        return f"has no ustar or GNU tar header (magic {block[257:265]!r})"
    if b"\0" in raw_name:
        return "has bytes after the end of its name"
    if block[345:].count(0) != BLOCK - 345:
        return (
            "has bytes in its prefix field, which ustar readers join to its name and GNU tar "
            "reads as times"
        )
    if block[157:257].count(0) != NAME_FIELD:
        return "names a link target, which a file or folder has none of"
    if block[124:136] != tarfile.itn(info.size, 12, tarfile.GNU_FORMAT):
        return f"writes its size as {block[124:136]!r}, which tar readers parse differently"
    if info.type == tarfile.DIRTYPE and info.size:
        return "is a folder with data, which some extractors read as the next header"
    if block[156:157] in FILE_TYPES and raw_name.endswith(b"/"):
        return "is a file whose name ends in '/', which some extractors make a folder"
    return name_problem(raw_name.decode("utf-8"))


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be written in the one accepted form (None: it can): ``package``
    refuses such model files, and this reader such entries."""
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) > NAME_FIELD:
        return f"has a name over {NAME_FIELD} bytes, which only an extended header holds"
    if not all(0x20 <= byte < 0x7F and byte != 0x5C for byte in raw):
        return "has a name with characters other than printable ASCII, or a backslash"
    return None


def _normal_parts(name: str) -> list[str]:
    """The entry's path parts; absolute paths, ``..`` and names not in plain form (beyond a
    leading ``./`` and a folder's trailing ``/``) are refused."""
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise PackageError(f"archive entry {name!r} has an absolute path")
    bare = (name[2:] if name.startswith("./") else name).rstrip("/")
    parts = bare.split("/") if bare not in ("", ".") else []
    if ".." in parts:
        raise PackageError(f"archive entry {name!r} climbs out with '..'")
    if any(part in ("", ".") for part in parts):
        raise PackageError(f"archive entry {name!r} has an empty or '.' part in its path")
    if any(len(part) > MAX_COMPONENT_BYTES for part in parts):
        raise PackageError(f"archive entry {name[:80]!r}… has an overlong name")
    return parts


def read_small(member: Member, limit: int) -> bytes:
    """A small file's whole content (a manifest), refused over ``limit`` bytes before reading."""
    if member.size > limit:
        raise PackageError(f"archive entry {member.name!r} is over {limit} bytes")
    return b"".join(member.chunks())
