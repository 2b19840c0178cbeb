"""``SagemakerRerank`` built as docs/client.md shows it, and its ``server_top_n`` path against a
real local endpoint."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document

from sagemaker_reranker.client import (
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
