"""The client rides through an inference component's scale from zero, end to end and offline:
a local endpoint whose idle component loses its worker answers the runtime's no-capacity
ValidationError while a new one starts, and the client waits for it, bounded."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
from sagemaker_reranker.client.errors import RerankerEndpointError
from sagemaker_reranker.deploy.local.components import NO_CAPACITY
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open

IDLE = 6.0  # more than the client's longest pause between tries (cold_start.MAX_POLL)
PAIRS = [
    ("What is the plan for the economy?", "We will lower costs for families."),
    ("What is the plan for the economy?", "It rained all week in the north."),
    ("capital of France", "Paris is the capital and largest city of France."),
]


@pytest.fixture(scope="module")
def scaling(tiny_archive: Path):
    with LocalEndpoint(
        components={"bert": tiny_archive}, endpoint_name="cold", scale_to_zero_after=IDLE
    ) as endpoint:
        yield endpoint
    assert not port_open("127.0.0.1", endpoint.port)


def wait_until_cold(endpoint: LocalEndpoint, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while endpoint.ping()[1].get("components", {}).get("bert") != "cold":
        assert time.monotonic() < deadline, endpoint.log_tail()
        time.sleep(0.5)


def model(endpoint: LocalEndpoint, **fields) -> SagemakerEndpointCrossEncoder:
    return SagemakerEndpointCrossEncoder(
        endpoint_name="cold",
        client=endpoint.runtime_client(),
        inference_component_name="bert",
        **fields,
    )


def direct_scores(model_dir: Path) -> list[float]:
    from handler import inference

    loaded = inference.model_fn(str(model_dir))
    body = json.dumps({"pairs": [list(pair) for pair in PAIRS]}).encode()
    return json.loads(inference.transform_fn(loaded, body, "application/json", None))["scores"]


def test_client_rides_through_a_scale_from_zero(scaling, tiny_model_dir, caplog):
    wait_until_cold(scaling)
    assert "scaling to zero" in scaling.log_tail(1000)
    # Three requests at once, all refused while the worker starts: one log line for them.
    reranker = model(scaling, max_pairs_per_request=1, max_concurrency=3)
    with caplog.at_level(logging.INFO, logger="sagemaker_reranker.client.cross_encoder"):
        scores = reranker.score(PAIRS)
    reranker.close()
    assert scores == pytest.approx(direct_scores(tiny_model_dir), abs=1e-6)
    waits = [r.getMessage() for r in caplog.records if "scaling from zero" in r.getMessage()]
    assert len(waits) == 1 and "inference component 'bert'" in waits[0], waits
    assert "back from zero" in scaling.log_tail(1000)


def test_a_zero_wait_fails_at_once_saying_why(scaling):
    wait_until_cold(scaling)
    with pytest.raises(RerankerEndpointError) as refused:
        model(scaling, scale_from_zero_timeout=0).score(PAIRS[:1])
    error = refused.value
    assert error.error_code == "ValidationError" and error.status == 400
    assert "inference component 'bert' is scaling from zero" in str(error)
    assert "after waiting 0 s" in str(error) and NO_CAPACITY in str(error)
