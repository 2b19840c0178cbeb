"""The client's side of the rerank shape: ``RerankHandler`` against a local endpoint, and
``SagemakerRerank``'s probability ``relevance_score``."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from langchain_core.documents import Document

from sagemaker_reranker.client import (
    RerankHandler,
    SagemakerEndpointCrossEncoder,
    SagemakerRerank,
)
from sagemaker_reranker.client.scores import sigmoid

QUERY = "what is a cat"
DOCUMENTS = ["stocks fell today", "a cat is a small feline", "dogs bark", "cats purr"]


def model_at(endpoint, **fields) -> SagemakerEndpointCrossEncoder:
    return SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name, client=endpoint.runtime_client(), **fields
    )


def test_rerank_handler_scores_as_the_pairs_handler(endpoint):
    pairs = [(QUERY, document) for document in DOCUMENTS]
    expected = model_at(endpoint).score(pairs)
    assert model_at(endpoint, content_handler=RerankHandler()).score(pairs) == expected
    # one query per request: two queries make two requests, each answered in input order
    mixed = [*pairs, ("dogs", "dogs bark")]
    assert model_at(endpoint, content_handler=RerankHandler()).score(mixed)[:4] == expected


def test_sagemaker_rerank_relevance_score_is_a_probability(endpoint):
    documents = [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(DOCUMENTS)]
    raw = dict(model_at(endpoint).rerank(QUERY, DOCUMENTS))
    for fields in ({}, {"content_handler": RerankHandler()}, {"normalize": "sigmoid"}):
        compressor = SagemakerRerank(model=model_at(endpoint, **fields), top_n=2)
        kept = compressor.compress_documents(documents, QUERY)
        assert len(kept) == 2
        for document in kept:
            score = document.metadata["relevance_score"]
            assert score == pytest.approx(sigmoid(raw[document.metadata["n"]]), abs=1e-12)
        assert asyncio.run(compressor.acompress_documents(documents, QUERY)) == kept


def test_rerank_handler_reads_relevance_score_alone_as_its_logit():
    """Cohere Rerank's own answer has no raw score: the probability's logit stands in."""
    body = {"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.2}]}
    scores = RerankHandler().transform_output(json.dumps(body).encode())
    assert scores == pytest.approx([math.log(0.2 / 0.8), math.log(0.9 / 0.1)])
    assert [sigmoid(score) for score in scores] == pytest.approx([0.2, 0.9])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"scores": [1.0]}, "expected {'results': [...]}"),
        ({"results": [{"index": 0, "raw_score": 1}, {"index": 0, "raw_score": 2}]}, "twice"),
        ({"results": [{"index": 3, "raw_score": 1}]}, "out-of-range index"),
        ({"results": [{"index": 0}]}, "without a numeric relevance_score"),
        ({"results": [{"index": 0, "relevance_score": 1.0}]}, "not a probability"),
    ],
)
def test_rerank_handler_names_a_bad_answer(body, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("{", r"\{")):
        RerankHandler().transform_output(json.dumps(body).encode())


def test_rerank_handler_request_shape():
    pairs = [(QUERY, "a"), (QUERY, "b")]
    assert json.loads(RerankHandler().transform_input(pairs, instruction="find")) == {
        "query": QUERY,
        "documents": ["a", "b"],
        "instruction": "find",
    }
    with pytest.raises(ValueError, match="one query"):
        RerankHandler().transform_input([("q1", "a"), ("q2", "b")])


def test_rerank_handler_sends_top_n_only_when_asked():
    pairs = [(QUERY, "a"), (QUERY, "b")]
    assert "top_n" not in json.loads(RerankHandler().transform_input(pairs))
    assert json.loads(RerankHandler().transform_input(pairs, top_n=1))["top_n"] == 1


def test_rerank_handler_ranked_output_orders_best_first():
    body = {"results": [{"index": 3, "raw_score": 2.0}, {"index": 0, "raw_score": 2.0}]}
    assert RerankHandler().ranked_output(json.dumps(body).encode(), 5, 2) == [(0, 2.0), (3, 2.0)]


@pytest.mark.parametrize(
    ("results", "problem"),
    [
        ([{"index": 0, "raw_score": 1}], "expected 2 results"),
        ([{"index": 0, "raw_score": 1}] * 2, "twice"),
        ([{"index": 0, "raw_score": 1}, {"index": 5, "raw_score": 1}], "out-of-range index"),
        ([{"index": 0, "raw_score": 1}, {"index": 1, "raw_score": "x"}], "not a number"),
    ],
)
def test_rerank_handler_ranked_output_names_a_bad_answer(results, problem):
    with pytest.raises(ValueError, match=problem):
        RerankHandler().ranked_output(json.dumps({"results": results}).encode(), 5, 2)
