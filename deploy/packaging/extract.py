"""Extract ``model.tar.gz`` as SageMaker would, without ever writing outside the folder.

The archive is read by ``tar_reader`` (regular files and folders only, sizes bounded before
any data is read) and written entry by entry here, not by ``tarfile``: every folder is
opened relative to its parent with ``O_NOFOLLOW`` and every file created with ``O_EXCL``, so
no path can be redirected, whatever ``tarfile`` or ``realpath`` would make of it. Each file
is hashed as it is written and the whole is checked against the manifest at the end; on any
refusal, what was written is removed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sagemaker_reranker.deploy.packaging.manifest import PackageError
from sagemaker_reranker.deploy.packaging.tar_reader import Limits, Member, TarReader
from sagemaker_reranker.deploy.packaging.verify import ArchiveContents, Collector, Trust

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def extract_archive(
    archive: Path, dest: Path, limits: Limits | None = None, trust: Trust | None = None
) -> Path:
    """Extract into ``dest`` (created if missing); return its resolved path.

    Refuses links, special files, absolute or ``..`` paths, any form but the one ``package``
    writes, archives over the limits (``tar_reader.Limits``), archives whose files do not
    match their manifest, and, given ``trust``, archives it does not vouch for.
    """
    return extract_checked(archive, dest, limits, trust)[0]


def extract_checked(
    archive: Path, dest: Path, limits: Limits | None = None, trust: Trust | None = None
) -> tuple[Path, ArchiveContents]:
    """``extract_archive``, also returning what the archive holds (manifest, file hashes)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    existing = set(os.listdir(root))
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        collector = Collector(Path(archive))
        with TarReader(archive, limits) as reader:
            for member in reader:
                if member.is_dir:
                    collector.add_dir(member)
                    os.close(_open_dirs(root_fd, member.parts, member.name))
                else:
                    _write_file(root_fd, member, collector)
            sha256 = reader.sha256()
        contents = collector.finish()
        contents.sha256 = sha256
        if trust is not None:
            trust.check(contents)  # the bytes just written are the bytes hashed: no swap
    except BaseException:
        for name in set(os.listdir(root)) - existing:
            _remove(root / name)
        raise
    finally:
        os.close(root_fd)
    return root, contents


def _open_dirs(root_fd: int, parts: tuple[str, ...], name: str) -> int:
    """Open (creating as needed) the folder ``parts`` under the root, never through a link."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as error:  # a file where a folder should be, or a link
                raise PackageError(
                    f"archive entry {name!r}: {part!r} on its path is not a folder "
                    f"({error.strerror})"
                ) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_file(root_fd: int, member: Member, collector: Collector) -> None:
    parent = _open_dirs(root_fd, member.parts[:-1], member.name)
    try:
        try:
            fd = os.open(member.parts[-1], FILE_FLAGS, 0o644, dir_fd=parent)
        except OSError as error:
            raise PackageError(
                f"archive entry {member.name!r} cannot be created ({error.strerror}): it "
                "appears twice or clashes with a folder"
            ) from None
        try:
            collector.add_file(member, lambda chunk: _write_all(fd, chunk, member.name))
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def _write_all(fd: int, data: bytes, name: str) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as error:
            raise PackageError(f"cannot write {name!r}: {error.strerror}") from None
        view = view[written:]


def _remove(path: Path) -> None:
    """Remove what extraction created (no links were ever made, so nothing is followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
