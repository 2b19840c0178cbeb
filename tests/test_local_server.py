"""The local server's own behaviour: invocation timeout, access log hygiene, clean stop."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from tiers import (  # noqa: F401 - the *_fixture names register fixtures
    ContainerTier,
    RuntimeTier,
    direct_tier_fixture,
    endpoint_pool_fixture,
)

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open

LONG_PAIR = ["plan " * 8, "the economy " * 235]  # ~480 tokens with the tiny vocabulary


def seconds(call, repeat: int = 5) -> float:
    """Median wall time of ``call`` (calibration only: no test asserts a duration)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@pytest.mark.slow
def test_invocation_over_the_timeout_is_reported_and_the_server_recovers(
    direct_tier, tiny_model_dir: Path
) -> None:
    """A forward pass cannot be cancelled: the caller gets the runtime's timeout error while
    the worker finishes, /ping stays healthy, and the next request is answered correctly.

    The timeout is calibrated on this machine (5x a one-pair call) and the slow request sized
    to take ~8x the timeout, so the test holds on a fast laptop and a loaded 2-core CI runner.
    """
    small = [["what is the plan?", "the economy"]]
    model = direct_tier.model
    one_pair = seconds(lambda: model.score(small))
    timeout = max(0.2, 5 * one_pair)
    sixteen_long = seconds(lambda: model.score([LONG_PAIR] * 16), repeat=1)
    count = min(512, 16 * math.ceil(8 * timeout / sixteen_long))
    slow = json.dumps({"pairs": [LONG_PAIR] * count}).encode("utf-8")
    expected = model.score(small)

    with LocalEndpoint(model_dir=tiny_model_dir, invocation_timeout=timeout) as endpoint:
        runtime, container = (
            RuntimeTier(endpoint, "inprocess"),
            ContainerTier(endpoint, "inprocess"),
        )
        answer = runtime.invoke(slow)
        assert (answer.wire_status, answer.error_code, answer.status) == (424, "ModelError", 0)
        assert "timed out while waiting for a response from container" in answer.message()
        queued = container.invoke(slow)  # waits behind the first within its own deadline
        assert queued.status == 408 and "timed out" in queued.message()
        assert endpoint.ping()[0] == 200, "a busy worker is not an unhealthy server"
        for _ in range(600):  # the worker finishes the first request, then serves again
            answer = runtime.invoke(json.dumps({"pairs": small}).encode("utf-8"))
            if answer.status == 200:
                break
            assert answer.status == 0, answer.message()
            time.sleep(0.2)
        assert answer.scores() == pytest.approx(expected, rel=1e-5, abs=1e-9)
        log = endpoint.log_path.read_text(encoding="utf-8")
        assert "/invocations 408" in log and "/invocations 424" in log
        port = endpoint.port
        assert endpoint.stop() == 0, "SIGTERM shuts the server down cleanly"
    assert not port_open("127.0.0.1", port)


def test_access_log_has_no_document_text_or_credentials(endpoint_pool) -> None:
    endpoint = endpoint_pool.get("inprocess")
    secret_doc, secret_query = "zebracorn-7319 confidential memo", "quokka-4821 question"
    client = boto3.session.Session(
        aws_access_key_id="AKIAPROBEKEY0000",
        aws_secret_access_key="probe-secret-key",
        region_name="us-east-1",
    ).client("sagemaker-runtime", endpoint_url=endpoint.url)
    body = json.dumps({"pairs": [[secret_query, secret_doc], [secret_query, "other"]]})
    reply = client.invoke_endpoint(
        EndpointName=endpoint.endpoint_name,
        Body=body.encode("utf-8"),
        ContentType="application/json",
        CustomAttributes="user-secret-attr",
    )
    assert len(json.loads(reply["Body"].read())["scores"]) == 2
    bad = endpoint.request("POST", "/invocations", json.dumps({"pairs": [[secret_query]]}).encode())
    assert bad[0] == 400
    log = endpoint.log_path.read_text(encoding="utf-8")
    assert "POST /endpoints/local-reranker/invocations 200 pairs=2" in log
    assert "POST /invocations 400" in log
    for secret in ("zebracorn", "quokka", "user-secret-attr", "AKIAPROBEKEY", "probe-secret"):
        assert secret not in log


PARENT = """
import sys, time
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
endpoint = LocalEndpoint(model_data=sys.argv[1])
endpoint.start()
print(endpoint.port, endpoint.log_path.parent, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_server_of_a_killed_parent_stops_and_cleans_up(tiny_archive: Path) -> None:
    """SIGKILL leaves no ``finally`` to run: the server notices its parent is gone, stops,
    and removes its private run dir itself."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tiny_archive)], stdout=subprocess.PIPE, text=True
    )
    try:
        port, run_dir = parent.stdout.readline().split()
        assert port_open("127.0.0.1", int(port)) and Path(run_dir).is_dir()
    finally:
        parent.kill()
        parent.wait(timeout=30)
    for _ in range(300):
        if not port_open("127.0.0.1", int(port)) and not Path(run_dir).exists():
            break
        time.sleep(0.1)
    assert not port_open("127.0.0.1", int(port)), "orphaned server still listening"
    assert not Path(run_dir).exists(), "orphaned run dir left behind"
