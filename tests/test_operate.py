"""Operating an endpoint in-process against moto: alarms, metrics, logs, leftovers and gc.

moto's gaps are filled by fixtures in ``moto_shims`` (percentile statistics, the metrics and
log lines a live endpoint would have written, the service's rules on duplicate names).
"""

from __future__ import annotations

import json
import types
from datetime import timedelta
from typing import Any

import boto3
import pytest
from aws_fixtures import NAME, ROLE, Cli, MotoOptions, ctrl_c_at
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result
from moto.cloudwatch.models import cloudwatch_backends
from moto.s3.models import s3_backends
from moto_shims import (
    ACCOUNT,
    backend,
    put_endpoint_metrics,
    write_endpoint_logs,
)

from sagemaker_reranker.deploy.aws import logs as logs_module
from sagemaker_reranker.deploy.aws import session as aws_module
from sagemaker_reranker.deploy.aws.iam import policies
from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.cli import options as cli_options

SECRET = "FAKE/Operate+Secret-never-printed-77b1"
GPU = "ml.g5.xlarge"
CPU = "ml.m5.xlarge"
cli = Cli(SECRET)
deploy, update = cli.deploy, cli.update


@pytest.fixture
def moto_options() -> MotoOptions:
    return MotoOptions(service_rules=True, percentiles=True, secret=SECRET)


def alarms() -> dict[str, dict[str, Any]]:
    found = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    return {alarm["AlarmName"]: alarm for alarm in found}


def resources() -> dict[str, list[str]]:
    store = backend()
    return {
        "models": sorted(store._models),
        "configs": sorted(store.endpoint_configs),
        "endpoints": sorted(store.endpoints),
    }


def last_line(result: Result) -> str:
    return result.stderr.strip().splitlines()[-1]


# ------------------------------------------------------------------------ alarms


def test_deploy_creates_tagged_alarms_scaled_to_the_instance(moto, tiny_archive):
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="oncall")["TopicArn"]
    result = deploy(tiny_archive, "--alarm-topic", topic)
    assert result.exit_code == 0, result.output
    assert (
        "alarms    latency-p99, 5xx-errors, 4xx-rate, cpu-high, gpu-high (p99 above 2000 ms), "
        f"notifying {topic}"
    ) in result.stdout
    found = alarms()
    prefix = f"sagemaker-reranker-{NAME}-"
    kinds = ["4xx-rate", "5xx-errors", "cpu-high", "gpu-high", "latency-p99"]
    assert sorted(found) == [prefix + kind for kind in kinds]
    latency = found[prefix + "latency-p99"]
    assert latency["ExtendedStatistic"] == "p99" and latency["MetricName"] == "ModelLatency"
    assert latency["Threshold"] == 2_000_000  # 2 s on a GPU, in microseconds
    assert {"Name": "EndpointName", "Value": NAME} in latency["Dimensions"]
    assert found[prefix + "5xx-errors"]["Threshold"] == 0
    assert found[prefix + "5xx-errors"]["Period"] == 300
    assert found[prefix + "cpu-high"]["Threshold"] == 360  # 90 % of 4 vCPUs, summed
    assert found[prefix + "cpu-high"]["EvaluationPeriods"] * 300 == 15 * 60
    assert found[prefix + "gpu-high"]["Threshold"] == 90
    rate = found[prefix + "4xx-rate"]
    assert [query["Id"] for query in rate["Metrics"]] == ["errors", "invocations", "rate"]
    assert rate["Threshold"] == 5
    cloudwatch = boto3.client("cloudwatch")
    for alarm in found.values():
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
        tags = cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
        assert {"Key": "sagemaker-reranker:endpoint", "Value": NAME} in tags
    before = {name: alarm["AlarmConfigurationUpdatedTimestamp"] for name, alarm in found.items()}
    again = deploy(tiny_archive, "--alarm-topic", topic, "--dry-run", "--json")
    assert json.loads(again.stdout)["dry_run"] == []  # unchanged: nothing to put
    rerun = deploy(tiny_archive)  # no topic given: the alarms keep theirs
    assert rerun.exit_code == 0, rerun.output
    after = alarms()
    assert {n: a["AlarmConfigurationUpdatedTimestamp"] for n, a in after.items()} == before
    assert all(alarm["AlarmActions"] == [topic] for alarm in after.values())


def test_alarm_options_slo_no_alarms_and_bad_topics(moto, tiny_archive):
    cpu = deploy(tiny_archive, "--instance-type", CPU, "--latency-slo-ms", "750", name="cpu")
    assert cpu.exit_code == 0, cpu.output
    found = alarms()
    assert found["sagemaker-reranker-cpu-latency-p99"]["Threshold"] == 750_000
    assert "sagemaker-reranker-cpu-gpu-high" not in found
    assert found["sagemaker-reranker-cpu-cpu-high"]["AlarmActions"] == []
    quiet = deploy(tiny_archive, "--instance-type", CPU, "--no-alarms", name="quiet")
    assert quiet.exit_code == 0, quiet.output
    assert not [name for name in alarms() if "-quiet-" in name]
    serverless = deploy(tiny_archive, "--serverless-memory", "2048", name="sls")
    assert serverless.exit_code == 0, serverless.output
    sls = sorted(name for name in alarms() if "-sls-" in name)
    assert [name.rsplit("sls-", 1)[1] for name in sls] == ["4xx-rate", "5xx-errors", "latency-p99"]
    assert alarms()["sagemaker-reranker-sls-latency-p99"]["Threshold"] == 30_000_000
    before = resources()
    malformed = deploy(tiny_archive, "--alarm-topic", "oncall", name="other")
    assert malformed.exit_code == 2
    assert last_line(malformed) == (
        "Error: --alarm-topic 'oncall' is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
    )
    missing_topic = "arn:aws:sns:us-east-1:123456789012:nope"
    missing = deploy(tiny_archive, "--alarm-topic", missing_topic, name="other")
    assert missing.exit_code == 1
    assert f"SNS topic {missing_topic} does not exist" in last_line(missing)
    both = deploy(tiny_archive, "--no-alarms", "--latency-slo-ms", "5", name="other")
    assert both.exit_code == 2 and "--no-alarms cannot go with" in both.stderr
    assert resources() == before  # nothing created, nothing uploaded twice


def test_dry_run_shows_the_alarms_and_creates_none(moto, tiny_archive):
    result = deploy(tiny_archive, "--dry-run")
    assert result.exit_code == 0, result.output
    shown = [line for line in result.stdout.splitlines() if "put_metric_alarm" in line]
    assert len(shown) == 5
    assert '"AlarmName": "sagemaker-reranker-rr-latency-p99"' in result.stdout
    assert alarms() == {}


def test_update_keeps_alarms_follows_the_instance_and_delete_removes_them(moto, tiny_archive):
    topic = boto3.client("sns").create_topic(Name="oncall")["TopicArn"]
    assert deploy(tiny_archive, "--alarm-topic", topic).exit_code == 0
    failed_update = update(tiny_archive, "--instance-type", "ml.m99.xlarge")
    assert failed_update.exit_code == 1
    assert "sagemaker-reranker-rr-gpu-high" in alarms()  # the old config serves: unchanged
    updated = update(tiny_archive, "--instance-type", CPU)
    assert updated.exit_code == 0, updated.output
    found = alarms()
    assert "sagemaker-reranker-rr-gpu-high" not in found
    assert found["sagemaker-reranker-rr-latency-p99"]["Threshold"] == 30_000_000
    assert all(alarm["AlarmActions"] == [topic] for alarm in found.values())
    skipped = update(tiny_archive, "--instance-type", "ml.c5.xlarge", "--no-alarms")
    assert skipped.exit_code == 0, skipped.output
    assert alarms() == found  # left as they were
    deleted = cli("delete", NAME, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "deleted alarm:sagemaker-reranker-rr-latency-p99" in deleted.stdout
    assert alarms() == {}


def test_iam_policy_grants_exactly_the_alarm_metric_and_log_actions():
    operator = policies("eu-west-1", "123456789012", "rr", None, None, None)["operator_policy"]
    by_sid = {statement["Sid"]: statement for statement in operator["Statement"]}
    alarm_statement = by_sid["EndpointAlarms"]
    assert sorted(alarm_statement["Action"]) == [
        "cloudwatch:DeleteAlarms",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:ListTagsForResource",
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:TagResource",
    ]
    assert alarm_statement["Resource"] == [
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:sagemaker-reranker-rr*"
    ]
    assert by_sid["EndpointMetricsRead"]["Action"] == ["cloudwatch:GetMetricData"]
    assert by_sid["EndpointLogsRead"]["Action"] == ["logs:FilterLogEvents"]
    assert by_sid["EndpointLogsRead"]["Resource"] == [
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/Endpoints/rr*"
    ]
    assert by_sid["AlarmTopic"]["Action"] == ["sns:GetTopicAttributes"]
    # gc deletes archives only under the tool's own key prefix, in the account's bucket.
    archives = by_sid["ModelArchiveObjects"]
    assert "s3:DeleteObject" in archives["Action"]
    assert archives["Resource"] == [
        "arn:aws:s3:::sagemaker-eu-west-1-123456789012/sagemaker-reranker/*"
    ]
    assert archives["Condition"] == {"StringEquals": {"s3:ResourceAccount": "123456789012"}}


# ------------------------------------------------------------------ status --metrics


def test_status_metrics_one_call_table_json_and_alarm_states(moto, tiny_archive, monkeypatch):
    assert deploy(tiny_archive, "--instance-type", CPU).exit_code == 0
    cloudwatch = boto3.client("cloudwatch")
    latencies = [float(ms) for ms in range(1, 101)]  # 1..100 ms: p50 = 50, p99 = 99
    put_endpoint_metrics(
        cloudwatch, NAME, latencies, [2.0] * 100, errors_4xx=3, errors_5xx=1, cpu_percent=150.0
    )
    put_endpoint_metrics(cloudwatch, "someone-else", [5000.0], [1.0], errors_5xx=9)
    calls = []
    original = aws_module.Aws.read

    def counting(self, service, operation, **params):
        calls.append(operation)
        return original(self, service, operation, **params)

    monkeypatch.setattr(aws_module.Aws, "read", counting)
    data = json.loads(cli("status", NAME, "--metrics", "--json").stdout)
    assert calls.count("get_metric_data") == 1
    figures = data["metrics"]
    assert figures["invocations"] == 100
    assert figures["model_latency_ms"] == {"p50": 50.0, "p99": 99.0}
    assert figures["overhead_latency_ms"] == {"p50": 2.0, "p99": 2.0}
    assert (figures["errors_4xx"], figures["errors_5xx"]) == (3, 1)
    assert figures["utilization_percent"]["cpu"] == 150.0
    assert figures["utilization_percent"]["gpu"] is None
    assert figures["window"]["seconds"] == 3600
    states = {alarm["kind"]: alarm["state"] for alarm in data["alarms"]}
    assert set(states) == {"latency-p99", "5xx-errors", "4xx-rate", "cpu-high"}
    text = cli("status", NAME, "--metrics", "--since", "10m")
    assert text.exit_code == 0, text.output
    assert "metrics over the last 10m" in text.stdout
    assert f"  {'model latency p50 / p99':<28}50.0 / 99.0 ms" in text.stdout
    assert f"  {'overhead latency p50 / p99':<28}2.0 / 2.0 ms" in text.stdout
    assert f"  {'4xx / 5xx errors':<28}3 / 1" in text.stdout
    assert f"  {'cpu':<28}150.0% (of 400%: summed over 4 vCPUs)" in text.stdout
    assert f"  {'instances':<28}1 running, 1 desired (ml.m5.xlarge)" in text.stdout
    assert "alarm             latency-p99  " in text.stdout
    bad = cli("status", NAME, "--metrics", "--since", "yesterday")
    assert bad.exit_code == 2
    assert last_line(bad) == "Error: --since: 'yesterday' is not a duration like 10m, 1h or 2d"
    empty = json.loads(cli("status", NAME, "--metrics", "--since", "90s", "--json").stdout)
    assert empty["metrics"]["invocations"] == 0  # the datapoints are 2 minutes old
    assert empty["metrics"]["model_latency_ms"] == {"p50": None, "p99": None}


# ------------------------------------------------------------------------ logs

LINES = [
    ("AllTraffic/i-0b", 3.0, "b: ready"),
    ("AllTraffic/i-0a", 1.0, "a: loading model"),
    ("AllTraffic/i-0b", 0.5, "b: loading model"),
    ("AllTraffic/i-0a", 4.0, "a: ready"),
    ("AllTraffic/i-0a", 2.0, "a: warm-up done"),
]


def test_logs_merge_streams_by_time_and_are_bounded(moto):
    write_endpoint_logs(boto3.client("logs"), NAME, LINES)
    result = cli("logs", NAME, "--since", "10m")
    assert result.exit_code == 0, result.output
    messages = [line.split(" ", 2)[2] for line in result.stdout.splitlines()]
    assert messages == [
        "b: loading model",
        "a: loading model",
        "a: warm-up done",
        "b: ready",
        "a: ready",
    ]
    assert result.stdout.splitlines()[0].split(" ")[1] == "AllTraffic/i-0b"
    limited = cli("logs", NAME, "--limit", "2", "--json")
    assert [row["message"] for row in json.loads(limited.stdout)] == ["b: ready", "a: ready"]
    assert "3 earlier line(s) not shown" in limited.stderr
    old = cli("logs", NAME, "--since", "30s")
    assert old.stdout.strip() == "no log lines since 30s"
    missing = cli("logs", "nothing-here")
    assert missing.exit_code == 1
    assert last_line(missing) == (
        "Error: no log group /aws/sagemaker/Endpoints/nothing-here: endpoint nothing-here has "
        "written no logs yet (or there is no such endpoint)"
    )


def test_logs_follow_prints_new_lines_once_and_ctrl_c_ends_cleanly(moto, monkeypatch):
    client = boto3.client("logs")
    write_endpoint_logs(client, NAME, LINES[:2])
    base = int(logs_module.time.time() * 1000) - 60_000
    polls = []

    def next_poll(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            write_endpoint_logs(client, NAME, [("AllTraffic/i-0c", 20.0, "c: new line")], base)
        if len(polls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(
        logs_module, "time", types.SimpleNamespace(time=logs_module.time.time, sleep=next_poll)
    )
    result = CliRunner().invoke(main, ["logs", NAME, "--follow", "--json"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output + result.stderr
    messages = [json.loads(line)["message"] for line in result.stdout.splitlines()]
    assert messages == ["a: loading model", "b: ready", "c: new line"]  # each once
    assert len(polls) == 3


# ---------------------------------------------------------------- leftovers and gc


def age(minutes: float) -> None:
    """Make every model, config and alarm look ``minutes`` older (moto stamps them now)."""
    store = backend()
    for item in [*store._models.values(), *store.endpoint_configs.values()]:
        item.creation_time = item.creation_time - timedelta(minutes=minutes)
    for alarm in cloudwatch_backends[ACCOUNT]["us-east-1"].alarms.values():
        alarm.configuration_updated_timestamp -= timedelta(minutes=minutes)
    for bucket in s3_backends[ACCOUNT]["aws"].buckets.values():
        for key in bucket.keys.values():
            key.last_modified -= timedelta(minutes=minutes)


def archives() -> list[str]:
    """The archives in the default bucket, as s3:// URIs."""
    bucket = f"sagemaker-us-east-1-{ACCOUNT}"
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    return [f"s3://{bucket}/{item['Key']}" for item in listed]


def test_leftovers_of_an_interrupted_deploy_are_listed_and_collected(
    moto, tiny_archive, monkeypatch
):
    assert deploy(tiny_archive, "--instance-type", CPU, name="live").exit_code == 0
    with ctrl_c_at(monkeypatch, "create_endpoint"):  # after the model and config were made
        assert deploy(tiny_archive, "--instance-type", CPU, name="cut").exit_code != 0
    boto3.client("sagemaker").delete_endpoint(EndpointName="live")  # deleted by other means
    listed = json.loads(cli("list", "--leftovers", "--json").stdout)
    names = sorted((row["kind"], row["endpoint"]) for row in listed)
    # Both deploys uploaded the same bytes: one archive, read only by left-over models.
    assert names == sorted(
        [("endpoint_config", "cut"), ("model", "cut")]
        + [("endpoint_config", "live"), ("model", "live")]
        + [("alarm", "live")] * 4
        + [("archive", "-")]
    )
    (archive,) = archives()
    assert listed[-1]["name"] == archive
    text = cli("list", "--leftovers")
    assert text.stdout.splitlines()[0].split() == ["KIND", "NAME", "ENDPOINT", "AGE"]
    before = resources()
    young = cli("gc", "--yes")
    assert "leaving 9 leftover(s) younger than 10m alone" in young.stderr
    assert young.stdout.strip() == "nothing to collect" and resources() == before
    age(30)
    dry = cli("gc", "--dry-run")
    assert dry.exit_code == 0 and resources() == before
    assert "would delete endpoint_config:cut-" in dry.stdout
    assert f"would delete archive:{archive}" in dry.stdout and archives() == [archive]
    refused = cli("gc")
    assert refused.exit_code == 1
    assert last_line(refused) == (
        "Error: refusing to delete 9 leftover(s) without confirmation: pass --yes "
        "(see them first with --dry-run)"
    )
    monkeypatch.setattr(cli_options, "stdin_is_tty", lambda: True)
    declined = cli("gc", input="n\n")
    assert declined.exit_code == 1 and resources() == before
    collected = cli("gc", input="y\n")
    assert collected.exit_code == 0, collected.output
    assert resources() == {"models": [], "configs": [], "endpoints": []}
    assert alarms() == {} and archives() == []
    assert cli("list", "--leftovers").stdout.strip() == "no leftovers"


def test_what_an_endpoint_uses_is_never_a_leftover(moto, tiny_archive):
    assert deploy(tiny_archive, "--instance-type", CPU).exit_code == 0
    sm = boto3.client("sagemaker")
    sm.create_model(
        ModelName="someone-elses", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "x"}
    )
    age(30)
    assert json.loads(cli("list", "--leftovers", "--json").stdout) == []
    assert cli("gc", "--yes", "--min-age", "0s").stdout.strip() == "nothing to collect"
    assert "someone-elses" in resources()["models"]


def test_an_archive_goes_only_when_no_model_reads_it(moto, tiny_archive, monkeypatch):
    assert deploy(tiny_archive, "--instance-type", CPU, name="first").exit_code == 0
    (archive,) = archives()
    sm = boto3.client("sagemaker")
    sm.create_model(  # made by other means from the same archive: it keeps it in use
        ModelName="by-hand",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "x", "ModelDataUrl": archive},
    )
    deleted = cli("delete", "first", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "`sagemaker-reranker gc` removes archives no model reads" in deleted.stderr
    age(30)
    assert json.loads(cli("list", "--leftovers", "--json").stdout) == []
    sm.delete_model(ModelName="by-hand")
    (row,) = json.loads(cli("list", "--leftovers", "--json").stdout)
    assert (row["kind"], row["name"], row["endpoint"]) == ("archive", archive, "-")

    # A model that cannot be read (IAM scoped to other names) might read any archive.
    sm.create_model(ModelName="not-mine", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "x"})
    original = aws_module.Aws.read

    def denied(self, service, operation, **params):
        if operation == "describe_model" and params["ModelName"] == "not-mine":
            error = {"Error": {"Code": "AccessDeniedException", "Message": "no"}}
            raise ClientError(error, operation)
        return original(self, service, operation, **params)

    monkeypatch.setattr(aws_module.Aws, "read", denied)
    hidden = cli("gc", "--yes", "--min-age", "0s")
    assert hidden.stdout.strip() == "nothing to collect" and archives() == [archive]
    assert (
        f"archives in s3://sagemaker-us-east-1-{ACCOUNT} left out: cannot read model not-mine "
        "(AccessDeniedException)" in hidden.stderr
    )
    monkeypatch.setattr(aws_module.Aws, "read", original)
    collected = cli("gc", "--yes")
    assert collected.stdout.strip() == f"deleted archive:{archive}" and archives() == []


def test_an_archive_stays_while_a_younger_leftover_model_reads_it(moto, tiny_archive, monkeypatch):
    with ctrl_c_at(monkeypatch, "create_endpoint"):
        assert deploy(tiny_archive, "--instance-type", CPU, name="cut").exit_code != 0
    (archive,) = archives()
    for bucket in s3_backends[ACCOUNT]["aws"].buckets.values():
        for key in bucket.keys.values():
            key.last_modified -= timedelta(hours=1)  # the archive is old, its model is not
    listed = json.loads(cli("list", "--leftovers", "--json").stdout)
    assert sorted(row["kind"] for row in listed) == ["archive", "endpoint_config", "model"]
    kept = cli("gc", "--yes")
    assert "leaving 3 leftover(s) younger than 10m alone" in kept.stderr
    assert archives() == [archive]
    age(30)
    assert cli("gc", "--yes").exit_code == 0 and archives() == []
    assert resources()["models"] == []


def test_leftover_archives_in_another_bucket(moto, tiny_archive):
    boto3.client("s3").create_bucket(Bucket="my-archives")
    assert deploy(tiny_archive, "--instance-type", CPU, "--bucket", "my-archives").exit_code == 0
    assert cli("delete", NAME, "--yes").exit_code == 0
    age(30)
    assert json.loads(cli("list", "--leftovers", "--json").stdout) == []  # the default bucket
    (row,) = json.loads(cli("list", "--leftovers", "--bucket", "my-archives", "--json").stdout)
    assert row["name"].startswith("s3://my-archives/sagemaker-reranker/")
    assert cli("gc", "--yes", "--bucket", "my-archives").exit_code == 0
    assert boto3.client("s3").list_objects_v2(Bucket="my-archives").get("Contents") is None
