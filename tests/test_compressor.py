"""``SagemakerRerank`` built as docs/client.md shows it, and its ``server_top_n`` path against a
real local endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from langchain_core.documents import Document

from sagemaker_reranker.client import (
    RerankerEndpointError,
    RerankHandler,
    SagemakerEndpointCrossEncoder,
    SagemakerRerank,
)

QUERY = "what is a cat"
TEXTS = ["stocks fell today", "a cat is a small feline", "dogs bark", "cats purr", "a kitten"]


def documents() -> list[Document]:
    return [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(TEXTS)]


def test_compressor_takes_a_model_built_from_endpoint_url(endpoint):
    """The compressor validates its model field again; that must not refuse the client the
    model built for itself from endpoint_url."""
    model = SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name, endpoint_url=endpoint.url
    )
    compressor = SagemakerRerank(model=model, top_n=2)
    assert compressor.model is model
    kept = compressor.compress_documents(documents(), QUERY)
    assert [document.metadata["n"] for document in kept] == [
        index for index, _ in model.rerank(QUERY, TEXTS, 2)
    ]


class RecordingRerankHandler(RerankHandler):
    """A RerankHandler that keeps the top_n answers it reads, to see what travelled back."""

    def __init__(self) -> None:
        object.__setattr__(self, "answers", [])

    def ranked_output(self, body, count, top_n):
        answer = body.read()
        self.answers.append(json.loads(answer))
        return super().ranked_output(answer, count, top_n)


class NegativeTopNHandler(RerankHandler):
    """Sends a top_n the endpoint refuses."""

    def transform_input(self, pairs, instruction=None, top_n=None):
        return super().transform_input(pairs, instruction, None if top_n is None else -top_n)


def model_at(endpoint, **fields) -> SagemakerEndpointCrossEncoder:
    return SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name, endpoint_url=endpoint.url, **fields
    )


def kept(documents_kept: Sequence[Document]) -> list[tuple[int, float]]:
    return [
        (document.metadata["n"], document.metadata["relevance_score"])
        for document in documents_kept
    ]


@pytest.mark.parametrize("fields", [{}, {"normalize": "sigmoid"}, {"instruction": "find cats"}])
def test_server_top_n_keeps_what_the_client_side_ranking_keeps(endpoint, fields):
    handler = RecordingRerankHandler()
    server = SagemakerRerank(
        model=model_at(endpoint, content_handler=handler, **fields), top_n=2, server_top_n=True
    )
    client_side = SagemakerRerank(
        model=model_at(endpoint, content_handler=RerankHandler(), **fields), top_n=2
    )
    expected = kept(client_side.compress_documents(documents(), QUERY))
    assert kept(server.compress_documents(documents(), QUERY)) == expected
    assert kept(asyncio.run(server.acompress_documents(documents(), QUERY))) == expected
    # only the kept documents came back, each once
    assert [len(answer["results"]) for answer in handler.answers] == [2, 2]
    assert [result["index"] for result in handler.answers[0]["results"]] == [
        index for index, _ in expected
    ]


def test_server_top_n_larger_than_the_documents_keeps_them_all(endpoint):
    handler = RecordingRerankHandler()
    model = model_at(endpoint, content_handler=handler)
    compressor = SagemakerRerank(model=model, top_n=len(TEXTS) + 3, server_top_n=True)
    ranking = kept(compressor.compress_documents(documents(), QUERY))
    assert [index for index, _ in ranking] == [index for index, _ in model.rerank(QUERY, TEXTS)]
    assert len(handler.answers[0]["results"]) == len(TEXTS)


@pytest.mark.parametrize("limit", [{"max_pairs_per_request": 2}, {"max_request_bytes": 100}])
def test_server_top_n_falls_back_when_one_request_cannot_hold_the_documents(endpoint, limit):
    handler = RecordingRerankHandler()
    server = SagemakerRerank(
        model=model_at(endpoint, content_handler=handler, **limit), top_n=2, server_top_n=True
    )
    client_side = SagemakerRerank(model=model_at(endpoint), top_n=2)
    expected = kept(client_side.compress_documents(documents(), QUERY))
    ranking = kept(server.compress_documents(documents(), QUERY))
    assert [index for index, _ in ranking] == [index for index, _ in expected]
    assert [score for _, score in ranking] == pytest.approx([score for _, score in expected])
    assert handler.answers == []


def test_server_top_n_refused_by_the_endpoint_is_an_endpoint_error(endpoint):
    model = model_at(endpoint, content_handler=NegativeTopNHandler())
    compressor = SagemakerRerank(model=model, top_n=2, server_top_n=True)
    with pytest.raises(RerankerEndpointError, match="top_n") as caught:
        compressor.compress_documents(documents(), QUERY)
    assert caught.value.endpoint_name == endpoint.endpoint_name


def test_server_top_n_needs_a_rerank_handler():
    model = SagemakerEndpointCrossEncoder(endpoint_name="e", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match=r"server_top_n needs .* RerankHandler, got PairsHandler"):
        SagemakerRerank(model=model, server_top_n=True)
