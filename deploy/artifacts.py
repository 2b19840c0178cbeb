"""What a deployment runs: the model archive in S3 (content-addressed) and the container image."""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import click
from botocore.exceptions import ClientError

from sagemaker_reranker.deploy.archive import Manifest, file_sha256, read_manifest
from sagemaker_reranker.deploy.aws import Aws, DeployError, note

KEY_PREFIX = "sagemaker-reranker"
DEFAULT_TRANSFORMERS = "4.51.3"
DEFAULT_PYTORCH = "2.6.0"
DEFAULT_PY = "py312"
# Serverless endpoints run on CPU; the image lookup needs an instance type to pick CPU.
SERVERLESS_IMAGE_INSTANCE = "ml.m5.xlarge"


@dataclass
class ModelData:
    """The archive as SageMaker sees it, plus what we know about its contents."""

    uri: str
    sha256: str | None
    manifest: Manifest | None
    uploaded: bool = False

    @property
    def weights(self) -> bool | None:
        """True when the weights are baked in; None when unknown (an archive made elsewhere)."""
        return self.manifest.weights if self.manifest else None


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise DeployError(f"{uri} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def default_bucket(aws: Aws) -> str:
    """The bucket the SageMaker SDK uses too: ``sagemaker-{region}-{account}``."""
    return f"sagemaker-{aws.region}-{aws.account}"


def ensure_bucket(aws: Aws, bucket: str, create: bool) -> bool:
    """Check the bucket is usable; create the default bucket when missing. True if it existed."""
    try:
        aws.read("s3", "head_bucket", Bucket=bucket)
        return True
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "403":
            raise DeployError(
                f"bucket {bucket} exists but these credentials cannot use it (403 Forbidden); "
                "pass --bucket with a bucket of yours"
            ) from None
        if code not in ("404", "NoSuchBucket"):
            raise
        if not create:
            raise DeployError(
                f"bucket {bucket} does not exist; create it, or leave out --bucket to use the "
                "SageMaker default bucket"
            ) from None
    params: dict = {"Bucket": bucket}
    if aws.region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    note(f"creating bucket {bucket}")
    aws.write("s3", "create_bucket", **params)
    return False


def _upload(aws: Aws, archive: Path, bucket: str, key: str, extra: dict) -> None:
    size = archive.stat().st_size
    if aws.dry_run:
        aws.write("s3", "upload_file", Filename=str(archive), Bucket=bucket, Key=key, **extra)
        return
    with click.progressbar(
        length=size, label=f"uploading {archive.name}", file=click.get_text_stream("stderr")
    ) as bar:
        aws.write(
            "s3",
            "upload_file",
            Filename=str(archive),
            Bucket=bucket,
            Key=key,
            ExtraArgs=extra,
            Callback=bar.update,
        )


def _local_manifest(archive: Path) -> Manifest | None:
    try:
        return read_manifest(archive)
    except (tarfile.TarError, OSError, ValueError) as error:
        raise DeployError(f"{archive} is not a model.tar.gz archive ({error})") from None


def upload_archive(aws: Aws, archive: Path, bucket: str | None, kms_key: str | None) -> ModelData:
    """Upload a local archive under a key made from its sha256; skip it when already there."""
    if not archive.is_file():
        raise DeployError(f"{archive} does not exist (expected a model.tar.gz or an s3:// URI)")
    manifest = _local_manifest(archive)
    sha256 = file_sha256(archive)
    target = bucket or default_bucket(aws)
    existed = ensure_bucket(aws, target, create=bucket is None)
    key = f"{KEY_PREFIX}/{sha256}/model.tar.gz"
    uri = f"s3://{target}/{key}"
    if existed and aws.find("s3", "head_object", Bucket=target, Key=key):
        note(f"{uri} already uploaded (same sha256): skipping the upload")
        return ModelData(uri, sha256, manifest)
    metadata = {"sha256": sha256}
    if manifest:
        metadata.update(weights=str(manifest.weights).lower(), source=manifest.source)
        if manifest.revision:
            metadata["revision"] = manifest.revision
    extra: dict = {"Metadata": metadata, "ContentType": "application/gzip"}
    if kms_key:
        extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key)
    _upload(aws, archive, target, key, extra)
    return ModelData(uri, sha256, manifest, uploaded=not aws.dry_run)


def remote_archive(aws: Aws, uri: str) -> ModelData:
    """An archive already in S3: what we uploaded carries its sha256 and manifest summary."""
    bucket, key = parse_s3_uri(uri)
    head = aws.find("s3", "head_object", Bucket=bucket, Key=key)
    if head is None:
        raise DeployError(f"{uri} does not exist")
    meta = head.get("Metadata", {})
    manifest = None
    if "weights" in meta:
        manifest = Manifest(
            source=meta.get("source", "unknown"),
            revision=meta.get("revision"),
            weights=meta["weights"] == "true",
        )
    return ModelData(uri, meta.get("sha256"), manifest)


def resolve_model_data(
    aws: Aws, model_data: str, bucket: str | None, kms_key: str | None
) -> ModelData:
    if model_data.startswith("s3://"):
        return remote_archive(aws, model_data)
    return upload_archive(aws, Path(model_data), bucket, kms_key)


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
            py_version=DEFAULT_PY,
            image_scope="inference",
            instance_type=instance_type or SERVERLESS_IMAGE_INSTANCE,
        )
    except ValueError as error:
        message = f"no Hugging Face inference image: {error}; or pass --image-uri"
        raise DeployError(message) from None
