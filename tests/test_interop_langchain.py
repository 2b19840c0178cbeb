"""Interop on the local endpoint (real server process, real handler): the stock LangChain
client, sync vs async, and the TEI handler against a container answering as TEI documents."""

from __future__ import annotations

import asyncio
import json
import math
import warnings

import pytest
from handler import inference
from runtime_responder import RuntimeResponder, handler_body

from sagemaker_reranker.client import (
    RerankerEndpointError,
    SagemakerEndpointCrossEncoder,
    TEIHandler,
)
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint

pytestmark = pytest.mark.slow

QUERIES = ["what is the plan for the economy", "how will energy costs come down"]
PAIRS = [
    (QUERIES[i % 2], f"chunk {i}: " + "jobs infrastructure prices " * (i % 5)) for i in range(70)
]
TEI_BATCH = 32  # TEI's --max-client-batch-size default


def ours(endpoint: LocalEndpoint, **options) -> SagemakerEndpointCrossEncoder:
    return SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name, client=endpoint.runtime_client(), **options
    )


def test_the_stock_langchain_client_gets_the_same_scores(endpoint, aws_env, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.cross_encoders import (
            SagemakerEndpointCrossEncoder as StockCrossEncoder,
        )
    # The stock client builds its own boto3 client; botocore's per-service endpoint variable
    # points it at the local endpoint without touching its code.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint.url)
    stock = StockCrossEncoder(endpoint_name=endpoint.endpoint_name, region_name="us-east-1")
    pairs = PAIRS[:20]
    stock_scores = stock.score(pairs)  # sends {"text_pairs": ...}
    assert len(stock_scores) == 20
    assert ours(endpoint).score(pairs) == stock_scores


def test_sync_and_async_are_identical_through_the_local_endpoint(endpoint):
    model = ours(endpoint, max_pairs_per_request=9, max_concurrency=3)
    sync = model.score(PAIRS)
    assert len(sync) == len(PAIRS)
    assert asyncio.run(model.ascore(PAIRS)) == sync
    single = ours(endpoint, max_pairs_per_request=1000).score(PAIRS)
    assert sync == pytest.approx(single, abs=1e-5)


def test_a_handler_error_through_the_runtime_keeps_its_status(endpoint):
    model = ours(endpoint, max_pairs_per_request=5000)
    with pytest.raises(RerankerEndpointError) as raised:
        model.score([("q", "d")] * 1500)  # over RERANKER_MAX_PAIRS (1024)
    assert raised.value.status == 413 and "RERANKER_MAX_PAIRS" in raised.value.message


# ---------------------------------------------------------------------------- TEI


def tei_container(reranker: inference.Reranker, calls: list[dict]):
    """A container answering ``/invocations`` as TEI's ``/rerank`` is documented to.

    Request ``{query, texts, raw_scores=false, truncate=false, return_text=false}``; answer
    ``[{index, score}]`` sorted by score, best first; a sigmoid unless ``raw_scores``; 413
    over ``--max-client-batch-size``; 422 for empty ``texts``. Scores come from the real
    handler, so the numbers are the model's.
    """

    def answer(body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
        request = json.loads(body)
        calls.append(request)
        texts = request["texts"]
        if not texts:
            return 422, _tei_error("`texts` cannot be empty", "validation")
        if len(texts) > TEI_BATCH:
            message = f"batch size {len(texts)} > maximum allowed batch size {TEI_BATCH}"
            return 413, _tei_error(message, "validation")
        payload = json.dumps({"query": request["query"], "texts": texts})
        scores = json.loads(handler_body(reranker, payload, "application/json", "*/*"))["scores"]
        if not request.get("raw_scores", False):
            scores = [1 / (1 + math.exp(-score)) for score in scores]
        results = [{"index": index, "score": score} for index, score in enumerate(scores)]
        results.sort(key=lambda item: -item["score"])
        return 200, json.dumps(results).encode()

    return answer


def _tei_error(message: str, kind: str) -> bytes:
    return json.dumps({"error": message, "error_type": kind}).encode()


@pytest.fixture
def tei(reranker):
    calls: list[dict] = []
    with RuntimeResponder(reranker, transform=tei_container(reranker, calls)) as responder:
        yield responder, calls


def test_tei_handler_splits_by_query_and_maps_scores_back_by_index(tei, reranker):
    responder, calls = tei
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="tei", client=responder.runtime_client(), content_handler=TEIHandler()
    )
    scores = model.score(PAIRS)
    assert scores == pytest.approx(reranker.score(PAIRS), abs=1e-5)
    assert all(len(call["texts"]) <= TEI_BATCH for call in calls)
    assert {call["query"] for call in calls} == set(QUERIES)
    assert all(call["raw_scores"] is True and call["truncate"] is True for call in calls)
    assert sum(len(call["texts"]) for call in calls) == len(PAIRS)
    assert asyncio.run(model.ascore(PAIRS)) == scores


def test_tei_handler_without_raw_scores_gets_tei_sigmoid(tei, reranker):
    responder, _ = tei
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="tei",
        client=responder.runtime_client(),
        content_handler=TEIHandler(raw_scores=False),
    )
    expected = [1 / (1 + math.exp(-x)) for x in reranker.score(PAIRS[:10])]
    assert model.score(PAIRS[:10]) == pytest.approx(expected, abs=1e-6)


def test_tei_errors_carry_teis_status_and_message(tei):
    responder, _ = tei
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="tei",
        client=responder.runtime_client(),
        content_handler=TEIHandler(max_pairs_per_request=64),
    )
    with pytest.raises(RerankerEndpointError) as raised:
        model.score(PAIRS[::2])  # 35 texts of one query in one request
    assert raised.value.status == 413
    assert raised.value.message == "batch size 35 > maximum allowed batch size 32"
