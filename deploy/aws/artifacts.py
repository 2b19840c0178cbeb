"""What a deployment runs: the model archive in S3 (content-addressed) and the container image."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

from sagemaker_reranker.deploy.aws.archive_check import (
    TRANSFER,
    ArchiveRejected,
    claimed_manifest,
    remote_manifest,
    remote_sha256,
    same_object,
    verify_local,
)
from sagemaker_reranker.deploy.aws.session import Aws, DeployError
from sagemaker_reranker.deploy.packaging.manifest import (
    SCORING_KINDS,
    Manifest,
)
from sagemaker_reranker.deploy.packaging.verify import Trust
from sagemaker_reranker.deploy.platform import PY_VERSION

KEY_PREFIX = "sagemaker-reranker"
# Serverless endpoints run on CPU; the image lookup needs an instance type to pick CPU.
SERVERLESS_IMAGE_INSTANCE = "ml.m5.xlarge"


@dataclass
class ModelData:
    """The archive as SageMaker sees it, plus what we know about its contents."""

    uri: str
    sha256: str | None
    manifest: Manifest | None
    local: Path | None = None
    """The local archive still to upload (None when ``uri`` was given)."""
    kms_key: str | None = None
    own_bucket: bool = False
    """True for the default bucket, which ``upload`` creates when missing."""
    size: int | None = None
    """Bytes of the archive (what each instance downloads), when known."""

    def __post_init__(self) -> None:
        if self.size is None and self.local is not None:
            self.size = self.local.stat().st_size

    @property
    def weights(self) -> bool | None:
        """True when the weights are baked in; None when unknown (an archive made elsewhere)."""
        return self.manifest.weights if self.manifest else None


# Shown the archive as its manifest claims it, before the whole archive is read; may refuse.
Precheck = Callable[[ModelData], object]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise DeployError(f"{uri} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def default_bucket(aws: Aws) -> str:
    """The bucket the SageMaker SDK uses too: ``sagemaker-{region}-{account}``."""
    return f"sagemaker-{aws.region}-{aws.account}"


def owner_args(aws: Aws, bucket: str) -> dict[str, str]:
    """``ExpectedBucketOwner`` for every call to the default bucket.

    Its name is guessable, so another account could create it first and receive the
    uploads; with the owner stated, S3 refuses the call instead (403).
    """
    if bucket.startswith(f"sagemaker-{aws.region}-") and bucket == default_bucket(aws):
        return {"ExpectedBucketOwner": aws.account}
    return {}


def ensure_bucket(aws: Aws, bucket: str, create: bool) -> bool:
    """Check the bucket is usable; create the default bucket when missing. True if it existed."""
    owner = owner_args(aws, bucket)
    if aws.assume_missing:
        # A plan without credentials: the default bucket would be made, the user's is taken.
        if not create:
            return True
    else:
        try:
            aws.read("s3", "head_bucket", Bucket=bucket, **owner)
            return True
        except ClientError as error:
            _bucket_unusable(error, bucket, create, owner)
    params: dict = {"Bucket": bucket}
    if aws.region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    if not aws.dry_run:
        aws.reporter.note(f"creating bucket {bucket}")
    # CreateBucket takes no ExpectedBucketOwner; it fails if anyone else owns the name.
    aws.write("s3", "create_bucket", **params)
    return False


def _bucket_unusable(error: ClientError, bucket: str, create: bool, owner: dict) -> None:
    """Raise the one-line reason a bucket cannot be used, unless it is only missing."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code == "403":
        whose = (
            f"belongs to another account than {owner['ExpectedBucketOwner']}, or these "
            "credentials cannot use it"
            if owner
            else "these credentials cannot use it"
        )
        raise DeployError(
            f"bucket {bucket} exists but {whose} (403 Forbidden); pass --bucket with a bucket "
            "of yours"
        ) from None
    if code not in ("404", "NoSuchBucket"):
        raise error
    if not create:
        raise DeployError(
            f"bucket {bucket} does not exist; create it, or leave out --bucket to use the "
            "SageMaker default bucket"
        ) from None


def _upload(aws: Aws, archive: Path, bucket: str, key: str, extra: dict) -> None:
    params = {
        "Filename": str(archive),
        "Bucket": bucket,
        "Key": key,
        "ExtraArgs": extra,
        "Config": TRANSFER,
    }
    if aws.dry_run:
        aws.write("s3", "upload_file", **params)
        return
    with aws.reporter.progress(archive.stat().st_size, f"uploading {archive.name}") as advance:
        try:
            aws.write("s3", "upload_file", **params, Callback=advance)
        except S3UploadFailedError as error:
            # s3transfer wraps the service's error (e.g. AccessDenied) in its own message.
            raise DeployError(f"upload to s3://{bucket}/{key} failed: {error}") from None


def locate_archive(
    aws: Aws, archive: Path, bucket: str | None, kms_key: str | None, trust: Trust | None = None
) -> ModelData:
    """Where a local archive goes: a key made from its sha256. Reads only; see ``upload``.

    The archive is read once, in full: its sha256, every entry checked against its manifest,
    and ``trust`` (a damaged, edited, forged or unexpected archive stops here, before any
    upload).
    """
    contents = verify_local(aws, archive, trust)
    manifest, sha256 = contents.manifest, contents.sha256
    target = bucket or default_bucket(aws)
    uri = f"s3://{target}/{KEY_PREFIX}/{sha256}/model.tar.gz"
    return ModelData(uri, sha256, manifest, local=archive, kms_key=kms_key, own_bucket=not bucket)


def upload(aws: Aws, data: ModelData) -> None:
    """Upload a local archive unless the same bytes (same sha256 key) are already there.

    Called only when a model is about to be created, so an unchanged or refused deploy
    uploads nothing.
    """
    if data.local is None:
        return
    bucket, key = parse_s3_uri(data.uri)
    owner = owner_args(aws, bucket)
    existed = ensure_bucket(aws, bucket, create=data.own_bucket)
    # Reused only when S3's own checksum shows the same bytes: metadata proves nothing.
    head = (
        aws.find("s3", "head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED", **owner)
        if existed
        else None
    )
    same, why = same_object(head, data.local)
    if same:
        aws.reporter.note(
            f"{data.uri} already uploaded (same sha256), as S3's checksum confirms: skipping "
            "the upload"
        )
        return
    if head is not None:
        aws.reporter.note(f"{data.uri} exists but has {why}: uploading the archive again")
    metadata = {"sha256": data.sha256 or ""}
    if data.manifest:
        metadata.update(weights=str(data.manifest.weights).lower(), source=data.manifest.source)
        if data.manifest.revision:
            metadata["revision"] = data.manifest.revision
        metadata.update(_size_metadata(data.manifest))
    extra: dict = {
        "Metadata": metadata,
        "ContentType": "application/gzip",
        "ChecksumAlgorithm": "SHA256",
        **owner,
    }
    if data.kms_key:
        extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=data.kms_key)
    _upload(aws, data.local, bucket, key, extra)


def remote_archive(aws: Aws, uri: str, trust: Trust | None = None) -> ModelData:
    """An archive already in S3: what we uploaded carries its sha256 and manifest summary;
    ``trust`` holds it to the sha256 S3 itself computed, and to having a manifest."""
    bucket, key = parse_s3_uri(uri)
    head = aws.find(
        "s3",
        "head_object",
        Bucket=bucket,
        Key=key,
        ChecksumMode="ENABLED",
        **owner_args(aws, bucket),
    )
    if head is None:
        raise DeployError(f"{uri} does not exist")
    trust = trust or Trust(allow_unverified=True)
    sha256 = remote_sha256(uri, head, trust)
    meta = head.get("Metadata", {})
    manifest = None
    if "weights" in meta:
        manifest = Manifest(
            source=meta.get("source", "unknown"),
            revision=meta.get("revision"),
            weights=meta["weights"] == "true",
            **_size_from_metadata(meta),
        )
    if manifest is None and not trust.allow_unverified:
        raise ArchiveRejected(
            f"{uri} carries no manifest summary (it was not uploaded by `deploy`), so nothing "
            "shows what it holds; pass --allow-unverified to use it anyway"
        )
    manifest = remote_manifest(aws, bucket, key, head, manifest, **owner_args(aws, bucket))
    return ModelData(uri, sha256 or meta.get("sha256"), manifest, size=head.get("ContentLength"))


# What deploy sizes an endpoint by travels with an uploaded archive as S3 metadata, so an
# s3:// --model-data is sized like the local archive was.
SIZE_METADATA = {
    "scoring": "scoring",
    "weights_bytes": "weights-bytes",
    "parameters": "parameters",
    "body_parameters": "body-parameters",
}


def _size_metadata(manifest: Manifest) -> dict[str, str]:
    values = {key: getattr(manifest, field) for field, key in SIZE_METADATA.items()}
    return {key: str(value) for key, value in values.items() if value is not None}


def _size_from_metadata(meta: dict[str, str]) -> dict:
    found: dict = {}
    for field, key in SIZE_METADATA.items():
        value = meta.get(key)
        if value is None:
            continue
        if field == "scoring":
            found[field] = value if value in SCORING_KINDS else None
        elif value.isdigit():
            found[field] = int(value)
    return found


def resolve_model_data(
    aws: Aws,
    model_data: str,
    bucket: str | None,
    kms_key: str | None,
    trust: Trust | None = None,
    precheck: Precheck | None = None,
) -> ModelData:
    """The archive ``--model-data`` names, checked. ``precheck`` is shown a local archive as
    its manifest (the first entry) describes it, and may refuse it before the rest is read."""
    if model_data.startswith("s3://"):
        return remote_archive(aws, model_data, trust)
    archive = Path(model_data)
    if not archive.is_file():
        raise DeployError(f"{archive} does not exist (expected a model.tar.gz or an s3:// URI)")
    if precheck is not None:
        precheck(ModelData(str(archive), None, claimed_manifest(archive), local=archive))
    return locate_archive(aws, archive, bucket, kms_key, trust)


def image_uri(region: str, transformers: str, pytorch: str, instance_type: str | None) -> str:
    """The Hugging Face PyTorch inference image for these versions, region and device."""
    try:
        from sagemaker.core import image_uris
    except ImportError:
        raise DeployError(
            "looking up the container image needs the sdk extra: "
            "pip install 'sagemaker-reranker[sdk]', or pass --image-uri"
        ) from None
    logging.getLogger("sagemaker").setLevel(logging.WARNING)
    try:
        return image_uris.retrieve(
            "huggingface",
            region=region,
            version=transformers,
            base_framework_version=f"pytorch{pytorch}",
            py_version=PY_VERSION,
            image_scope="inference",
            instance_type=instance_type or SERVERLESS_IMAGE_INSTANCE,
        )
    except ValueError as error:
        message = f"no Hugging Face inference image: {error}; or pass --image-uri"
        raise DeployError(message) from None
