"""Is an archive what its manifest says? Every file's sha256, and what the files really are.

The manifest is a claim anyone can edit; the files are what SageMaker loads. ``serve``,
``deploy`` and ``update`` act only on an archive whose files match its manifest one for one,
and what matters for security follows from the files: weights baked in (hence network
isolation on, and no hub download) is true exactly when weight files are there, and a
manifest that says otherwise is refused.

That proves the archive self-consistent, not who made it: whoever edits a file can re-hash
the manifest. Origin is the archive's own sha256 (``package`` prints it), checked against
``--expect-sha256`` (``Trust``); an archive without a manifest proves nothing at all and is
used only with ``--allow-unverified``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sagemaker_reranker.deploy.packaging.manifest import Manifest, PackageError
from sagemaker_reranker.deploy.packaging.tar_reader import Limits, Member, TarReader
from sagemaker_reranker.inference.reranker_contract import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    is_weight_file,
)

# What an archive without weights may name as the model to download: a hub id, no more.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")


@dataclass
class ArchiveContents:
    """What an archive holds, checked: its manifest (None if made elsewhere) and file hashes."""

    archive: Path
    manifest: Manifest | None
    hashes: dict[str, str] = field(default_factory=dict)
    sha256: str | None = None
    """The archive file's own sha256 (from ``inspect_archive``)."""

    @property
    def weights(self) -> bool | None:
        """Weights baked in, from the files; None for an archive without a manifest."""
        if self.manifest is None:
            return None
        return any(is_weight_file(name) for name in self.hashes)


@dataclass(frozen=True)
class Trust:
    """What the user vouches for beyond self-consistency: the archive's expected sha256, and
    whether an archive without a manifest may be used at all."""

    expect_sha256: str | None = None
    allow_unverified: bool = False

    def check(self, contents: ArchiveContents) -> None:
        """Refuse ``contents`` (read in full, its ``sha256`` known) unless it is vouched for."""
        archive = contents.archive
        if self.expect_sha256 is not None and contents.sha256 != self.expect_sha256:
            raise PackageError(
                f"{archive} has sha256 {contents.sha256}, not {self.expect_sha256} as "
                "--expect-sha256 says: it is not the archive `package` printed"
            )
        self.require_manifest(archive, contents.manifest)

    def require_manifest(self, archive: Path, manifest: Manifest | None) -> None:
        """Refuse an archive without a manifest unless ``allow_unverified``."""
        if manifest is None and not self.allow_unverified:
            raise PackageError(
                f"{archive} has no {MANIFEST}, so nothing shows its files are those `package` "
                "wrote; pass --allow-unverified to use it anyway"
            )


class Collector:
    """Hashes each entry as it streams by (and hands the bytes to ``write``, if given)."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.hashes: dict[str, str] = {}
        self.dirs: set[str] = set()
        self._folded: dict[str, str] = {}
        self._manifest: bytes | None = None

    def add_dir(self, member: Member) -> None:
        self._claim(member.name, as_dir=True)

    def add_file(self, member: Member, write: Callable[[bytes], None] | None = None) -> None:
        self._claim(member.name, as_dir=False)
        keep = member.name == MANIFEST
        if keep and member.size > MAX_MANIFEST_BYTES:
            raise PackageError(f"{MANIFEST} is over {MAX_MANIFEST_BYTES} bytes: not a manifest")
        digest = hashlib.sha256()
        kept = []
        for chunk in member.chunks():
            digest.update(chunk)
            if write is not None:
                write(chunk)
            if keep:
                kept.append(chunk)
        self.hashes[member.name] = digest.hexdigest()
        if keep:
            self._manifest = b"".join(kept)

    def _claim(self, name: str, as_dir: bool) -> None:
        """One entry per path, and no file where a folder is (or the other way round)."""
        parents = [str(parent) for parent in PurePosixPath(name).parents][:-1]
        clash = name in self.hashes or (not as_dir and name in self.dirs)
        clash = clash or any(parent in self.hashes for parent in parents)
        if clash:
            raise PackageError(
                f"archive entry {name!r} appears twice or clashes with another entry's path"
            )
        # On a case-insensitive disk, ``Code/x`` and ``code/x`` are one file: the later wins.
        for path in (name, *parents):
            other = self._folded.setdefault(path.lower(), path)
            if other != path:
                raise PackageError(
                    f"archive entry {name!r} differs from {other!r} only in case, which a "
                    "case-insensitive disk extracts as one file"
                )
        self.dirs.update(parents)
        if as_dir:
            self.dirs.add(name)

    def finish(self) -> ArchiveContents:
        manifest = Manifest.from_json(self._manifest) if self._manifest is not None else None
        contents = ArchiveContents(self.archive, manifest, self.hashes)
        if manifest is not None:
            check_manifest(contents)
        return contents


def check_manifest(contents: ArchiveContents) -> None:
    """Refuse an archive whose files are not exactly those its manifest lists, byte for byte,
    or whose manifest claims weights the files do not bear out (either way round)."""
    manifest, archive = contents.manifest, contents.archive
    assert manifest is not None
    for name, digest in contents.hashes.items():
        if name == MANIFEST:
            continue
        expected = manifest.files.get(name)
        if expected is None:
            raise PackageError(
                f"{archive}: entry {name!r} is not in its manifest (the archive was changed "
                "after `package` wrote it)"
            )
        if digest != expected:
            raise PackageError(
                f"{archive}: entry {name!r} does not match its manifest's sha256 (the archive "
                "is corrupt or was edited)"
            )
    for name in manifest.files:
        if name not in contents.hashes:
            raise PackageError(
                f"{archive}: entry {name!r} listed in its manifest is missing (the archive is "
                "truncated or was edited)"
            )
    weights = bool(contents.weights)
    if weights != manifest.weights:
        holds = "holds weight files" if weights else "holds no weight files"
        raise PackageError(
            f"{archive}: its manifest says weights: {str(manifest.weights).lower()} but the "
            f"archive {holds} (a forged or edited manifest)"
        )
    if not weights:
        _check_download_source(archive, manifest)


def _check_download_source(archive: Path, manifest: Manifest) -> None:
    """An archive without weights makes the endpoint download ``source``: a hub id, nothing else."""
    if not HUB_ID.match(manifest.source):
        raise PackageError(
            f"{archive} has no weights and its manifest names {manifest.source!r} as the model "
            "to download, which is not a Hugging Face hub id; package the model with its weights"
        )
    if manifest.revision is not None and not REVISION.match(manifest.revision):
        raise PackageError(f"{archive}: manifest revision {manifest.revision!r} is not a revision")


def inspect_archive(
    archive: Path,
    limits: Limits | None = None,
    advance: Callable[[int], None] | None = None,
    trust: Trust | None = None,
) -> ArchiveContents:
    """Read the whole archive once: its sha256, and every entry checked against the manifest
    (and, given ``trust``, the sha256 it expects and whether a manifest is required).

    Nothing is written; the same refusals as extraction apply (links, special files, sizes).
    ``advance(n)`` is told of every ``n`` bytes of the archive read (progress).
    """
    with TarReader(archive, limits, advance) as reader:
        collector = Collector(Path(archive))
        for member in reader:
            if member.is_dir:
                collector.add_dir(member)
            else:
                collector.add_file(member)
        sha256 = reader.sha256()
    contents = collector.finish()
    contents.sha256 = sha256
    if trust is not None:
        trust.check(contents)
    return contents
