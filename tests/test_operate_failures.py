"""Failure paths of deploy/update/delete in-process against moto: what a failed or interrupted
run leaves (only what the endpoint serves from), races between two runs, and deletes that
take time. ``moto_shims.patch_service_rules`` gives moto the service's rules: a name cannot
be created twice, an update in progress refuses another, changes take wall time.
"""

from __future__ import annotations

import json
import threading
import types
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_fixtures import NAME, ROLE, Cli, MotoOptions, ctrl_c_at
from click.testing import Result
from moto_shims import (
    backend,
    fail_next_update,
    finish_changes,
    set_endpoint_status,
    slow_changes,
    update_calls,
)

from sagemaker_reranker.deploy.aws import endpoints
from sagemaker_reranker.deploy.aws import session as aws_module
from sagemaker_reranker.deploy.aws.alarms import AlarmOptions
from sagemaker_reranker.deploy.aws.leftovers import Created, undo
from sagemaker_reranker.deploy.aws.session import Aws, DeployError
from sagemaker_reranker.deploy.cli.endpoint import _prepare
from sagemaker_reranker.deploy.packaging.verify import Trust

CPU = "ml.m5.xlarge"
cli = Cli()
deploy, update = cli.deploy, cli.update


@pytest.fixture
def moto_options() -> MotoOptions:
    return MotoOptions(service_rules=True, poll_seconds=0.02)


def resources() -> dict[str, Any]:
    store = backend()
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    return {
        "models": sorted(store._models),
        "configs": sorted(store.endpoint_configs),
        "endpoints": {
            n: (e.endpoint_config_name, e.endpoint_status) for n, e in store.endpoints.items()
        },
        "alarms": sorted(alarm["AlarmName"] for alarm in alarms),
    }


def error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: "), result.stderr
    return lines[-1]


# ------------------------------------------------------------ failed runs clean up


def test_failed_create_removes_what_this_run_made_and_says_so(moto, tiny_archive):
    result = deploy(tiny_archive, "--instance-type", "ml.g4.xlarge")  # plausible, not valid
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith("Error: deploy of endpoint rr failed: ValidationException: Value 'ml.g4")
    assert "more]" in line and len(line) < 400  # the ~70 valid types cut to a few
    assert "removed what this run created: model:rr-" in line
    assert resources() == {"models": [], "configs": [], "endpoints": {}, "alarms": []}


def test_endpoint_failing_while_created_by_this_run_is_removed(moto, tiny_archive, monkeypatch):
    slow_changes(create=60)

    def fail(seconds: float) -> None:
        set_endpoint_status(NAME, "Failed", "The primary container did not pass the ping check")

    monkeypatch.setattr(
        aws_module, "time", types.SimpleNamespace(monotonic=aws_module.time.monotonic, sleep=fail)
    )
    result = deploy(tiny_archive, "--instance-type", CPU)
    assert result.exit_code == 1
    line = error_line(result)
    assert "is Failed: The primary container did not pass the ping check" in line
    assert "removed what this run created: endpoint:rr, endpoint_config:rr-" in line
    assert "alarm:sagemaker-reranker-rr-latency-p99" in line
    assert "its logs stay (`sagemaker-reranker logs rr`)" in line
    assert resources() == {"models": [], "configs": [], "endpoints": {}, "alarms": []}


def test_update_refused_by_the_service_keeps_the_old_config(moto, tiny_archive, monkeypatch):
    assert deploy(tiny_archive, "--instance-type", CPU).exit_code == 0
    before = resources()
    original = aws_module.Aws.write

    def refuse(self, service, operation, **params):
        if operation == "update_endpoint":
            raise aws_module.ClientError(
                {
                    "Error": {
                        "Code": "500",
                        "Message": "<!doctype html>\n<title>500 Internal "
                        "Server Error</title><p>The server encountered an error</p>",
                    }
                },
                "UpdateEndpoint",
            )
        return original(self, service, operation, **params)

    monkeypatch.setattr(aws_module.Aws, "write", refuse)
    result = update(tiny_archive, "--instance-type", CPU, "--env", "A=1")
    line = error_line(result)
    assert result.exit_code == 1
    assert "<" not in line and len(result.stderr.strip().splitlines()) <= 4
    assert "500: the service answered with an HTML page: 500 Internal Server Error" in line
    assert "removed what this run created: endpoint_config:rr-" in line
    assert line.endswith(f"the old config {before['endpoints'][NAME][0]} keeps serving")
    assert resources() == before


def test_rolled_back_update_removes_the_new_config(moto, tiny_archive):
    assert deploy(tiny_archive, "--instance-type", CPU).exit_code == 0
    before = resources()
    slow_changes(update=0.2)
    fail_next_update(NAME, "Image pull failed")
    result = update(tiny_archive, "--instance-type", CPU, "--env", "A=1")
    line = error_line(result)
    assert "update of endpoint rr failed: Image pull failed; removed endpoint_config:" in line
    assert line.endswith("the old config " + before["endpoints"][NAME][0] + " keeps serving")
    assert resources() == before


# ------------------------------------------------------------ interrupted runs


def test_interrupted_update_resumes_and_leaves_one_live_config(moto, tiny_archive, monkeypatch):
    assert deploy(tiny_archive, "--instance-type", CPU).exit_code == 0
    # Updating until the resumed run waits, however slow this machine is.
    slow_changes(update=3600)
    original = endpoints.wait_until_settled

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    def done_while_waiting(*args, **kwargs):
        finish_changes()
        return original(*args, **kwargs)

    monkeypatch.setattr(endpoints, "wait_until_settled", ctrl_c)
    cut = update(tiny_archive, "--instance-type", CPU, "--env", "A=1")
    assert cut.exit_code != 0
    assert len(resources()["configs"]) == 2  # old serving, new pending
    monkeypatch.setattr(endpoints, "wait_until_settled", done_while_waiting)
    resumed = update(tiny_archive, "--instance-type", CPU, "--env", "A=1", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming the wait" in resumed.stderr
    data = json.loads(resumed.stdout)
    assert data["action"] == "updated"
    assert resources()["configs"] == [data["config"]] and resources()["models"] == [data["model"]]


def test_update_cut_before_the_switch_is_cleaned_by_the_next(moto, tiny_archive, monkeypatch):
    assert deploy(tiny_archive, "--instance-type", CPU).exit_code == 0
    with ctrl_c_at(monkeypatch, "update_endpoint"):
        assert update(tiny_archive, "--instance-type", CPU, "--env", "A=1").exit_code != 0
    assert len(resources()["configs"]) == 2  # a leftover: list --leftovers shows it
    other = update(tiny_archive, "--instance-type", CPU, "--env", "B=2", "--json")
    assert other.exit_code == 0, other.output
    data = json.loads(other.stdout)
    assert resources()["configs"] == [data["config"]] and resources()["models"] == [data["model"]]


# ------------------------------------------------------------ two runs at once


def uploaded(archive: Path) -> None:
    """The archive in S3 already: moto's in-process S3 is not safe for two uploads at once."""
    warmup = deploy(archive, "--no-alarms", name="warmup")
    assert warmup.exit_code == 0, warmup.output
    assert cli("delete", "warmup", "--yes").exit_code == 0


def spec_for(archive: Path, **options: Any):
    aws = Aws()
    params = {
        "name": NAME,
        "model_data": str(archive),
        "role": ROLE,
        "bucket": None,
        "trust": Trust(),
        "instance_type": CPU,
        **options,
    }
    return aws, _prepare(aws, params)


def race(gate: str, runs: list[tuple[Aws, Any]], action) -> list[Any]:
    """Run ``action(aws, spec)`` for each run in its own thread; all meet before ``gate``."""
    barrier = threading.Barrier(len(runs), timeout=20)
    original = Aws.write
    outcomes: list[Any] = [None] * len(runs)

    def write(self, service, operation, **params):
        if operation == gate:
            barrier.wait()
        return original(self, service, operation, **params)

    def run(index: int, aws: Aws, spec: Any) -> None:
        try:
            outcomes[index] = action(aws, spec)
        except DeployError as error:
            outcomes[index] = error

    Aws.write = write
    try:
        threads = [
            threading.Thread(target=run, args=(i, aws, spec)) for i, (aws, spec) in enumerate(runs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        Aws.write = original
    return outcomes


def test_two_updates_at_once_exactly_one_proceeds(moto, tiny_archive):
    assert deploy(tiny_archive, "--instance-type", CPU).exit_code == 0
    slow_changes(update=0.5)
    runs = [spec_for(tiny_archive, env=(f"RUN={index}",)) for index in range(2)]
    outcomes = race(
        "update_endpoint", runs, lambda aws, spec: endpoints.update(aws, spec, True, 60)
    )
    won = [o for o in outcomes if isinstance(o, dict)]
    lost = [o for o in outcomes if isinstance(o, DeployError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert won[0]["action"] == "updated"
    assert "is Updating: an update is in progress" in str(lost[0])
    assert "removed what this run created: endpoint_config:rr-" in str(lost[0])
    assert [call.get("refused") for call in update_calls] == [None, "Updating"]
    after = resources()
    assert after["configs"] == [won[0]["config"]] and after["models"] == [won[0]["model"]]
    assert after["endpoints"] == {NAME: (won[0]["config"], "InService")}


def test_two_deploys_at_once_exactly_one_creates(moto, tiny_archive):
    uploaded(tiny_archive)
    slow_changes(create=0.5)
    runs = [spec_for(tiny_archive, env=(f"RUN={index}",)) for index in range(2)]
    outcomes = race(
        "create_endpoint",
        runs,
        lambda aws, spec: endpoints.deploy(aws, spec, True, 60, AlarmOptions()),
    )
    won = [o for o in outcomes if isinstance(o, dict)]
    lost = [o for o in outcomes if isinstance(o, DeployError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert "was created by another run meanwhile" in str(lost[0])
    assert "an update is in progress" in str(lost[0])
    after = resources()
    assert after["configs"] == [won[0]["config"]] and after["models"] == [won[0]["model"]]
    assert len(after["alarms"]) == 4  # the winner's, untouched by the loser


def test_two_identical_deploys_share_what_they_made(moto, tiny_archive):
    uploaded(tiny_archive)
    slow_changes(create=0.5)
    runs = [spec_for(tiny_archive) for _ in range(2)]
    outcomes = race(
        "create_endpoint", runs, lambda aws, spec: endpoints.deploy(aws, spec, True, 60)
    )
    won = [o for o in outcomes if isinstance(o, dict)]
    assert len(won) == 1, outcomes
    after = resources()
    assert after["configs"] == [won[0]["config"]] and after["models"] == [won[0]["model"]]
    assert after["endpoints"] == {NAME: (won[0]["config"], "InService")}


# ------------------------------------------------------------ deletes that take time


def test_delete_wait_and_deploy_waits_out_a_deleting_endpoint(moto, tiny_archive):
    assert deploy(tiny_archive, "--instance-type", CPU).exit_code == 0
    slow_changes(delete=2.0)
    quick = cli("delete", NAME, "--yes")
    assert quick.exit_code == 0
    assert resources()["endpoints"] == {NAME: (resources()["endpoints"][NAME][0], "Deleting")}
    redeployed = deploy(tiny_archive, "--instance-type", CPU, "--json")
    assert redeployed.exit_code == 0, redeployed.output
    assert "endpoint rr is Deleting: waiting until it is gone" in redeployed.stderr
    assert json.loads(redeployed.stdout)["action"] == "created"
    waited = cli("delete", NAME, "--yes", "--wait")
    assert waited.exit_code == 0, waited.output
    assert "endpoint rr: Deleting" in waited.stderr and "endpoint rr: Deleted" in waited.stderr
    assert resources() == {"models": [], "configs": [], "endpoints": {}, "alarms": []}
    slow_changes(delete=30)
    assert deploy(tiny_archive, "--instance-type", CPU).exit_code == 0
    late = cli("delete", NAME, "--yes", "--wait", "--timeout", "0")
    assert late.exit_code == 1
    assert error_line(late).startswith("Error: endpoint rr is still Deleting after 0s")


def test_taking_back_a_run_never_removes_what_the_endpoint_serves_from(moto, tiny_archive):
    """Two runs with the same inputs share content-named resources: the one that lost a race
    may have created the very model and config the winner's endpoint now uses."""
    deployed = json.loads(deploy(tiny_archive, "--instance-type", CPU, "--json").stdout)
    before = resources()
    shared = Created()
    shared.add("model", deployed["model"])
    shared.add("endpoint_config", deployed["config"])
    assert undo(Aws(), shared, NAME) == []
    assert resources() == before
