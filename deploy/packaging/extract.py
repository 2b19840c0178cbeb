"""Extract ``model.tar.gz`` as SageMaker does, refusing entries that would land elsewhere."""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from sagemaker_reranker.deploy.packaging.manifest import PackageError


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract like SageMaker does, refusing absolute paths, ``..`` and escaping links."""
    root = dest.resolve()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            _check_member(member, root)
        tar.extractall(root, filter="data")
    return root


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    name = member.name
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise PackageError(f"archive entry {name!r} has an absolute path")
    if ".." in PurePosixPath(name).parts:
        raise PackageError(f"archive entry {name!r} climbs out with '..'")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise PackageError(f"archive entry {name!r} is not a file, folder or link")
    if member.issym() or member.islnk():
        base = (root / name).parent if member.issym() else root
        target = (base / member.linkname).resolve()
        if not target.is_relative_to(root):
            raise PackageError(f"archive entry {name!r} links outside the archive")
