"""The model-server tier (``serve --server mms``) when its worker processes die.

multi-model-server recovers by itself when only the process answering dies (``os._exit``
in the handler): the request gets a 500, the next one a reloaded model. When a worker's
listener dies too (SIGKILL of the worker processes), MMS retries the connection forever and
every later request would wait out the invocation timeout while ``/ping`` said healthy; the
backend's watchdog restarts the model server instead, reporting the reason on ``/ping``
meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from crash_handler import body, wait_until_slow_started, write_model

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.mms import backend as mms
from sagemaker_reranker.deploy.local.mms.watchdog import listeners

pytestmark = [pytest.mark.slow, pytest.mark.mms]

TIMEOUT = 45.0  # the invocation timeout; the SLOW marker sleeps longer


@pytest.fixture
def served(tmp_path: Path):
    reason = mms.unavailable_reason()
    if reason:
        pytest.skip(reason)
    model = write_model(tmp_path / "model")
    with LocalEndpoint(model_dir=model, server="mms", invocation_timeout=TIMEOUT) as endpoint:
        yield endpoint, model


def post(endpoint: LocalEndpoint, *docs: str) -> tuple[int, dict]:
    status, data, _ = endpoint.request("POST", "/invocations", body(*docs))
    return status, json.loads(data)


def java_pid(model: Path) -> int:
    """This endpoint's MMS Java process (``multi-model-server --start`` daemonises it; other
    model servers may run on the machine): the one whose model store holds ``model``."""
    for entry in Path("/proc").iterdir():
        try:
            if (
                not entry.name.isdigit()
                or b"com.amazonaws.ml.mms" not in (entry / "cmdline").read_bytes()
            ):
                continue
            store = Path(os.readlink(entry / "cwd")) / "opt_ml" / "model"
            if store.resolve() == model.resolve():
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError("no multi-model-server process serving this model")


def worker_processes(java: int) -> list[int]:
    """Each listener and the process it forked to answer."""
    found = []
    for listener in listeners(java):
        found.append(listener)
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text(encoding="utf-8")
            except OSError:
                continue
            if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == listener:
                found.append(int(entry.name))
    return found


def test_handler_exit_is_a_500_and_mms_reloads_the_model(served):
    served, _ = served
    status, answer = post(served, "EXIT")
    assert status == 500 and answer["message"] == "Worker died."
    status, answer = post(served, "abc")
    assert (status, answer["scores"]) == (200, [3.0])


def test_killed_worker_processes_restart_the_model_server_instead_of_hanging(served):
    served, model = served
    java = java_pid(model)
    before = post(served, "probe")[1]["pid"]
    result: dict = {}

    def slow() -> None:
        result["answer"] = post(served, "SLOW")

    in_flight = threading.Thread(target=slow)
    in_flight.start()
    wait_until_slow_started(model)
    for pid in worker_processes(java):
        os.kill(pid, signal.SIGKILL)
    in_flight.join(timeout=TIMEOUT + 30)
    status, answer = result["answer"]
    assert status == 500 and answer["message"] == "Worker died."
    # The next requests are answered at once (refused while restarting), never timed out.
    seen_reasons = set()
    for _ in range(600):  # bounded: the restart loads the model again
        status, answer = post(served, "abcd")
        assert status != 408, answer  # the invocation timeout: the hang this prevents
        if status == 200:
            break
        healthy, reason = served.health()
        if not healthy:
            seen_reasons.add(reason)
        time.sleep(0.2)
    assert (status, answer["scores"]) == (200, [4.0])
    assert answer["pid"] != before
    assert any("worker process(es) died" in reason for reason in seen_reasons), seen_reasons
    assert served.health()[0] is True
