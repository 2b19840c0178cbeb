"""The AWS control plane in-process: every command through click, against moto (never AWS).

moto's gaps are patched in ``moto_shims`` (fixture level only). Every run checks that the
fake secret key never reaches the output or the logs.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import boto3
import pytest
from aws_fixtures import BUCKET, NAME, ROLE, Cli, MotoOptions
from moto.core import set_initial_no_auth_action_count
from moto_shims import backend, fail_next_update, set_endpoint_status, update_calls

from sagemaker_reranker.deploy.aws import session as aws_module
from sagemaker_reranker.deploy.aws.artifacts import image_uri
from sagemaker_reranker.deploy.aws.iam import policies, wildcard_grants
from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.cli import options as cli_options
from sagemaker_reranker.deploy.packaging.build import package
from sagemaker_reranker.deploy.packaging.manifest import file_sha256

SECRET = "FAKE/Secret+Key-must-never-be-printed-9f31"
cli = Cli(SECRET)
deploy, update = cli.deploy, cli.update


@pytest.fixture
def moto_options() -> MotoOptions:
    """Instant polling, and a secret key that must not leak."""
    return MotoOptions(secret=SECRET)


def state() -> dict[str, Any]:
    """Everything moto holds that a command could change."""
    store = backend()
    s3 = boto3.client("s3")
    objects = {}
    for bucket in s3.list_buckets()["Buckets"]:
        listed = s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", [])
        objects[bucket["Name"]] = sorted((o["Key"], str(o["LastModified"])) for o in listed)
    targets = boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    return {
        "models": sorted(store._models),
        "configs": sorted(store.endpoint_configs),
        "endpoints": {
            name: (e.endpoint_config_name, e.endpoint_status, str(e.last_modified_time))
            for name, e in store.endpoints.items()
        },
        "transform_jobs": sorted(store.transform_jobs),
        "objects": objects,
        "targets": [t["ResourceId"] for t in targets],
    }


def tags_of(arn: str) -> dict[str, str]:
    tags = boto3.client("sagemaker").list_tags(ResourceArn=arn)["Tags"]
    return {tag["Key"]: tag["Value"] for tag in tags}


# ------------------------------------------------------------------------ deploy


def test_deploy_creates_tagged_isolated_endpoint_then_changes_nothing(moto, tiny_archive):
    first = deploy(tiny_archive)
    assert first.exit_code == 0, first.output
    assert "created (InService)" in first.output
    sm = boto3.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=NAME)
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g5.xlarge"  # the product default
    model = sm.describe_model(ModelName=variant["ModelName"])
    sha = file_sha256(tiny_archive)
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/sagemaker-reranker/{sha}/model.tar.gz"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert "gpu-py312" in container["Image"] and "transformers4.51.3" in container["Image"]
    assert model["EnableNetworkIsolation"] is True  # weights are baked into the archive
    for arn in (endpoint["EndpointArn"], config["EndpointConfigArn"], model["ModelArn"]):
        tags = tags_of(arn)
        assert tags["sagemaker-reranker:archive-sha256"] == sha
        assert tags["sagemaker-reranker:revision"] == "none"
        assert tags["sagemaker-reranker:endpoint"] == NAME
    before = state()
    again = deploy(tiny_archive, "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["action"] == "unchanged"
    assert state() == before


def test_different_inputs_against_live_endpoint_point_to_update(moto, tiny_archive):
    assert deploy(tiny_archive).exit_code == 0
    before = state()
    changed = deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge")
    assert changed.exit_code == 1
    assert "already exists" in changed.stderr
    assert f"sagemaker-reranker update {NAME}" in changed.stderr
    assert state() == before


def test_dry_run_prints_calls_and_changes_nothing(moto, tiny_archive):
    before = state()
    result = deploy(tiny_archive, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)["dry_run"]
    assert [c["operation"] for c in planned] == [
        "create_bucket",
        "upload_file",
        "create_model",
        "create_endpoint_config",
        "create_endpoint",
        *["put_metric_alarm"] * 5,  # latency, 5xx, 4xx rate, CPU, GPU
    ]
    model_call = planned[2]["params"]
    assert model_call["EnableNetworkIsolation"] is True
    assert model_call["ExecutionRoleArn"] == ROLE
    assert state() == before
    text = deploy(tiny_archive, "--dry-run")
    assert "[dry-run] would call sagemaker.create_endpoint " in text.stdout
    assert state() == before


def test_dry_run_update_autoscale_and_delete_change_nothing(moto, tiny_archive):
    assert deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge").exit_code == 0
    before = state()
    planned = update(tiny_archive, "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert "would call sagemaker.update_endpoint" in planned.stdout
    assert cli("autoscale", NAME, "--max", "3", "--dry-run").exit_code == 0
    delete = cli("delete", NAME, "--dry-run")
    assert delete.exit_code == 0
    assert "would call sagemaker.delete_endpoint" in delete.stdout
    assert update_calls == []
    assert state() == before


def test_same_archive_is_uploaded_once(moto, tiny_archive):
    assert deploy(tiny_archive, name="first").exit_code == 0
    uploaded = state()["objects"][BUCKET]
    second = deploy(tiny_archive, name="second")
    assert second.exit_code == 0
    assert "already uploaded (same sha256)" in second.stderr
    assert state()["objects"][BUCKET] == uploaded
    assert len(uploaded) == 1


def test_existing_s3_archive_is_used_as_is(moto, tiny_archive):
    assert deploy(tiny_archive, name="first").exit_code == 0
    uri = f"s3://{BUCKET}/sagemaker-reranker/{file_sha256(tiny_archive)}/model.tar.gz"
    result = deploy(uri, "--json", name="second")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model_data"] == uri
    assert data["network_isolation"] is True  # known from the metadata written at upload
    missing = deploy(f"s3://{BUCKET}/nope.tar.gz", name="third")
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr


@pytest.mark.parametrize(
    ("region", "instance", "device"),
    [
        ("us-east-1", "ml.g5.xlarge", "gpu"),
        ("eu-west-1", "ml.m5.xlarge", "cpu"),
        ("ap-northeast-1", "ml.g4dn.xlarge", "gpu"),
        ("us-west-2", "ml.c5.2xlarge", "cpu"),
    ],
)
def test_image_uri_follows_region_and_device(region, instance, device):
    uri = image_uri(region, "4.51.3", "2.6.0", instance)
    assert f".dkr.ecr.{region}.amazonaws.com/huggingface-pytorch-inference:" in uri
    assert f"2.6.0-transformers4.51.3-{device}-py312" in uri


def test_cpu_instances_get_worker_and_thread_settings(moto, tiny_archive):
    result = deploy(tiny_archive, "--instance-type", "ml.c5.4xlarge", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    env = json.loads(result.stdout)["dry_run"][2]["params"]["PrimaryContainer"]["Environment"]
    # One worker of one thread per vCPU (16 on a c5.4xlarge), each capped at the tokens one
    # thread scores well within the invocation timeout; no spinning threads to tell asleep.
    assert env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "16"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert "OMP_WAIT_POLICY" not in env
    assert env["RERANKER_MAX_TOKENS"] == "8192"
    assert "max_tokens_per_request=8192" in result.stderr
    gpu = deploy(tiny_archive, "--dry-run", "--json", "--env", "RERANKER_MAX_PAIRS=64")
    env = json.loads(gpu.stdout)["dry_run"][2]["params"]["PrimaryContainer"]["Environment"]
    assert "OMP_NUM_THREADS" not in env
    assert env["RERANKER_MAX_PAIRS"] == "64"


def test_without_sdk_and_image_uri_one_line_names_both(moto, tiny_archive, monkeypatch):
    monkeypatch.setitem(sys.modules, "sagemaker.core", None)
    result = deploy(tiny_archive)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "pip install 'sagemaker-reranker[sdk]'" in lines[0] and "--image-uri" in lines[0]
    custom = deploy(tiny_archive, "--image-uri", "111122223333.dkr.ecr.us-east-1.amazonaws.com/r:1")
    assert custom.exit_code == 0, custom.output


def test_serverless_is_cpu_without_isolation_and_tells_the_byte_limit(moto, tiny_archive):
    result = deploy(tiny_archive, "--serverless-memory", "3072", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)["dry_run"]
    assert planned[2]["params"]["EnableNetworkIsolation"] is False
    assert "cpu-py312" in planned[2]["params"]["PrimaryContainer"]["Image"]
    variant = planned[3]["params"]["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 5}
    assert "InstanceType" not in variant
    assert "network isolation: turned off" in result.stderr
    assert "max_request_bytes=4_000_000" in result.stderr
    vpc = deploy(
        tiny_archive,
        "--serverless-memory",
        "2048",
        "--vpc-subnets",
        "s-1",
        "--security-groups",
        "sg-1",
    )
    assert vpc.exit_code == 2 and "VPC" in vpc.stderr
    typed = deploy(tiny_archive, "--serverless-memory", "2048", "--instance-type", "ml.m5.xlarge")
    assert typed.exit_code == 2 and "no instance type" in typed.stderr
    bad = deploy(tiny_archive, "--serverless-memory", "1000")
    assert bad.exit_code == 2 and "--serverless-memory 1000" in bad.stderr


def test_archive_without_weights_downloads_pinned_model_without_isolation(moto, tmp_path):
    commit = "abc123" + "0" * 34  # a full commit: packaged offline without a hub lookup
    archive = package("org/reranker", tmp_path / "model.tar.gz", revision=commit, weights=False)
    result = deploy(archive.path, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)["dry_run"][2]["params"]
    env = params["PrimaryContainer"]["Environment"]
    assert env["RERANKER_MODEL_ID"] == "org/reranker"
    assert env["RERANKER_MODEL_REVISION"] == commit
    assert params["EnableNetworkIsolation"] is False
    tags = {tag["Key"]: tag["Value"] for tag in params["Tags"]}
    assert tags["sagemaker-reranker:revision"] == commit
    assert tags["sagemaker-reranker:source"] == "org/reranker"


# ------------------------------------------------------------------ failure paths


def test_endpoint_failed_while_waiting_exits_1_with_reason(moto, tiny_archive, monkeypatch):
    assert deploy(tiny_archive, "--no-wait").exit_code == 0
    set_endpoint_status(NAME, "Creating")

    def fail_then_sleep(seconds: float) -> None:
        set_endpoint_status(NAME, "Failed", "The primary container did not pass the ping check")

    monkeypatch.setattr(
        aws_module,
        "time",
        types.SimpleNamespace(monotonic=aws_module.time.monotonic, sleep=fail_then_sleep),
    )
    result = deploy(tiny_archive)
    assert result.exit_code == 1
    assert "resuming the wait" in result.stderr
    assert "is Failed: The primary container did not pass the ping check" in result.stderr
    again = deploy(tiny_archive)
    assert again.exit_code == 1
    assert f"sagemaker-reranker delete {NAME}" in again.stderr


def test_interrupted_wait_resumes_on_rerun(moto, tiny_archive, monkeypatch):
    assert deploy(tiny_archive, "--no-wait").exit_code == 0
    set_endpoint_status(NAME, "Creating")
    before = state()
    timed_out = deploy(tiny_archive, "--timeout", "0")
    assert timed_out.exit_code == 1
    assert "still Creating" in timed_out.stderr and "re-run the same `deploy`" in timed_out.stderr
    sleeps = []

    def come_up(seconds: float) -> None:
        sleeps.append(seconds)
        set_endpoint_status(NAME, "InService")

    monkeypatch.setattr(
        aws_module,
        "time",
        types.SimpleNamespace(monotonic=aws_module.time.monotonic, sleep=come_up),
    )
    resumed = deploy(tiny_archive, "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["action"] == "resumed"
    assert len(sleeps) == 1
    after = state()
    assert after["models"] == before["models"] and after["configs"] == before["configs"]


def test_missing_role_is_named(moto, tiny_archive, monkeypatch):
    result = cli("deploy", NAME, "--model-data", str(tiny_archive))
    assert result.exit_code == 2
    assert "no execution role: pass --role ARN or set SAGEMAKER_ROLE" in result.stderr
    bad = cli("deploy", NAME, "--model-data", str(tiny_archive), "--role", "SageMakerRole")
    assert bad.exit_code == 2 and "is not an IAM role ARN" in bad.stderr
    monkeypatch.setenv("SAGEMAKER_ROLE", ROLE)
    assert cli("deploy", NAME, "--model-data", str(tiny_archive)).exit_code == 0


def test_bad_instance_types_are_rejected(moto, tiny_archive):
    local = deploy(tiny_archive, "--instance-type", "g5.xlarge")
    assert local.exit_code == 2 and "is not a SageMaker instance type" in local.stderr
    service = deploy(tiny_archive, "--instance-type", "ml.m99.xlarge")
    assert service.exit_code == 1
    error = service.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: deploy of endpoint rr failed: ValidationException: Value")
    assert "'ml.m99.xlarge'" in error and "more]" in error  # the type list, cut short
    assert "removed what this run created: model:rr-" in error
    assert state()["models"] == [] and state()["configs"] == []
    neuron = deploy(tiny_archive, "--instance-type", "ml.inf2.xlarge")
    assert neuron.exit_code == 2 and "Neuron" in neuron.stderr


def test_bad_names_and_conflicts(moto, tiny_archive):
    invalid = deploy(tiny_archive, name="bad_name")
    assert invalid.exit_code == 2 and "not a valid endpoint name" in invalid.stderr
    sm = boto3.client("sagemaker")
    sm.create_model(ModelName="other", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "x"})
    sm.create_endpoint_config(
        EndpointConfigName="other",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "other",
                "InstanceType": "ml.m5.xlarge",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName=NAME, EndpointConfigName="other")
    before = state()
    conflict = deploy(tiny_archive)
    assert conflict.exit_code == 1
    assert "already exists with endpoint config other" in conflict.stderr
    assert state() == before


@set_initial_no_auth_action_count(4)
def test_s3_access_denied_is_reported(moto, tiny_archive, monkeypatch):
    iam = boto3.client("iam")
    iam.create_user(UserName="operator")
    readonly = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "sts:GetCallerIdentity",
                    "sagemaker:*",
                    "s3:HeadBucket",
                    "s3:ListBucket",
                    "s3:GetObject",
                    "s3:HeadObject",
                ],
                "Resource": "*",
            }
        ],
    }
    iam.put_user_policy(UserName="operator", PolicyName="read", PolicyDocument=json.dumps(readonly))
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    boto3.client("s3").create_bucket(Bucket="team-bucket")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    result = deploy(tiny_archive, "--bucket", "team-bucket")
    assert result.exit_code == 1
    assert "upload to s3://team-bucket/" in result.stderr and "AccessDenied" in result.stderr
    assert key["SecretAccessKey"] not in result.output + result.stderr


def test_missing_bucket_and_region(moto, tiny_archive, monkeypatch):
    missing = deploy(tiny_archive, "--bucket", "no-such-bucket")
    assert missing.exit_code == 1 and "bucket no-such-bucket does not exist" in missing.stderr
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    no_region = cli("status", NAME)
    assert no_region.exit_code == 2 and "no AWS region: pass --region" in no_region.stderr
    assert cli("list", "--region", "eu-west-1").exit_code == 0


# ------------------------------------------------------------------------ update


def test_update_is_blue_green_and_removes_the_old(moto, tiny_archive):
    assert deploy(tiny_archive).exit_code == 0
    old = state()
    result = update(tiny_archive, "--instance-type", "ml.g4dn.xlarge", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["action"] == "updated"
    new = state()
    assert new["endpoints"][NAME][0] == data["config"] != old["endpoints"][NAME][0]
    assert new["configs"] == [data["config"]] and new["models"] == [data["model"]]
    assert update_calls == [
        {
            "EndpointName": NAME,
            "EndpointConfigName": data["config"],
            "RetainAllVariantProperties": None,
        }
    ]
    same = update(tiny_archive, "--instance-type", "ml.g4dn.xlarge", "--json")
    assert json.loads(same.stdout)["action"] == "unchanged"
    assert len(update_calls) == 1


def test_failed_update_keeps_the_old_endpoint_serving(moto, tiny_archive):
    assert deploy(tiny_archive).exit_code == 0
    old = state()
    fail_next_update(NAME, "Image pull failed")
    result = update(tiny_archive, "--env", "X=1")
    assert result.exit_code == 1
    assert "Image pull failed" in result.stderr
    assert f"the old config {old['endpoints'][NAME][0]} keeps serving" in result.stderr
    after = state()
    assert after["endpoints"][NAME][:2] == old["endpoints"][NAME][:2]
    assert after["models"] == old["models"] and after["configs"] == old["configs"]


def test_update_keeps_autoscaled_count_or_reregisters_on_type_change(moto, tiny_archive):
    assert deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge").exit_code == 0
    assert cli("autoscale", NAME, "--min", "2", "--max", "5").exit_code == 0
    max_pairs = ("--env", "RERANKER_MAX_PAIRS=128")
    same_type = update(tiny_archive, "--instance-type", "ml.g4dn.xlarge", *max_pairs)
    assert same_type.exit_code == 0, same_type.output
    assert update_calls[-1]["RetainAllVariantProperties"] is True
    new_type = update(tiny_archive, "--instance-type", "ml.g5.2xlarge", *max_pairs)
    assert new_type.exit_code == 0, new_type.output
    assert "deregistering autoscaling" in new_type.stderr
    assert update_calls[-1]["RetainAllVariantProperties"] is None
    status = json.loads(cli("status", NAME, "--json").stdout)
    assert status["autoscaling"]["min"] == 2 and status["autoscaling"]["max"] == 5
    assert status["autoscaling"]["policies"] == [f"{NAME}-AllTraffic-invocations"]
    assert status["variants"][0]["instance_type"] == "ml.g5.2xlarge"


def test_update_needs_an_endpoint(moto, tiny_archive):
    result = update(tiny_archive)
    assert result.exit_code == 1 and f"no endpoint {NAME}" in result.stderr


# --------------------------------------------------------- status, list, delete


def test_status_and_list(moto, tiny_archive):
    assert deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge").exit_code == 0
    text = cli("status", NAME)
    assert text.exit_code == 0
    assert "InService" in text.stdout and "1 x ml.g4dn.xlarge" in text.stdout
    data = json.loads(cli("status", NAME, "--json").stdout)
    assert data["archive_sha256"] == file_sha256(tiny_archive)
    assert data["network_isolation"] is True
    assert data["autoscaling"] is None
    listed = json.loads(cli("list", "--json").stdout)
    assert [row["endpoint"] for row in listed] == [NAME]
    missing = cli("status", "nope")
    assert missing.exit_code == 1 and "no endpoint nope" in missing.stderr


def test_delete_asks_and_handles_partly_deleted_state(moto, tiny_archive, monkeypatch):
    assert deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge").exit_code == 0
    assert cli("autoscale", NAME).exit_code == 0
    refused = cli("delete", NAME)
    assert refused.exit_code == 1 and "pass --yes" in refused.stderr
    monkeypatch.setattr(cli_options, "stdin_is_tty", lambda: True)
    declined = cli("delete", NAME, input="n\n")
    assert declined.exit_code == 1 and state()["endpoints"]
    boto3.client("sagemaker").delete_endpoint(EndpointName=NAME)  # partly deleted already
    accepted = cli("delete", NAME, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "deleted endpoint_config:" in accepted.stdout and "deleted model:" in accepted.stdout
    after = state()
    assert after["models"] == [] and after["configs"] == [] and after["targets"] == []
    nothing = cli("delete", NAME, "--yes")
    assert nothing.exit_code == 0 and "nothing named rr to delete" in nothing.stdout


# --------------------------------------------------- autoscale, batch, iam-policy


def test_autoscale_on_and_off(moto, tiny_archive):
    assert deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge").exit_code == 0
    on = cli("autoscale", NAME, "--min", "1", "--max", "4", "--target-invocations", "250")
    assert on.exit_code == 0, on.output
    scaling = boto3.client("application-autoscaling")
    policy = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    config = policy[0]["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == 250
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    assert state()["targets"] == [f"endpoint/{NAME}/variant/AllTraffic"]
    inverted = cli("autoscale", NAME, "--min", "5", "--max", "2")
    assert inverted.exit_code == 2 and "--min 5 is above --max 2" in inverted.stderr
    off = cli("autoscale", NAME, "--off")
    assert off.exit_code == 0 and state()["targets"] == []
    assert cli("autoscale", "nope").exit_code == 1


def test_autoscale_refuses_serverless(moto, tiny_archive):
    assert deploy(tiny_archive, "--serverless-memory", "2048").exit_code == 0
    result = cli("autoscale", NAME)
    assert result.exit_code == 1 and "serverless" in result.stderr


def test_batch_transform_over_json_lines(moto, tiny_archive):
    deployed = json.loads(
        deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge", "--json").stdout
    )
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="corpus")
    lines = [json.dumps({"query": "q", "texts": ["a", "b"]}) for _ in range(3)]
    s3.put_object(Bucket="corpus", Key="in/part-0.jsonl", Body="\n".join(lines).encode())
    where = "--input s3://corpus/in/ --output s3://corpus/out/ --instance-type ml.g4dn.xlarge"
    result = cli("batch", "--model-name", deployed["model"], *where.split(), "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "Completed"
    described = boto3.client("sagemaker").describe_transform_job(TransformJobName=job["job"])
    assert described["BatchStrategy"] == "SingleRecord"
    assert described["TransformInput"]["SplitType"] == "Line"
    assert described["TransformInput"]["ContentType"] == "application/json"
    missing = cli("batch", "--model-name", "nope", "--input", "s3://c/i", "--output", "s3://c/o")
    assert missing.exit_code == 1 and "no model nope" in missing.stderr
    bad_uri = cli("batch", "--model-name", "m", "--input", "corpus/in", "--output", "s3://c/o")
    assert bad_uri.exit_code == 2 and "not an s3://bucket/key URI" in bad_uri.stderr


def test_iam_policy_is_scoped_and_has_no_wildcard_grant(moto):
    scope = f"--endpoint-prefix reranker --bucket my-bucket --role {ROLE} --region eu-west-1"
    result = cli("iam-policy", *scope.split(), "--account", "123456789012", "--json")
    assert result.exit_code == 0, result.output
    documents = json.loads(result.stdout)
    assert set(documents) == {
        "operator_policy",
        "execution_role_trust_policy",
        "execution_role_policy",
    }
    statements = [s for doc in documents.values() for s in doc["Statement"]]
    for statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert all(a != "*" and not a.endswith(":*") for a in actions), statement
    for document in documents.values():
        assert wildcard_grants(document) == []
    endpoint_statement = documents["operator_policy"]["Statement"][0]
    assert (
        "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/reranker*"
        in (endpoint_statement["Resource"])
    )
    trust = documents["execution_role_trust_policy"]["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    pass_role = next(s for s in statements if s.get("Sid") == "PassExecutionRole")
    assert pass_role["Resource"] == [ROLE]
    text = cli("iam-policy")
    assert "# operator_policy" in text.stdout


def test_wildcard_check_catches_a_star_grant():
    document = policies("*", "*", "", None, None, None)["operator_policy"]
    document["Statement"].append(
        {"Sid": "Bad", "Effect": "Allow", "Action": "sagemaker:*", "Resource": "*"}
    )
    assert wildcard_grants(document) == ["Bad"]


def test_every_command_has_the_common_options_and_an_example():
    names = [
        "deploy",
        "update",
        "status",
        "list",
        "delete",
        "invoke",
        "autoscale",
        "batch",
        "iam-policy",
    ]
    changing = {"deploy", "update", "delete", "autoscale", "batch"}
    for name in names:
        command = main.commands[name]
        options = {opt for param in command.params for opt in param.opts}
        assert {"--region", "--profile", "--json"} <= options, name
        # Only a command that changes something has a dry run to offer.
        assert ("--dry-run" in options) == (name in changing), name
        assert "sagemaker-reranker " + name in (command.help or ""), name


def test_update_without_wait_is_finished_by_a_rerun(moto, tiny_archive):
    assert deploy(tiny_archive).exit_code == 0
    old_config = state()["endpoints"][NAME][0]
    args = ["update", NAME, "--model-data", str(tiny_archive), "--role", ROLE, "--env", "A=1"]
    started = cli(*args, "--no-wait", "--json")
    assert started.exit_code == 0, started.output
    assert json.loads(started.stdout)["action"] == "updating"
    assert old_config in state()["configs"]  # not removed before the new one is confirmed
    finished = cli(*args, "--json")
    data = json.loads(finished.stdout)
    assert data["action"] == "unchanged"
    assert f"endpoint_config:{old_config}" in data["removed"]
    assert state()["configs"] == [data["config"]]


def test_long_names_fit_and_are_found_again(moto, tiny_archive):
    name = "a-very-long-reranker-endpoint-name-" + "x" * 28  # 63 characters
    result = deploy(tiny_archive, "--instance-type", "ml.g4dn.xlarge", "--json", name=name)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["config"]) <= 63 and data["config"].startswith(name[:40])
    deleted = cli("delete", name, "--yes", "--json")
    alarms = [f"alarm:sagemaker-reranker-{name}-{kind}" for kind in ("latency-p99", "5xx-errors")]
    alarms += [f"alarm:sagemaker-reranker-{name}-{kind}" for kind in ("4xx-rate", "cpu-high")]
    alarms += [f"alarm:sagemaker-reranker-{name}-gpu-high"]
    assert sorted(json.loads(deleted.stdout)["removed"]) == sorted(
        [
            f"endpoint:{name}",
            f"endpoint_config:{data['config']}",
            f"model:{data['model']}",
            *alarms,
        ]
    )
    assert state()["models"] == [] and state()["configs"] == []


def test_invoke_checks_its_documents(moto, tmp_path):
    none = cli("invoke", NAME, "-q", "q")
    assert none.exit_code == 2 and "no documents: pass --docs FILE or --doc TEXT" in none.stderr
    bad = tmp_path / "docs.json"
    bad.write_text('["a", 1]', encoding="utf-8")
    wrong = cli("invoke", NAME, "-q", "q", "--docs", str(bad))
    assert wrong.exit_code == 2 and "must be a JSON list of strings" in wrong.stderr
    missing = cli("invoke", NAME, "-q", "q", "--doc", "a")
    assert missing.exit_code == 1 and NAME in missing.stderr
