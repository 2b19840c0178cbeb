"""Inference components and scale to zero, end to end through the CLI on moto with the
component shim (``moto_shims.patch_components``): add, a second component, the same command
twice, a rolling update (and a failed one), status, delete one, delete all, gc; the whole
``--scale-to-zero --dry-run --json`` plan checked against botocore's service model.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import botocore.session
import pytest
from aws_fixtures import ROLE, Cli, MotoOptions
from botocore.validate import ParamValidator
from moto_shims import (
    backend,
    component_calls,
    fail_next_component_update,
    refuse_zero_instances,
)

SECRET = "FAKE/Secret+Key-components-never-shown-77"
cli = Cli(SECRET)
ENDPOINT = "shared"
# ml.g5.* is the product default; moto's own list predates it, the shim accepts it.
GPU = ("--instance-type", "ml.g5.xlarge")


@pytest.fixture
def moto_options() -> MotoOptions:
    return MotoOptions(secret=SECRET)


def add(archive: Any, component: str, *extra: str, endpoint: str = ENDPOINT):
    return cli(
        "deploy", endpoint, "--component", component, "--model-data", str(archive),
        "--role", ROLE, *extra,
    )  # fmt: skip


def components_state() -> dict[str, Any]:
    """What the shim and moto hold that a component command could change."""
    store = backend()
    sm = boto3.client("sagemaker")
    listed = sm.list_inference_components()["InferenceComponents"]
    described = {
        item["InferenceComponentName"]: sm.describe_inference_component(
            InferenceComponentName=item["InferenceComponentName"]
        )
        for item in listed
    }
    targets = boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    return {
        "models": sorted(store._models),
        "configs": sorted(store.endpoint_configs),
        "endpoints": sorted(store.endpoints),
        "components": {
            name: (
                d["Specification"]["ModelName"],
                d["InferenceComponentStatus"],
                str(d["LastModifiedTime"]),
            )
            for name, d in described.items()
        },
        "targets": sorted((t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets),
        "alarms": sorted(a["AlarmName"] for a in alarms),
    }


def second_archive(tiny_archive, tmp_path):
    """Another archive (other bytes, so another sha256 and model)."""
    copy = tmp_path / "model-v2.tar.gz"
    copy.write_bytes(tiny_archive.read_bytes() + b"\0" * 1024)
    return copy


# ------------------------------------------------------------------------ the plan


def _validate(call: dict[str, Any]) -> None:
    """A planned call against botocore's model of its operation (upload_file is S3's
    multipart transfer, not one API operation)."""
    if call["operation"] == "upload_file":
        return
    session = botocore.session.get_session()
    model = session.get_service_model(call["service"])
    operation = model.operation_model(
        "".join(word.title() for word in call["operation"].split("_")).replace("Ic", "IC")
    )
    report = ParamValidator().validate(call["params"], operation.input_shape)
    assert not report.has_errors(), (call["operation"], report.generate_report())


def test_scale_to_zero_dry_run_plans_every_call_valid_for_botocore(moto, tiny_archive):
    before = components_state()
    result = add(
        tiny_archive, "bge", *GPU, "--scale-to-zero", "--max-instances", "2", "--dry-run", "--json"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    planned = out["dry_run"]
    assert [c["operation"] for c in planned] == [
        "create_endpoint_config",
        "create_endpoint",
        "create_bucket",
        "upload_file",
        "create_model",
        "create_inference_component",
        "register_scalable_target",
        "put_scaling_policy",
        "put_scaling_policy",
        "put_metric_alarm",
    ]
    for call in planned:
        _validate(call)
    by_op = {c["operation"]: c["params"] for c in planned}
    config = by_op["create_endpoint_config"]
    assert config["ExecutionRoleArn"] == ROLE
    (variant,) = config["ProductionVariants"]
    assert "ModelName" not in variant
    assert variant["ManagedInstanceScaling"] == {
        "Status": "ENABLED",
        "MinInstanceCount": 0,
        "MaxInstanceCount": 2,
    }
    assert variant["RoutingConfig"] == {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
    component = by_op["create_inference_component"]
    assert component["RuntimeConfig"] == {"CopyCount": 1}
    assert component["Specification"]["ModelName"] == by_op["create_model"]["ModelName"]
    compute = component["Specification"]["ComputeResourceRequirements"]
    assert compute["NumberOfAcceleratorDevicesRequired"] == 1.0
    assert compute["MinMemoryRequiredInMb"] >= 1024  # the runtime's reserve at least
    target = by_op["register_scalable_target"]
    assert (target["ResourceId"], target["ScalableDimension"], target["MinCapacity"]) == (
        "inference-component/bge",
        "sagemaker:inference-component:DesiredCopyCount",
        0,
    )
    policies = [c["params"] for c in planned if c["operation"] == "put_scaling_policy"]
    assert [p["PolicyType"] for p in policies] == ["TargetTrackingScaling", "StepScaling"]
    alarm = by_op["put_metric_alarm"]
    assert alarm["MetricName"] == "NoCapacityInvocationFailures"
    assert alarm["Dimensions"] == [{"Name": "InferenceComponentName", "Value": "bge"}]
    assert out["result"]["action"] == "would be created"
    assert components_state() == before


def test_cpu_component_takes_cores_and_one_worker_per_copy(moto, tiny_archive):
    result = add(tiny_archive, "small", "--instance-type", "ml.m5.xlarge", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    planned = {c["operation"]: c["params"] for c in json.loads(result.stdout)["dry_run"]}
    compute = planned["create_inference_component"]["Specification"]["ComputeResourceRequirements"]
    assert compute["NumberOfCpuCoresRequired"] == 2.0
    assert "NumberOfAcceleratorDevicesRequired" not in compute
    env = planned["create_model"]["PrimaryContainer"]["Environment"]
    assert (env["SAGEMAKER_MODEL_SERVER_WORKERS"], env["OMP_NUM_THREADS"]) == ("1", "2")
    minimum = planned["create_endpoint_config"]["ProductionVariants"][0]["ManagedInstanceScaling"]
    assert minimum["MinInstanceCount"] == 1  # no --scale-to-zero


# ------------------------------------------------------------------------ life cycle


def test_add_second_same_twice_update_status_delete_one_delete_all_gc(moto, tiny_archive, tmp_path):
    first = add(tiny_archive, "bge", *GPU, "--scale-to-zero", "--max-instances", "2")
    assert first.exit_code == 0, first.output
    assert "component bge: created (InService)" in first.output
    sm = boto3.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["ExecutionRoleArn"] == ROLE
    bge = sm.describe_inference_component(InferenceComponentName="bge")
    assert bge["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}

    # A second component touches nothing of the first.
    before = components_state()
    second = add(tiny_archive, "other", "--copies", "2")
    assert second.exit_code == 0, second.output
    after = components_state()
    assert after["components"]["bge"] == before["components"]["bge"]
    assert after["configs"] == before["configs"] and after["targets"] == before["targets"]
    assert after["components"]["other"][1] == "InService"
    assert after["components"]["other"][0] != after["components"]["bge"][0]

    # The same command twice changes nothing.
    again = add(tiny_archive, "bge", *GPU, "--scale-to-zero", "--max-instances", "2", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["action"] == "unchanged"
    assert components_state() == after

    # A rolling update moves bge to the new model and removes the old one.
    old_model = after["components"]["bge"][0]
    v2 = second_archive(tiny_archive, tmp_path)
    updated = cli(
        "update", ENDPOINT, "--component", "bge", "--model-data", str(v2), "--role", ROLE, "--json"
    )
    assert updated.exit_code == 0, updated.output
    outcome = json.loads(updated.stdout)
    assert outcome["action"] == "updated" and outcome["previous"] == old_model
    update_call = [params for kind, params in component_calls if kind == "update"][-1]
    policy = update_call["DeploymentConfig"]["RollingUpdatePolicy"]
    assert policy["MaximumBatchSize"] == {"Type": "COPY_COUNT", "Value": 1}
    new_model = sm.describe_inference_component(InferenceComponentName="bge")["Specification"][
        "ModelName"
    ]
    assert new_model == outcome["model"] != old_model
    assert old_model not in backend()._models

    # status lists both components.
    status = cli("status", ENDPOINT, "--json")
    assert status.exit_code == 0, status.output
    rows = {row["component"]: row for row in json.loads(status.stdout)["components"]}
    assert rows["bge"]["model"] == new_model
    assert rows["bge"]["model_data"].endswith("/model.tar.gz")
    assert rows["bge"]["scaling"] == {
        "min": 0,
        "max": 2,
        "policies": ["bge-invocations-per-copy", "bge-scale-from-zero"],
    }
    assert (rows["other"]["copies_desired"], rows["other"]["copies_current"]) == (2, 2)
    assert rows["other"]["scaling"] is None
    text = cli("status", ENDPOINT).output
    assert "inference components" in text
    assert f"bge: InService, copies 1/1, scaling 0-2 copies, model {new_model}" in text
    assert "other: InService, copies 2/2, model" in text

    # Nothing the components use is a leftover.
    assert json.loads(cli("list", "--leftovers", "--json").stdout) == []

    # Delete one: bge with its model, scaling and alarm; other keeps serving.
    one = cli("delete", ENDPOINT, "--component", "bge", "--yes", "--json")
    assert one.exit_code == 0, one.output
    removed = json.loads(one.stdout)["removed"]
    assert "inference_component:bge" in removed and f"model:{new_model}" in removed
    left = components_state()
    assert list(left["components"]) == ["other"]
    assert left["targets"] == [] and not any("bge" in alarm for alarm in left["alarms"])
    assert new_model not in left["models"]

    # Delete all: the component first (SageMaker deletes no endpoint that hosts one).
    everything = cli("delete", ENDPOINT, "--yes", "--json")
    assert everything.exit_code == 0, everything.output
    gone = components_state()
    assert gone["components"] == {} and gone["endpoints"] == [] and gone["models"] == []
    assert gone["configs"] == []
    # What is left is the two archives, which no model reads any more.
    bucket = boto3.client("s3").list_buckets()["Buckets"][0]["Name"]
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    archives = sorted(f"archive:s3://{bucket}/{item['Key']}" for item in listed)
    assert len(archives) == 2
    collected = cli("gc", "--yes", "--min-age", "0s", "--json")
    assert sorted(json.loads(collected.stdout)["removed"]) == archives


def test_failed_rolling_update_leaves_the_old_model_serving(moto, tiny_archive, tmp_path):
    assert add(tiny_archive, "bge", *GPU).exit_code == 0
    sm = boto3.client("sagemaker")
    old = sm.describe_inference_component(InferenceComponentName="bge")["Specification"][
        "ModelName"
    ]
    fail_next_component_update("bge", "the new copies failed their health check")
    v2 = second_archive(tiny_archive, tmp_path)
    result = cli("update", ENDPOINT, "--component", "bge", "--model-data", str(v2), "--role", ROLE)
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]  # after the upload's progress
    assert line.startswith("Error: update of component bge failed")
    assert "failed their health check" in line and f"the old model {old} keeps serving" in line
    now = sm.describe_inference_component(InferenceComponentName="bge")
    assert now["Specification"]["ModelName"] == old
    assert now["InferenceComponentStatus"] == "InService"
    assert sorted(backend()._models) == [old]  # the new model was taken back


def test_region_refusing_zero_instances_gets_one_line_naming_it(moto, tiny_archive):
    refuse_zero_instances("us-east-1")
    result = add(tiny_archive, "bge", *GPU, "--scale-to-zero")
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: region us-east-1")
    assert "region us-east-1 does not offer scaling an endpoint to zero instances" in line
    assert backend().endpoints == {}
    # Without --scale-to-zero the same region serves it.
    assert add(tiny_archive, "bge", *GPU).exit_code == 0


def test_components_and_plain_endpoints_do_not_mix(moto, tiny_archive):
    plain = cli("deploy", "plain", "--model-data", str(tiny_archive), "--role", ROLE)
    assert plain.exit_code == 0, plain.output
    result = add(tiny_archive, "bge", endpoint="plain")
    assert result.exit_code == 1
    assert "serves a model directly, not components" in result.stderr
    assert add(tiny_archive, "bge", *GPU).exit_code == 0
    other_type = add(tiny_archive, "more", "--instance-type", "ml.g4dn.xlarge")
    assert other_type.exit_code == 2 and "runs on ml.g5.xlarge" in other_type.stderr
    serverless = add(tiny_archive, "more", "--serverless-memory", "2048")
    assert serverless.exit_code == 2 and "--serverless-memory does not go with" in serverless.stderr
    loose = cli("deploy", "x", "--model-data", str(tiny_archive), "--role", ROLE, "--copies", "2")
    assert loose.exit_code == 2 and "--copies goes with --component" in loose.stderr
    bad = add(tiny_archive, "bad_name")
    assert bad.exit_code == 2 and "not a valid component name" in bad.stderr
    missing = cli("delete", ENDPOINT, "--component", "nope", "--yes")
    assert missing.exit_code == 1 and "no component nope on endpoint shared" in missing.stderr


def test_shim_enforces_the_real_rules(moto, tiny_archive):
    """What SageMaker refuses, the shim refuses (so a test cannot pass on what AWS rejects)."""
    from botocore.exceptions import ClientError

    assert add(tiny_archive, "bge", *GPU).exit_code == 0
    sm = boto3.client("sagemaker")
    model = sm.describe_inference_component(InferenceComponentName="bge")["Specification"][
        "ModelName"
    ]
    spec = {"ModelName": model, "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 1024}}
    with pytest.raises(ClientError, match="CopyCount must be at least 1"):
        sm.create_inference_component(
            InferenceComponentName="zero", EndpointName=ENDPOINT, VariantName="AllTraffic",
            Specification=spec, RuntimeConfig={"CopyCount": 0},
        )  # fmt: skip
    with pytest.raises(ClientError, match="ExecutionRoleArn is required"):
        sm.create_endpoint_config(
            EndpointConfigName="norole",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "InstanceType": "ml.g5.xlarge",
                    "InitialInstanceCount": 1,
                }
            ],
        )
    with pytest.raises(ClientError, match="delete them before the endpoint"):
        sm.delete_endpoint(EndpointName=ENDPOINT)
    runtime = boto3.client("sagemaker-runtime")
    with pytest.raises(ClientError, match="Inference Component Name header is required"):
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}", ContentType="application/json")
    with pytest.raises(ClientError, match="Inference component nope not found"):
        runtime.invoke_endpoint(
            EndpointName=ENDPOINT, Body=b"{}", ContentType="application/json",
            InferenceComponentName="nope",
        )  # fmt: skip


def test_invoke_passes_the_component_header(moto, tiny_archive):
    """``invoke --component`` is the client's ``inference_component_name``: without it the
    runtime refuses an endpoint that hosts components, with it the header names one."""
    assert add(tiny_archive, "bge", *GPU).exit_code == 0
    query = ("invoke", ENDPOINT, "-q", "capital of France", "--doc", "Paris.")
    bare = cli(*query)
    assert bare.exit_code == 1 and "Inference Component Name header is required" in bare.stderr
    other = cli(*query, "--component", "nope")
    assert other.exit_code == 1 and "Inference component nope not found" in other.stderr


def test_iam_policy_grants_exactly_the_component_actions():
    result = cli(
        "iam-policy", "--endpoint-prefix", "rr", "--region", "eu-west-1",
        "--account", "123456789012", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    operator = json.loads(result.stdout)["operator_policy"]
    by_sid = {statement["Sid"]: statement for statement in operator["Statement"]}
    sm = "arn:aws:sagemaker:eu-west-1:123456789012"
    assert by_sid["RerankerComponents"] == {
        "Sid": "RerankerComponents",
        "Effect": "Allow",
        "Action": [
            "sagemaker:CreateInferenceComponent",
            "sagemaker:DescribeInferenceComponent",
            "sagemaker:UpdateInferenceComponent",
            "sagemaker:DeleteInferenceComponent",
            "sagemaker:AddTags",
        ],
        "Resource": [
            f"{sm}:inference-component/rr*",
            f"{sm}:endpoint/rr*",
            f"{sm}:model/rr*",
        ],
    }
    assert "sagemaker:ListInferenceComponents" in by_sid["RerankerList"]["Action"]
    named = cli("iam-policy", "--endpoint-prefix", "rr", "--component-prefix", "bge", "--json")
    statement = next(
        s for s in json.loads(named.stdout)["operator_policy"]["Statement"]
        if s["Sid"] == "RerankerComponents"
    )  # fmt: skip
    assert statement["Resource"][0].endswith(":inference-component/bge*")


def test_the_installed_cli_runs_components_on_the_moto_server(moto_server, tiny_archive, tmp_path):
    """The same flow as a user's shell runs it: a subprocess against the shims' server."""
    from aws_fixtures import cli_env, run_cli

    env = cli_env(tmp_path, moto_server, SECRET)
    model = ("--model-data", str(tiny_archive), "--role", ROLE)
    first = run_cli(
        env, tmp_path, "deploy", ENDPOINT, "--component", "bge", *model, "--scale-to-zero"
    )
    assert first.returncode == 0, first.stderr
    assert run_cli(env, tmp_path, "deploy", ENDPOINT, "--component", "two", *model).returncode == 0
    status = run_cli(env, tmp_path, "status", ENDPOINT, "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["components"]
    assert [row["component"] for row in rows] == ["bge", "two"]
    assert rows[0]["scaling"]["min"] == 0
    gone = run_cli(env, tmp_path, "delete", ENDPOINT, "--yes")
    assert gone.returncode == 0, gone.stderr
    assert "deleted inference_component:bge" in gone.stdout
    listed = run_cli(env, tmp_path, "list", "--json")
    assert json.loads(listed.stdout) == []


def test_autoscale_a_component_down_to_zero_and_off(moto, tiny_archive):
    assert add(tiny_archive, "bge", *GPU).exit_code == 0
    plain_zero = cli("autoscale", ENDPOINT, "--min", "0")
    assert plain_zero.exit_code == 2 and "--min 0 goes with --component" in plain_zero.stderr
    on = cli("autoscale", ENDPOINT, "--component", "bge", "--min", "0", "--max", "3", "--json")
    assert on.exit_code == 0, on.output
    before = components_state()
    assert ("inference-component/bge", 0, 3) in before["targets"]
    assert "sagemaker-reranker-shared-bge-no-capacity" in before["alarms"]
    again = cli("autoscale", ENDPOINT, "--component", "bge", "--min", "0", "--max", "3", "--json")
    assert json.loads(again.stdout)["autoscaling"]["put"] == []
    assert components_state() == before
    # A minimum of 1 needs no way back from zero: the step policy and its alarm go.
    one = cli("autoscale", ENDPOINT, "--component", "bge", "--min", "1", "--max", "3")
    assert one.exit_code == 0, one.output
    policies = boto3.client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace="sagemaker"
    )["ScalingPolicies"]
    assert [p["PolicyName"] for p in policies] == ["bge-invocations-per-copy"]
    assert components_state()["alarms"] == []
    off = cli("autoscale", ENDPOINT, "--component", "bge", "--off")
    assert off.exit_code == 0, off.output
    assert components_state()["targets"] == []
    unknown = cli("autoscale", ENDPOINT, "--component", "nope", "--min", "0")
    assert unknown.exit_code == 1 and "no component nope" in unknown.stderr


def test_changes_take_time_one_at_a_time(moto, tiny_archive, tmp_path, monkeypatch):
    """Statuses move over time in the shim as on SageMaker: a component is Creating until its
    copies are up, and a second change meanwhile is refused in one line."""
    import time as real_time

    import moto_shims

    clock = {"offset": 0.0}

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return real_time.monotonic() + clock["offset"]

    monkeypatch.setattr(moto_shims, "time", Clock)
    moto_shims.component_seconds.update(create=600.0, update=600.0)
    first = add(tiny_archive, "bge", *GPU, "--no-wait", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["status"] == "Creating"
    rows = json.loads(cli("status", ENDPOINT, "--json").stdout)["components"]
    assert (rows[0]["status"], rows[0]["copies_current"]) == ("Creating", 0)
    v2 = second_archive(tiny_archive, tmp_path)
    busy = cli("update", ENDPOINT, "--component", "bge", "--model-data", str(v2), "--role", ROLE)
    assert busy.exit_code == 1
    assert "component bge is Creating: a change is in progress" in busy.stderr
    clock["offset"] = 601.0  # the instance started and the copy passed its health check
    rows = json.loads(cli("status", ENDPOINT, "--json").stdout)["components"]
    assert (rows[0]["status"], rows[0]["copies_current"]) == ("InService", 1)
