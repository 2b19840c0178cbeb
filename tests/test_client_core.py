"""The client against a real boto3 client, a loopback runtime and the REAL handler and model."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import pytest
from runtime_responder import Fault, RuntimeResponder, handler_body

from sagemaker_reranker.client import (
    RerankerEndpointError,
    SagemakerEndpointCrossEncoder,
    TextPairsHandler,
)
from sagemaker_reranker.client.scores import ranked, score_problem, sigmoid
from sagemaker_reranker.deploy.local.net import free_port

QUERY = "what is the plan for the economy"
DOCS = [f"document {i}: " + "jobs and energy costs " * (i % 7) for i in range(40)]
PAIRS = [(QUERY, doc) for doc in DOCS]


@pytest.fixture(scope="module")
def reference(reranker) -> list[float]:
    """The handler's scores for PAIRS, computed in-process in one call."""
    body = json.dumps({"pairs": PAIRS})
    return json.loads(handler_body(reranker, body, "application/json", "application/json"))[
        "scores"
    ]


def make_client(responder: RuntimeResponder, **options) -> SagemakerEndpointCrossEncoder:
    concurrency = options.get("max_concurrency", 4)
    options.setdefault("backoff_base", 0.001)
    return SagemakerEndpointCrossEncoder(
        endpoint_name="reranker", client=responder.runtime_client(concurrency), **options
    )


def test_scores_match_the_handler_in_order_and_empty_input_sends_nothing(responder, reference):
    model = make_client(responder)
    assert model.score([]) == []
    assert responder.requests == []
    assert model.score(PAIRS) == reference
    assert len(responder.requests) == 1
    assert responder.requests[0].path == "/endpoints/reranker/invocations"


def test_split_requests_are_reassembled_in_order_within_limits(responder, reference):
    model = make_client(responder, max_pairs_per_request=3, max_request_bytes=400)
    scores = model.score(PAIRS)
    assert scores == pytest.approx(reference, abs=1e-5)
    assert len(responder.requests) >= len(PAIRS) // 3
    sent = [tuple(pair) for r in responder.requests for pair in json.loads(r.body)["pairs"]]
    assert sorted(sent) == sorted(PAIRS)  # every pair exactly once
    assert all(len(r.body) <= 400 for r in responder.requests)
    assert all(len(json.loads(r.body)["pairs"]) <= 3 for r in responder.requests)


@pytest.mark.parametrize("use_async", [False, True])
def test_max_concurrency_requests_run_at_once_and_no_more(responder, reference, use_async):
    concurrency = 3
    # The gate lets requests through only in groups of 3: a client sending fewer at once
    # would break the barrier (timeout), and the counter shows it never sends more.
    responder.gate = threading.Barrier(concurrency, timeout=20)
    model = make_client(responder, max_pairs_per_request=5, max_concurrency=concurrency)
    pairs = PAIRS[:30]  # 6 requests: two full groups
    scores = asyncio.run(model.ascore(pairs)) if use_async else model.score(pairs)
    assert scores == pytest.approx(reference[:30], abs=1e-5)
    assert len(responder.requests) == 6
    assert responder.max_in_flight == concurrency


def test_sync_and_async_give_identical_results(responder):
    model = make_client(responder, max_pairs_per_request=7)
    assert asyncio.run(model.ascore(PAIRS)) == model.score(PAIRS)
    assert asyncio.run(model.ascore([])) == []


def test_async_does_not_block_the_event_loop(responder):
    release = threading.Event()

    def slow_container(body, content_type, accept):
        assert release.wait(20)
        return 200, json.dumps({"scores": [0.5] * len(json.loads(body)["pairs"])}).encode()

    responder.transform = slow_container
    model = make_client(responder)

    async def main() -> list[float]:
        task = asyncio.ensure_future(model.ascore(PAIRS[:2]))
        await asyncio.sleep(0)
        # The loop keeps running other coroutines while the call is in flight.
        while not responder.requests:
            await asyncio.sleep(0.01)
        assert not task.done()
        release.set()
        return await task

    assert asyncio.run(main()) == [0.5, 0.5]


def test_rerank_is_best_first_with_stable_ties_and_top_n(responder):
    model = make_client(responder)
    docs = ["jobs", "energy", "jobs", "the plan", "jobs"]
    ranking = model.rerank(QUERY, docs)
    assert sorted(index for index, _ in ranking) == list(range(5))
    values = [score for _, score in ranking]
    assert values == sorted(values, reverse=True)
    assert model.rerank(QUERY, docs, top_n=2) == ranking[:2]
    assert model.rerank(QUERY, docs, top_n=0) == []
    assert asyncio.run(model.arerank(QUERY, docs, top_n=3)) == ranking[:3]
    with pytest.raises(ValueError, match="top_n"):
        model.rerank(QUERY, docs, top_n=-1)


def test_equal_scores_keep_input_order():
    scores = [0.5, 2.0, 0.5, -1.0, 2.0, 0.5]
    assert ranked(scores, None) == [(1, 2.0), (4, 2.0), (0, 0.5), (2, 0.5), (5, 0.5), (3, -1.0)]
    assert ranked(scores, 3) == [(1, 2.0), (4, 2.0), (0, 0.5)]


def test_sigmoid_normalisation(responder, reference):
    model = make_client(responder, normalize="sigmoid")
    scores = model.score(PAIRS)
    assert scores == pytest.approx([sigmoid(x) for x in reference])
    assert all(0 < s < 1 for s in scores)
    assert sigmoid(-1000.0) == 0.0 and sigmoid(1000.0) == 1.0


def test_text_pairs_handler_speaks_the_stock_langchain_format(responder, reference):
    model = make_client(responder, content_handler=TextPairsHandler())
    assert model.score(PAIRS) == reference
    assert set(json.loads(responder.requests[0].body)) == {"text_pairs"}


# ---------------------------------------------------------------------------- retries, errors


@pytest.mark.parametrize(
    "fault",
    [
        Fault(400, "ThrottlingException"),
        Fault(429, "ThrottlingException"),
        Fault(503, "ServiceUnavailable"),
        Fault(429, "ModelNotReadyException"),
        Fault(424, "ModelError", original_status=429),
        Fault(424, "ModelError", original_status=503),
    ],
    ids=lambda f: f"{f.code}-{f.original_status or f.status}",
)
def test_throttling_is_retried_then_succeeds(responder, reference, fault, caplog):
    responder.faults.extend([fault, fault])
    model = make_client(responder)
    with caplog.at_level(logging.INFO, logger="sagemaker_reranker"):
        assert model.score(PAIRS) == reference
    assert len(responder.requests) == 3
    assert sum("retry" in record.getMessage() for record in caplog.records) == 2
    assert not any(QUERY in record.getMessage() for record in caplog.records)


def test_throttling_that_never_ends_raises_after_max_attempts(responder):
    responder.faults.extend([Fault(429, "ThrottlingException", message="Rate exceeded")] * 10)
    # With the production settings: botocore's adaptive limiter paces, the client retries.
    client = responder.runtime_client(adaptive=True)
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="reranker", client=client, max_attempts=3, backoff_base=0.001
    )
    with pytest.raises(RerankerEndpointError) as raised:
        model.score(PAIRS)
    assert len(responder.requests) == 3
    error = raised.value
    assert error.status == 429 and error.error_code == "ThrottlingException"
    assert error.message == "Rate exceeded" and error.request_id
    assert error.retryable


@pytest.mark.parametrize("hf_container", [False, True], ids=["plain-toolkit", "hf-container"])
def test_handler_4xx_is_not_retried_and_carries_the_real_status(reranker, hf_container):
    with RuntimeResponder(reranker, hf_container=hf_container) as responder:
        model = make_client(responder, max_pairs_per_request=2000)
        with pytest.raises(RerankerEndpointError) as raised:
            model.score([(QUERY, "x")] * (reranker.settings.max_pairs + 1))
        assert len(responder.requests) == 1
    error = raised.value
    assert error.status == 413
    assert "RERANKER_MAX_PAIRS" in error.message and error.message.startswith("request has")
    assert error.error_code == "ModelError" and error.http_status == 424
    assert error.original_status == (400 if hf_container else 413)
    assert "413" in str(error) and error.request_id in str(error)
    assert not error.retryable


def test_model_5xx_is_not_retried(responder):
    responder.faults.append(Fault(424, "ModelError", original_status=500, message="CUDA OOM"))
    with pytest.raises(RerankerEndpointError, match="CUDA OOM") as raised:
        make_client(responder).score(PAIRS)
    assert raised.value.status == 500 and len(responder.requests) == 1


@pytest.mark.parametrize("use_async", [False, True])
def test_a_failing_sub_request_fails_the_whole_call(responder, use_async):
    responder.faults.extend([None, None, Fault(424, "ModelError", original_status=400)])
    model = make_client(responder, max_pairs_per_request=4, max_concurrency=2)
    with pytest.raises(RerankerEndpointError, match="scripted fault"):
        asyncio.run(model.ascore(PAIRS)) if use_async else model.score(PAIRS)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"scores": [1.0]}, "expected 3 scores, got 1"),
        ({"scores": [1.0, 2.0, 3.0, 4.0]}, "expected 3 scores, got 4"),
        ({"scores": [1.0, None, 2.0]}, "score 1 is not a number"),
        ({"scores": [1.0, "2", 2.0]}, "score 1 is not a number"),
        ({"scores": [1.0, float("nan"), 2.0]}, "unreadable response"),
        ({"score": [1.0, 2.0, 3.0]}, "expected {'scores': [...]}"),
        ([1.0, 2.0, 3.0], "expected {'scores': [...]}"),
    ],
)
def test_a_wrong_response_is_an_error_never_a_silent_drop(responder, answer, problem):
    responder.transform = lambda body, content_type, accept: (200, json.dumps(answer).encode())
    with pytest.raises(RerankerEndpointError) as raised:
        make_client(responder).score(PAIRS[:3])
    assert problem in raised.value.message
    assert raised.value.request_id


def test_score_problem_catches_non_finite_scores():
    assert score_problem([1.0, float("inf")], 2) == "score 1 is not finite: inf"
    assert score_problem([1.0, float("nan")], 2) == "score 1 is not finite: nan"
    assert score_problem([True], 1) == "score 0 is not a number: True"
    assert score_problem([1, 2.5], 2) is None


def test_a_read_timeout_is_reported_and_not_retried(responder, aws_env):
    """With the client's own botocore settings (only the timeout shortened): botocore would
    retry a read timeout by default, running a slow inference twice."""
    from botocore.config import Config

    release = threading.Event()

    def stuck(body, content_type, accept):
        release.wait(20)
        return 200, b'{"scores": [0.0]}'

    responder.transform = stuck
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="reranker",
        endpoint_url=responder.url,
        config=Config(read_timeout=1),
        max_attempts=5,
    )
    assert model.client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 1}
    try:
        with pytest.raises(RerankerEndpointError, match="read timeout") as raised:
            model.score(PAIRS[:1])
    finally:
        release.set()
    assert raised.value.error_code == "ReadTimeout" and not raised.value.retryable
    assert len(responder.requests) == 1


def test_an_unreachable_local_endpoint_fails_at_once(caplog):
    """A loopback URL is a local server: if it refuses, it is not running, and retrying only
    delays saying so (7.6 s with the default attempts)."""
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="reranker", endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    with caplog.at_level(logging.INFO, logger="sagemaker_reranker"):
        with pytest.raises(RerankerEndpointError) as raised:
            model.score(PAIRS[:1])
    assert raised.value.error_code == "ConnectionError" and not raised.value.retryable
    assert "is the local endpoint running?" in str(raised.value)
    assert not [record for record in caplog.records if "retry" in record.getMessage()]
    assert model.client.meta.config.connect_timeout <= 2


def test_a_connection_refused_by_a_remote_host_is_retried_then_reported(aws_env, caplog):
    # 0.0.0.0 reaches this machine on Linux, yet is not a loopback address: the stand-in for
    # a remote host that refuses (plain http to it needs the explicit opt-in).
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="reranker",
        endpoint_url=f"http://0.0.0.0:{free_port()}",
        allow_insecure_http=True,
        max_attempts=3,
        backoff_base=0.001,
    )
    with caplog.at_level(logging.INFO, logger="sagemaker_reranker"):
        with pytest.raises(RerankerEndpointError) as raised:
            model.score(PAIRS[:1])
    assert raised.value.error_code == "ConnectionError" and raised.value.retryable
    assert len([record for record in caplog.records if "retry" in record.getMessage()]) == 2


# ---------------------------------------------------------------------------- construction


def test_an_injected_client_is_kept(responder, caplog):
    client = responder.runtime_client()
    model = SagemakerEndpointCrossEncoder(endpoint_name="reranker", client=client)
    assert model.client is client
    model.score(PAIRS[:2])
    assert model.client is client


def test_region_falls_back_to_the_environment_and_a_missing_one_is_a_clear_error(
    aws_env, monkeypatch
):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    model = SagemakerEndpointCrossEncoder(endpoint_name="reranker")
    assert model.region_name == "eu-west-1"
    config = model.client.meta.config
    assert config.read_timeout > 60 and config.retries["total_max_attempts"] == 1
    assert config.retries["mode"] == "adaptive"
    assert config.max_pool_connections >= model.max_concurrency
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ValueError, match="no AWS region"):
        SagemakerEndpointCrossEncoder(endpoint_name="reranker")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"max_request_bytes": 7 * 1024 * 1024}, "max_request_bytes"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"normalize": "softmax"}, "normalize"),
        ({"endpoint_name": ""}, "endpoint_name"),
        ({"unknown_option": 1}, "unknown_option"),
    ],
)
def test_bad_settings_are_refused(aws_env, options, problem):
    with pytest.raises(ValueError, match=problem):
        SagemakerEndpointCrossEncoder(**{"endpoint_name": "e", **options})


def test_a_small_connection_pool_is_refused(aws_env):
    from botocore.config import Config

    with pytest.raises(ValueError, match="max_pool_connections"):
        SagemakerEndpointCrossEncoder(
            endpoint_name="e", max_concurrency=20, config=Config(max_pool_connections=5)
        )


@pytest.mark.parametrize(
    ("pairs", "problem"),
    [
        ("query", "got str"),
        ([("q", "d"), ("q",)], r"pair 1 must be \(query: str, document: str\), got \(str\)"),
        ([("q", 3)], r"got \(str, int\)"),
        ([None], "pair 0 .* got NoneType"),
        (5, "got int"),
    ],
)
def test_bad_pairs_are_refused_before_any_call(responder, pairs, problem):
    with pytest.raises(TypeError, match=problem):
        make_client(responder).score(pairs)
    assert responder.requests == []


def test_one_pair_over_the_byte_limit_is_a_clear_error(responder):
    model = make_client(responder, max_request_bytes=1024)
    with pytest.raises(ValueError, match="pair 1 alone serialises to"):
        model.score([(QUERY, "short"), (QUERY, "x" * 2000)])
    assert responder.requests == []
