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
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.inference.reranker_contract import NO_CAPACITY

IDLE = 8.0  # well over the client's longest pause between tries (cold_start.MAX_POLL)
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


def test_no_capacity_waits_apart_from_throttling_retries(responder, tiny_model_dir, caplog):
    """The stand-in runtime refuses twice for no capacity: with one throttling attempt allowed,
    the request still waits (1 s, then 2 s) and succeeds, naming the component once."""
    from runtime_responder import Fault

    responder.faults.extend([Fault(400, "ValidationError", message=NO_CAPACITY)] * 2)
    reranker = SagemakerEndpointCrossEncoder(
        endpoint_name="reranker",
        client=responder.runtime_client(1),
        inference_component_name="bge",
        max_attempts=1,
        max_concurrency=1,
    )
    with caplog.at_level(logging.INFO, logger="sagemaker_reranker"):
        scores = reranker.score(PAIRS)
    assert scores == pytest.approx(direct_scores(tiny_model_dir), abs=1e-6)
    assert len(responder.requests) == 3
    waits = [r.getMessage() for r in caplog.records if "scaling from zero" in r.getMessage()]
    assert waits == [
        "inference component 'bge' is scaling from zero (no capacity yet); waiting up to 300 s "
        "for a copy"
    ]


def test_other_validation_errors_are_not_waited_for(responder):
    from runtime_responder import Fault

    responder.faults.append(Fault(400, "ValidationError", message="Endpoint x not found."))
    reranker = SagemakerEndpointCrossEncoder(
        endpoint_name="reranker", client=responder.runtime_client(1), max_concurrency=1
    )
    with pytest.raises(RerankerEndpointError, match="not found"):
        reranker.score(PAIRS[:1])
    assert len(responder.requests) == 1
