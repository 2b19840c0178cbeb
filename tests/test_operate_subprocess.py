"""Operating commands as a user runs them: CLI subprocesses against a moto server on 127.0.0.1.

``ThreadedMotoServer`` runs in a thread of this test process, so the ``moto_shims`` patches
(the service's rules on names and concurrent updates, percentiles, timed changes) apply to it.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import boto3
import pytest
from aws_fixtures import CLI, STEP_TIMEOUT, MotoOptions, cli_env, model_args, start_cli
from aws_fixtures import run_cli as run
from moto.sagemaker.responses import SageMakerResponse
from moto_shims import (
    backend,
    put_endpoint_metrics,
    slow_changes,
    write_endpoint_logs,
)

pytestmark = pytest.mark.slow

CPU = "ml.m5.xlarge"
SECRET = "FAKE/OperateSubprocess+Secret-never-printed-5a0c"


@pytest.fixture
def moto_options() -> MotoOptions:
    return MotoOptions(service_rules=True, percentiles=True)


@pytest.fixture
def env(moto_server: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, moto_server, SECRET)


def client(env: dict[str, str], service: str):
    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="AKIAFAKEFAKEFAKE",
        aws_secret_access_key="fake",
    )


def deploy(env: dict[str, str], cwd: Path, archive: Path, name: str, *extra: str):
    return run(env, cwd, "deploy", name, *model_args(archive, "--instance-type", CPU, *extra))


def test_status_metrics_logs_follow_and_gc_through_the_cli(env, tiny_archive, tmp_path):
    topic = client(env, "sns").create_topic(Name="oncall")["TopicArn"]
    deployed = deploy(env, tmp_path, tiny_archive, "rr", "--alarm-topic", topic)
    assert deployed.returncode == 0, deployed.stderr
    put_endpoint_metrics(
        client(env, "cloudwatch"), "rr", [10.0, 20.0, 30.0, 400.0], [1.0] * 4, errors_4xx=1
    )
    status = run(env, tmp_path, "status", "rr", "--metrics", "--json")
    figures = json.loads(status.stdout)["metrics"]
    assert figures["invocations"] == 4 and figures["model_latency_ms"]["p99"] == 400.0
    assert figures["errors_4xx"] == 1
    assert len(json.loads(status.stdout)["alarms"]) == 4

    logs = client(env, "logs")
    write_endpoint_logs(logs, "rr", [("AllTraffic/i-1", 1, "one"), ("AllTraffic/i-2", 2, "two")])
    printed = run(env, tmp_path, "logs", "rr")
    assert [line.split(" ", 2)[2] for line in printed.stdout.splitlines()] == ["one", "two"]
    follow = start_cli(env, tmp_path, "logs", "rr", "--follow")
    try:
        assert follow.stdout.readline().endswith("one\n")
        assert follow.stdout.readline().endswith("two\n")
        write_endpoint_logs(logs, "rr", [("AllTraffic/i-1", 30, "three")])
        assert follow.stdout.readline().endswith("three\n")
        follow.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0 and "Traceback" not in err and out == ""

    client(env, "sagemaker").delete_endpoint(EndpointName="rr")  # deleted by other means
    listed = run(env, tmp_path, "list", "--leftovers", "--json")
    assert sorted(row["kind"] for row in json.loads(listed.stdout)) == (
        ["alarm"] * 4 + ["archive", "endpoint_config", "model"]
    )
    no_tty = run(env, tmp_path, "gc", "--min-age", "0s")
    assert no_tty.returncode == 1
    assert no_tty.stderr.strip().splitlines() == [
        "Error: refusing to delete 7 leftover(s) without confirmation: pass --yes "
        "(see them first with --dry-run)"
    ]
    dry = run(env, tmp_path, "gc", "--min-age", "0s", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would delete") == 7
    collected = run(env, tmp_path, "gc", "--min-age", "0s", "--yes")
    assert collected.returncode == 0 and collected.stdout.count("deleted") == 7
    assert "deleted archive:s3://" in collected.stdout
    assert run(env, tmp_path, "list", "--leftovers").stdout.strip() == "no leftovers"


def test_update_answered_by_an_html_500_is_one_line_and_leaves_the_old_config(
    env, tiny_archive, tmp_path, monkeypatch
):
    assert deploy(env, tmp_path, tiny_archive, "rr").returncode == 0
    before = (sorted(backend()._models), sorted(backend().endpoint_configs))
    monkeypatch.delattr(SageMakerResponse, "update_endpoint")  # moto's own: a 500 HTML page
    new_env = model_args(tiny_archive, "--instance-type", CPU, "--env", "A=1")
    failed = run(env, tmp_path, "update", "rr", *new_env)
    assert failed.returncode == 1
    line = failed.stderr.strip().splitlines()[-1]
    assert "<" not in failed.stderr
    assert "HTML page: 500 Internal Server Error" in line
    assert "removed what this run created: endpoint_config:rr-" in line
    assert line.endswith(f"the old config {before[1][0]} keeps serving")
    assert (sorted(backend()._models), sorted(backend().endpoint_configs)) == before


def test_two_updates_at_once_one_proceeds_the_other_says_an_update_is_in_progress(
    env, tiny_archive, tmp_path
):
    assert deploy(env, tmp_path, tiny_archive, "rr").returncode == 0
    slow_changes(update=4.0)
    runs_with = [
        model_args(tiny_archive, "--instance-type", CPU, "--env", f"RUN={i}") for i in (0, 1)
    ]
    commands = [[CLI, "update", "rr", *args] for args in runs_with]
    runs = [
        subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]  # fmt: skip
    results = [process.communicate(timeout=STEP_TIMEOUT) for process in runs]
    codes = sorted(process.returncode for process in runs)
    assert codes == [0, 1], results
    loser = next(err for (out, err), p in zip(results, runs, strict=True) if p.returncode)
    assert "an update is in progress" in loser.strip().splitlines()[-1]
    configs, models = sorted(backend().endpoint_configs), sorted(backend()._models)
    assert len(configs) == 1 and len(models) == 1  # the winner's; the old and the loser's gone
    assert backend().endpoints["rr"].endpoint_config_name == configs[0]
