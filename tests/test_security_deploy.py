"""deploy/update against hostile inputs (moto, never AWS): edited and forged archives, an S3 key
holding other bytes than its name says, an s3:// archive whose metadata lies, and secrets in
``--env``. Each input is made here; each must be refused, corrected or redacted."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest
from aws_fixtures import BUCKET, ROLE, Cli, MotoOptions, model_args
from click.testing import Result
from moto_shims import backend
from test_security_archive import rebuild, with_manifest

from sagemaker_reranker.deploy.packaging.manifest import MANIFEST
from sagemaker_reranker.deploy.redaction import REDACTED

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0"
TOKEN = "hf_SecretTokenValue9f31abc"
cli = Cli()


@pytest.fixture
def moto_options() -> MotoOptions:
    """A secret --env value must never reach the log."""
    return MotoOptions(unlogged=(TOKEN,))


def deploy(archive, *extra: str, command: str = "deploy", name: str = "rr") -> Result:
    return cli(command, name, *model_args(archive, "--image-uri", IMAGE, *extra))


def objects() -> list[str]:
    s3 = boto3.client("s3")
    names = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    return [o["Key"] for n in names for o in s3.list_objects_v2(Bucket=n).get("Contents", [])]


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def test_edited_archive_is_refused_before_any_upload_exit_2(moto, tiny_archive, tmp_path):
    edited = rebuild(
        tiny_archive,
        tmp_path / "edited.tar.gz",
        lambda n, d: d + b"\nimport os\n" if n == "code/inference.py" else d,
    )
    for extra in ((), ("--dry-run",)):
        result = deploy(edited, *extra)
        assert result.exit_code == 2, result.output
        (line,) = error_lines(result)
        assert "entry 'code/inference.py' does not match its manifest's sha256" in line
        assert "nothing was uploaded" in line
    assert objects() == [] and not backend()._models


def test_update_refuses_a_truncated_archive_and_the_endpoint_keeps_its_model(
    moto, tiny_archive, tmp_path
):
    assert deploy(tiny_archive).exit_code == 0
    models = sorted(backend()._models)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tiny_archive.read_bytes()[: tiny_archive.stat().st_size // 2])
    result = deploy(cut, command="update")
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "is truncated inside entry" in line
    assert sorted(backend()._models) == models and len(objects()) == 1


def test_forged_manifest_cannot_turn_isolation_off(moto, tiny_archive, tmp_path):
    forged = with_manifest(
        tiny_archive, tmp_path / "forged.tar.gz", weights=False, source="attacker/model"
    )
    result = deploy(forged, "--dry-run", "--json")
    assert result.exit_code == 2
    assert "says weights: false but the archive holds weight files" in result.stderr
    assert "attacker/model" not in result.output


def planned_model(result: Result) -> dict:
    assert result.exit_code == 0, result.stderr
    calls = json.loads(result.stdout)["dry_run"]
    return next(c["params"] for c in calls if c["operation"] == "create_model")


def put_archive(archive: Path, key: str, **metadata: str) -> str:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=key, Body=archive.read_bytes(), Metadata=metadata)
    return f"s3://{BUCKET}/{key}"


def test_s3_archive_claiming_no_weights_is_checked(moto, tiny_archive, tmp_path):
    lying = put_archive(tiny_archive, "x/model.tar.gz", weights="false", source="attacker/model")
    plan = planned_model(cli("deploy", "rr", "--model-data", lying, "--role", ROLE,
                             "--image-uri", IMAGE, "--dry-run", "--json"))  # fmt: skip
    assert plan["EnableNetworkIsolation"] is True
    assert "RERANKER_MODEL_ID" not in plan["PrimaryContainer"]["Environment"]

    def keep_handler(name, data):
        if name == MANIFEST:
            manifest = json.loads(data)
            files = {k: v for k, v in manifest["files"].items() if k.startswith("code/")}
            manifest.update(files=files, weights=False, source="BAAI/bge-reranker-base")
            return json.dumps(manifest).encode()
        return data if name.startswith("code/") else None

    honest = rebuild(tiny_archive, tmp_path / "no-weights.tar.gz", keep_handler)
    uri = put_archive(honest, "y/model.tar.gz", weights="false", source="BAAI/bge-reranker-base")
    plan = planned_model(cli("deploy", "rr", "--model-data", uri, "--role", ROLE,
                             "--image-uri", IMAGE, "--dry-run", "--json"))  # fmt: skip
    assert plan["EnableNetworkIsolation"] is False
    assert plan["PrimaryContainer"]["Environment"]["RERANKER_MODEL_ID"] == "BAAI/bge-reranker-base"


def test_existing_key_with_other_bytes_is_uploaded_again(moto, tiny_archive):
    sha256 = hashlib.sha256(tiny_archive.read_bytes()).hexdigest()
    key = f"sagemaker-reranker/{sha256}/model.tar.gz"
    # Someone with write access to the bucket put other bytes under the archive's name,
    # with metadata claiming the right sha256.
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"not the archive", Metadata={"sha256": sha256})
    result = deploy(tiny_archive)
    assert result.exit_code == 0, result.output
    assert "exists but has a different size: uploading the archive again" in result.stderr
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == tiny_archive.read_bytes()
    again = deploy(tiny_archive, name="rr2")
    assert "already uploaded" in again.stderr


def test_secret_env_values_never_reach_the_output(moto, tiny_archive):
    env = ("--env", f"HF_TOKEN={TOKEN}", "--env", "RERANKER_MAX_TOKENS=4096")
    for extra in (("--dry-run",), ("--dry-run", "--json")):
        result = deploy(tiny_archive, *env, *extra)
        assert result.exit_code == 0, result.output
        shown = result.output + result.stderr
        assert TOKEN not in shown and REDACTED in shown
        assert "4096" in shown, "only secret-looking names are redacted"
    debug = cli("--debug", "deploy", "rr", "--model-data", str(tiny_archive), "--role", ROLE,
                "--image-uri", IMAGE, *env)  # fmt: skip
    assert debug.exit_code == 0
    assert TOKEN not in debug.output + debug.stderr and "CreateModel" in debug.stderr
    (model,) = backend()._models.values()
    assert model.primary_container["Environment"]["HF_TOKEN"] == TOKEN, "the value is still sent"
