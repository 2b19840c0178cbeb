"""Local mode when the handler's process dies mid-request (``serve``'s default backend).

A real local endpoint serves ``crash_handler``'s small handler, which dies on marker
documents: the request in flight gets a ModelError (500) that says how the worker died —
never the invocation timeout — and the next request is answered by a new worker; a worker
that cannot start again leaves ``/ping`` unhealthy with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from crash_handler import body, wait_until_slow_started, write_model

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint

pytestmark = pytest.mark.slow

TIMEOUT = 45.0  # the invocation timeout; SLOW sleeps longer, so a hang would show as it


@pytest.fixture
def served(tmp_path: Path):
    model = write_model(tmp_path / "model")
    with LocalEndpoint(model_dir=model, invocation_timeout=TIMEOUT) as endpoint:
        yield endpoint, model


def invoke(endpoint: LocalEndpoint, *docs: str) -> dict:
    """Through boto3's runtime client, as a caller does; the parsed answer or the error."""
    runtime = endpoint.runtime_client()
    try:
        answer = runtime.invoke_endpoint(
            EndpointName=endpoint.endpoint_name, Body=body(*docs), ContentType="application/json"
        )
    except ClientError as error:
        return {"error": error.response["Error"]["Code"], **error.response}
    return json.loads(answer["Body"].read())


def worker_pid(endpoint: LocalEndpoint) -> int:
    return invoke(endpoint, "probe")["pid"]


@pytest.mark.parametrize(
    ("marker", "how"),
    [
        ("EXIT", "exited with code 3"),
        ("KILL", "was killed by SIGKILL (as the kernel's out-of-memory killer does)"),
        ("MEMORY", "was killed by SIGKILL (as the kernel's out-of-memory killer does)"),
    ],
)
def test_worker_dying_mid_request_is_a_model_error_and_the_next_is_served(served, marker, how):
    endpoint, _ = served
    first = worker_pid(endpoint)
    failed = invoke(endpoint, "a", marker)
    assert failed["error"] == "ModelError"
    assert failed["OriginalStatusCode"] == 500
    assert (
        f"the handler's worker process {how} while answering this request"
        in (failed["OriginalMessage"])
    )
    answer = invoke(endpoint, "four", "sixsix")
    assert answer["scores"] == [4.0, 6.0] and answer["pid"] != first
    assert endpoint.health()[0] is True


def test_worker_killed_from_outside_while_answering(served):
    endpoint, model = served
    pid = worker_pid(endpoint)
    result: dict = {}
    slow = threading.Thread(target=lambda: result.update(invoke(endpoint, "SLOW")))
    slow.start()
    wait_until_slow_started(model)
    os.kill(pid, signal.SIGKILL)
    slow.join(timeout=TIMEOUT + 30)
    assert result["error"] == "ModelError" and result["OriginalStatusCode"] == 500
    assert "was killed by SIGKILL" in result["OriginalMessage"]
    assert "timed out" not in result["OriginalMessage"]
    assert invoke(endpoint, "abc")["scores"] == [3.0]


def test_worker_dying_while_idle_is_replaced(served):
    endpoint, _ = served
    pid = worker_pid(endpoint)
    os.kill(pid, signal.SIGKILL)
    answer = invoke(endpoint, "abcde")
    assert answer["scores"] == [5.0] and answer["pid"] != pid


def test_a_worker_that_cannot_start_again_leaves_ping_unhealthy_with_the_reason(served):
    endpoint, model = served
    (model / "die-on-load").write_text("", encoding="utf-8")
    failed = invoke(endpoint, "EXIT")
    assert failed["error"] == "ModelError"
    reason = ""
    for _ in range(200):  # the new worker dies loading: bounded wait for /ping to say so
        healthy, reason = endpoint.health()
        if not healthy:
            break
        time.sleep(0.1)
    assert reason == (
        "the handler's worker process exited with code 3; a new one failed: the handler's "
        "worker process exited with code 4 while loading the model"
    )
    refused = invoke(endpoint, "abc")
    assert refused["error"] == "ValidationError"
    assert (
        "is not in service: the handler's worker process exited with code 3"
        in (refused["Error"]["Message"])
    )
