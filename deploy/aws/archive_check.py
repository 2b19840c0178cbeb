"""Trust nothing about an archive that its bytes do not show: before deploy, before reuse in S3.

A local archive is read once in full: its sha256 (which names its S3 key) and every entry
checked against its manifest (``packaging/verify.py``). An object already at that key is
reused only when S3's own SHA256 checksum of it matches the local file; metadata alone
proves nothing, since anyone who can write the key can write it. An ``s3://`` archive
whose metadata says it has no weights (which turns network isolation off and makes the
endpoint download a model) is fetched and checked; one that says it has them needs no
check, as that claim only keeps the safer settings.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from sagemaker_reranker.deploy.aws.session import Aws, DeployError
from sagemaker_reranker.deploy.packaging.manifest import Manifest, PackageError, read_manifest
from sagemaker_reranker.deploy.packaging.verify import ArchiveContents, Trust, inspect_archive

# Uploads use these parts, so the composite checksum S3 keeps can be computed here.
PART_BYTES = 64 << 20
TRANSFER = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)
# An archive without weights holds the handler and a manifest: kilobytes.
MAX_REMOTE_CHECK_BYTES = 64 << 20


class ArchiveRejected(DeployError):
    """The archive is damaged, edited or forged: bad input, exit code 2."""

    exit_code = 2


def verify_local(aws: Aws, archive: Path, trust: Trust | None = None) -> ArchiveContents:
    """Read ``archive`` once: its sha256 and each entry against its manifest (and ``trust``),
    with progress."""
    size = archive.stat().st_size
    label = f"checking {archive.name} ({size / (1 << 20):.1f} MiB)"
    try:
        with aws.reporter.progress(size, label) as advance:
            return inspect_archive(archive, advance=advance, trust=trust)
    except PackageError as error:
        raise ArchiveRejected(f"{error}; nothing was uploaded") from None
    except OSError as error:
        raise ArchiveRejected(f"cannot read {archive}: {error.strerror}") from None


def claimed_manifest(archive: Path) -> Manifest | None:
    """The manifest as the archive's first entry states it, before anything checks it (to
    refuse early what it would refuse anyway, never to accept)."""
    try:
        return read_manifest(archive)
    except PackageError as error:
        raise ArchiveRejected(f"{error}; nothing was uploaded") from None
    except OSError as error:
        raise ArchiveRejected(f"cannot read {archive}: {error.strerror}") from None


def remote_sha256(uri: str, head: dict[str, Any], trust: Trust) -> str | None:
    """The sha256 of an ``s3://`` archive as S3 computed it (None when S3 kept none for the
    whole object); with ``--expect-sha256``, refused unless it is that one."""
    stored = str(head.get("ChecksumSHA256") or "")
    digest = None
    if stored and "-" not in stored:  # a multipart upload's checksum covers its parts only
        digest = base64.b64decode(stored).hex()
    if trust.expect_sha256 is None or digest == trust.expect_sha256:
        return digest
    if digest is None:
        raise ArchiveRejected(
            f"{uri} has no whole-object SHA256 checksum in S3 to compare with --expect-sha256; "
            "deploy the local archive instead"
        )
    raise ArchiveRejected(
        f"{uri} has sha256 {digest}, not {trust.expect_sha256} as --expect-sha256 says: it is "
        "not the archive `package` printed"
    )


def s3_sha256(path: Path) -> str:
    """The ``ChecksumSHA256`` S3 keeps for ``path`` uploaded with ``TRANSFER``: the sha256 of
    the file, or for a multipart upload the sha256 of its parts' sha256s, ``-<parts>``."""
    whole, parts = hashlib.sha256(), []
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(PART_BYTES), b""):
            whole.update(chunk)
            parts.append(hashlib.sha256(chunk).digest())
    if path.stat().st_size < PART_BYTES:
        return base64.b64encode(whole.digest()).decode("ascii")
    composite = hashlib.sha256(b"".join(parts)).digest()
    return f"{base64.b64encode(composite).decode('ascii')}-{len(parts)}"


def same_object(head: dict[str, Any] | None, path: Path) -> tuple[bool, str]:
    """Whether the object ``head`` describes holds the bytes of ``path``, and if not, why."""
    if head is None:
        return False, "not there"
    if head.get("ContentLength") != path.stat().st_size:
        return False, "a different size"
    stored = head.get("ChecksumSHA256")
    if not stored:
        return False, "no SHA256 checksum to compare"
    expected = s3_sha256(path)
    # S3 may or may not append the part count; compare the digest, and the count if given.
    stored_digest, _, stored_parts = stored.partition("-")
    expected_digest, _, expected_parts = expected.partition("-")
    if stored_digest != expected_digest or (stored_parts and stored_parts != expected_parts):
        return False, "different content (its SHA256 checksum differs)"
    return True, ""


def remote_manifest(
    aws: Aws, bucket: str, key: str, head: dict[str, Any], claimed: Manifest | None, **owner: str
) -> Manifest | None:
    """The manifest an ``s3://`` archive's metadata claims, checked where it would weaken the
    settings: a claim of no weights is believed only once the archive itself shows it."""
    if claimed is None or claimed.weights:
        return claimed  # unknown or weights baked in: isolation stays on, nothing to gain
    uri = f"s3://{bucket}/{key}"
    size = int(head.get("ContentLength") or 0)
    if size > MAX_REMOTE_CHECK_BYTES:
        raise ArchiveRejected(
            f"{uri} says it has no weights but holds {size} bytes; a forged claim would turn "
            "network isolation off: deploy the local archive instead"
        )
    with tempfile.TemporaryDirectory(prefix="reranker-check-") as scratch:
        local = Path(scratch) / "model.tar.gz"
        body = aws.read("s3", "get_object", Bucket=bucket, Key=key, **owner)["Body"]
        with open(local, "wb") as handle:
            for chunk in iter(lambda: body.read(1 << 20), b""):
                handle.write(chunk)
                if handle.tell() > MAX_REMOTE_CHECK_BYTES:
                    raise ArchiveRejected(f"{uri} grew past {MAX_REMOTE_CHECK_BYTES} bytes")
        try:
            contents = inspect_archive(local)
        except PackageError as error:
            raise ArchiveRejected(str(error).replace(str(local), uri)) from None
    if contents.manifest is None:
        raise ArchiveRejected(f"{uri} says it has no weights but holds no manifest to show it")
    return contents.manifest
