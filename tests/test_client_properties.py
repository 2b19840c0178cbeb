"""Property tests (hypothesis) of request splitting and concurrency: over random sizes, byte
limits, token limits and concurrency, results are never reordered, dropped or duplicated, and
one failing sub-request fails the whole call."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from runtime_responder import Fault, RuntimeResponder

from sagemaker_reranker.client import (
    PairsHandler,
    RerankerEndpointError,
    SagemakerEndpointCrossEncoder,
    TEIHandler,
)
from sagemaker_reranker.client.splitting import (
    CHARS_PER_TOKEN,
    PAIR_SYNTAX_BYTES,
    TOKENS_PER_PAIR_CAP,
    Limits,
    plan_requests,
)

# Escapes, multi-byte characters and emoji make the serialised size differ from the length.
ALPHABET = st.sampled_from([*"abc xyz", "é", "日", '"', "\\", "\n", "\t", "😀"])
QUERIES = st.sampled_from(["what is the plan", "日本の経済", 'a "quoted" query'])
PAIRS = st.lists(st.tuples(QUERIES, st.text(ALPHABET, max_size=40)), max_size=60)


def split_inputs(most_pairs: int, least_bytes: int, most_bytes: int) -> dict:
    """Strategies for random pairs and the per-request limits they are split under."""
    return {
        "pairs": PAIRS,
        "max_pairs": st.integers(1, most_pairs),
        "max_bytes": st.integers(least_bytes, most_bytes),
    }


def estimated_tokens(pair: tuple[str, str]) -> int:
    size = len(pair[0]) + len(pair[1]) + PAIR_SYNTAX_BYTES
    return min(TOKENS_PER_PAIR_CAP, size // CHARS_PER_TOKEN + 3)


def single_pair_too_big(pairs, limit: int, serialize) -> bool:
    return any(len(serialize([pair])) > limit for pair in pairs)


@settings(max_examples=300, deadline=None)
@given(**split_inputs(20, 64, 3000), max_tokens=st.integers(1, 400), tei=st.booleans())
def test_plans_partition_the_input_within_every_limit(pairs, max_pairs, max_bytes, max_tokens, tei):
    handler = TEIHandler() if tei else PairsHandler()
    limits = Limits(max_pairs, max_bytes, max_tokens)
    if single_pair_too_big(pairs, max_bytes, handler.transform_input):
        with pytest.raises(ValueError, match="alone serialises to"):
            plan_requests(pairs, limits, handler.transform_input, tei)
        return
    requests = plan_requests(pairs, limits, handler.transform_input, tei)
    flat = [index for request in requests for index in request.indices]
    if tei:
        assert sorted(flat) == list(range(len(pairs)))  # each exactly once
    else:
        assert flat == list(range(len(pairs)))  # each exactly once, in order
    for request in requests:
        indices = list(request.indices)
        assert indices and indices == sorted(indices)
        assert len(indices) <= max_pairs
        assert len(request.body) <= max_bytes
        if len(indices) > 1:  # a single pair over the token estimate goes alone
            assert sum(estimated_tokens(pairs[i]) for i in indices) <= max_tokens
        sent = json.loads(request.body)
        if tei:
            assert {pairs[i][0] for i in indices} == {sent["query"]}
            assert sent["texts"] == [pairs[i][1] for i in indices]
        else:
            assert [tuple(pair) for pair in sent["pairs"]] == [pairs[i] for i in indices]


# ---------------------------------------------------------------------------- through a server


@pytest.fixture(scope="module")
def responder(reranker):
    with RuntimeResponder(reranker) as server:
        yield server


# A failure in the middle of a split call, sync and async, in every run.
MID_CALL_FAILURE = {
    "pairs": [("q", f"d{i}") for i in range(10)],
    "max_pairs": 2,
    "max_bytes": 2000,
    "concurrency": 2,
    "failing": 2,
}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    **split_inputs(12, 200, 2000),
    concurrency=st.integers(1, 6),
    use_async=st.booleans(),
    failing=st.none() | st.integers(0, 10),
)
@example(**MID_CALL_FAILURE, use_async=False)
@example(**MID_CALL_FAILURE, use_async=True)
def test_calls_return_every_score_in_place_or_fail_whole(
    responder, reranker, pairs, max_pairs, max_bytes, concurrency, use_async, failing
):
    responder.requests.clear()
    responder.faults.clear()
    responder.max_in_flight = 0
    if failing is not None:
        responder.faults.extend([None] * failing + [Fault(424, "ModelError", 400, "boom")])
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="reranker",
        client=responder.runtime_client(concurrency),
        max_pairs_per_request=max_pairs,
        max_request_bytes=max_bytes,
        max_concurrency=concurrency,
    )
    call = (lambda: asyncio.run(model.ascore(pairs))) if use_async else (lambda: model.score(pairs))
    try:
        if single_pair_too_big(pairs, max_bytes, PairsHandler().transform_input):
            with pytest.raises(ValueError, match="alone serialises to"):
                call()
            assert responder.requests == []
            return
        planned = len(
            plan_requests(
                pairs, Limits(max_pairs, max_bytes, 65_536), PairsHandler().transform_input
            )
        )
        if failing is not None and failing < planned:
            with pytest.raises(RerankerEndpointError, match="boom"):
                call()
            return
        scores = call()
    finally:
        model.close()  # wait for requests still running after a failure
    assert scores == pytest.approx(reranker.score(pairs), abs=1e-5)
    sent = [tuple(pair) for r in responder.requests for pair in json.loads(r.body)["pairs"]]
    assert sorted(sent) == sorted(pairs)  # on the wire: nothing dropped or duplicated
    assert all(len(r.body) <= max_bytes for r in responder.requests)
    assert responder.max_in_flight <= concurrency
