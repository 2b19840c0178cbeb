"""What a new user meets on the AWS commands: honest dry runs, ISO dates, a header on
``list``, the default bucket's owner checked on every call, the tool named to AWS.

Against moto (never AWS); the dry run without credentials runs with no AWS mock at all,
so a call it should not make would fail for lack of credentials.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import boto3
import pytest
from aws_fixtures import BUCKET, NAME, ROLE, Cli

from sagemaker_reranker.deploy.aws.session import Aws

ACCOUNT = "123456789012"
WORDS_OF_DONE = ("created", "deleted", "started", "removed")
cli = Cli()
deploy = cli.deploy


@pytest.fixture
def no_credentials(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with a region but no AWS credentials anywhere boto3 looks."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every API call the commands make: service, operation, parameters, User-Agent."""
    seen: list[dict[str, Any]] = []
    original = Aws.client

    def client(self: Aws, service: str) -> Any:
        fresh = service not in self._clients
        made = original(self, service)
        if fresh:

            def params(params: dict, model: Any, **_: Any) -> None:
                seen.append({"service": service, "operation": model.name, "params": dict(params)})

            def request(request: Any, **_: Any) -> None:
                agent = request.headers.get("User-Agent", b"")
                seen[-1]["agent"] = agent.decode() if isinstance(agent, bytes) else agent

            made.meta.events.register("provide-client-params", params)
            made.meta.events.register("request-created", request)
        return made

    monkeypatch.setattr(Aws, "client", client)
    return seen


def said_as_done(text: str) -> list[str]:
    """Lines that report a change as made (a change that would be made says "would")."""
    return [
        line
        for line in text.splitlines()
        if any(word in line for word in WORDS_OF_DONE) and "would" not in line
    ]


# ----------------------------------------------------------------------- dry runs


def test_dry_runs_say_what_would_happen_never_that_it_happened(moto, tiny_archive):
    planned = deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge", "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert f"endpoint  {NAME}: would be created" in planned.stdout
    assert said_as_done(planned.stdout) == []
    assert deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge").exit_code == 0
    assert cli("autoscale", NAME).exit_code == 0
    checks = {
        ("delete", NAME, "--dry-run"): "would delete endpoint:rr",
        ("autoscale", NAME, "--max", "3", "--dry-run"): "would scale to 1-3 instances",
        ("autoscale", NAME, "--off", "--dry-run"): "would remove autoscaling",
        (
            "batch",
            "--model-name",
            json.loads(cli("status", NAME, "--json").stdout)["variants"][0]["model"],
            "--input",
            "s3://corpus/in/",
            "--output",
            "s3://corpus/out/",
            "--dry-run",
        ): "would start",
    }
    for args, words in checks.items():
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
        assert words in result.stdout, (args, result.stdout)
        assert said_as_done(result.stdout) == [], args
    assert cli("status", NAME).exit_code == 0  # all still there


def test_deploy_dry_run_plans_without_credentials(no_credentials, tiny_archive):
    result = deploy(tiny_archive, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "no AWS credentials" in result.stderr and "as if nothing existed" in result.stderr
    planned = json.loads(result.stdout)["dry_run"]
    operations = [call["operation"] for call in planned]
    assert operations[:5] == [
        "create_bucket",
        "upload_file",
        "create_model",
        "create_endpoint_config",
        "create_endpoint",
    ]
    upload = planned[1]["params"]
    assert upload["Bucket"] == "sagemaker-us-east-1-<account>"
    assert upload["ExtraArgs"]["ExpectedBucketOwner"] == "<account>"


@pytest.mark.parametrize(
    "args",
    [
        ("update", NAME, "--model-data", "{archive}", "--role", ROLE),
        ("delete", NAME),
        ("autoscale", NAME),
    ],
)
def test_dry_runs_that_must_read_say_they_need_read_access(no_credentials, tiny_archive, args):
    args = tuple(arg.format(archive=tiny_archive) for arg in args)
    result = cli(*args, "--dry-run")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "needs AWS credentials with read access" in result.stderr


def test_read_only_commands_offer_no_dry_run():
    for name in ("status", "list", "invoke", "iam-policy"):
        result = cli(name, "--dry-run")
        assert result.exit_code == 2 and "No such option '--dry-run'" in result.stderr, name


# ------------------------------------------------------------- dates and headers


def test_json_dates_are_iso_8601_and_list_has_a_header(moto, tiny_archive):
    assert deploy(tiny_archive).exit_code == 0
    status = json.loads(cli("status", NAME, "--json").stdout)
    listed = json.loads(cli("list", "--json").stdout)
    for value in (status["created"], status["modified"], listed[0]["created"]):
        assert "T" in value and datetime.fromisoformat(value).tzinfo is not None, value
    lines = cli("list").stdout.splitlines()
    assert lines[0].split() == ["ENDPOINT", "STATUS", "CREATED"]
    assert lines[1].split()[:2] == [NAME, "InService"]


# ------------------------------------------------- the default bucket, the user agent


def test_every_call_to_the_default_bucket_names_its_owner(moto, tiny_archive, wire):
    assert deploy(tiny_archive, name="first").exit_code == 0
    assert deploy(tiny_archive, name="second").exit_code == 0  # found already uploaded
    to_bucket = [call for call in wire if call["params"].get("Bucket") == BUCKET]
    operations = {call["operation"] for call in to_bucket}
    assert {"HeadBucket", "CreateBucket", "PutObject", "HeadObject"} <= operations
    for call in to_bucket:
        if call["operation"] != "CreateBucket":  # the one S3 call that takes no owner
            assert call["params"].get("ExpectedBucketOwner") == ACCOUNT, call
    uri = f"s3://{BUCKET}/{boto3.client('s3').list_objects_v2(Bucket=BUCKET)['Contents'][0]['Key']}"
    wire.clear()
    assert deploy(uri, name="third").exit_code == 0
    heads = [call for call in wire if call["operation"] == "HeadObject"]
    assert heads and all(h["params"]["ExpectedBucketOwner"] == ACCOUNT for h in heads)


def test_a_bucket_of_the_users_own_is_called_as_it_is(moto, tiny_archive, wire):
    boto3.client("s3").create_bucket(Bucket="mine")
    assert deploy(tiny_archive, "--bucket", "mine").exit_code == 0
    to_bucket = [call for call in wire if call["params"].get("Bucket") == "mine"]
    assert to_bucket and all("ExpectedBucketOwner" not in c["params"] for c in to_bucket)


def test_every_client_names_the_tool_in_its_user_agent(moto, tiny_archive, wire):
    assert deploy(tiny_archive).exit_code == 0
    assert cli("status", NAME).exit_code == 0
    services = {call["service"] for call in wire}
    assert {"sts", "s3", "sagemaker", "application-autoscaling"} <= services
    assert all("sagemaker-reranker/" in call["agent"] for call in wire), wire


def test_deploy_says_it_reads_the_archive_before_uploading(moto, tiny_archive):
    # Hashing (and checking) a 1 GB archive takes seconds: the user is told, with its size.
    result = deploy(tiny_archive, "--dry-run")
    assert result.exit_code == 0, result.output
    assert re.search(rf"(checking|hashing) {re.escape(tiny_archive.name)} \(\d", result.stderr)


# ----------------------------------------------------- credentials, image and instance


def test_deploy_without_credentials_says_how_to_get_them(no_credentials, tiny_archive):
    result = deploy(tiny_archive)
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert line.startswith("Error: no AWS credentials found")
    for hint in ("aws configure", "AWS_PROFILE", "deploy --dry-run"):
        assert hint in line, hint
    status = cli("status", NAME)  # nothing to plan: no --dry-run to offer
    assert status.exit_code == 1 and "aws configure" in status.stderr
    assert "--dry-run" not in status.stderr


GPU_IMAGE = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
    "2.6.0-transformers4.51.3-gpu-py312-cu124-ubuntu22.04"
)
CPU_IMAGE = GPU_IMAGE.replace("-gpu-py312-cu124-", "-cpu-py312-")


@pytest.mark.parametrize(
    ("image", "instance", "warning"),
    [
        (GPU_IMAGE, ("--instance-type", "ml.m5.xlarge"), "is a GPU image but ml.m5.xlarge has no"),
        (GPU_IMAGE, ("--serverless-memory", "4096"), "a serverless endpoint has no GPU"),
        (CPU_IMAGE, ("--instance-type", "ml.g5.xlarge"), "is a CPU image: the model would run"),
        (GPU_IMAGE, ("--instance-type", "ml.g5.xlarge"), None),
        (CPU_IMAGE, ("--instance-type", "ml.m5.xlarge"), None),
    ],
)
def test_an_image_built_for_other_hardware_is_warned_about(
    moto, tiny_archive, image, instance, warning
):
    result = deploy(tiny_archive, "--image-uri", image, *instance, "--dry-run")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warning in warnings[0], result.stderr
