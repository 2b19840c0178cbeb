"""LangChain's "Cross Encoder Reranker" example end to end, the endpoint served by local mode.

state_of_the_union.txt -> RecursiveCharacterTextSplitter(500, 100) -> FAISS with real MiniLM
embeddings -> k=20 -> ContextualCompressionRetriever(CrossEncoderReranker(model=
SagemakerEndpointCrossEncoder(...), top_n=3)) -> the 3 documents, in exactly the order that
ranking the same 20 chunks in-process with the handler gives.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from handler import inference
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_classic.retrievers.document_compressors import CrossEncoderReranker

from sagemaker_reranker.client import SagemakerEndpointCrossEncoder, SagemakerRerank
from sagemaker_reranker.client.scores import sigmoid
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.examples import demo
from sagemaker_reranker.examples.demo import build_retriever, minilm_embeddings
from sagemaker_reranker.examples.speech import EXAMPLE_QUERY, split_speech

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def retriever():
    chunks = split_speech()
    assert len(chunks) > 20
    return build_retriever(chunks, minilm_embeddings())


@pytest.fixture(scope="module")
def expected(retriever, tiny_model_dir: Path) -> list[tuple[str, float]]:
    """The 20 retrieved chunks ranked in-process by the handler: (text, score), best first."""
    chunks = [document.page_content for document in retriever.invoke(EXAMPLE_QUERY)]
    assert len(chunks) == 20
    reranker = inference.model_fn(str(tiny_model_dir))
    body = json.dumps({"pairs": [[EXAMPLE_QUERY, chunk] for chunk in chunks]})
    result = inference.transform_fn(reranker, body, "application/json", "application/json")
    scores = json.loads(result[0] if isinstance(result, tuple) else result)["scores"]
    order = sorted(range(len(chunks)), key=lambda index: -scores[index])
    return [(chunks[index], scores[index]) for index in order]


def cross_encoder(endpoint: LocalEndpoint) -> SagemakerEndpointCrossEncoder:
    return SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name, client=endpoint.runtime_client()
    )


def test_example_flow_with_cross_encoder_reranker(endpoint, retriever, expected):
    compressor = CrossEncoderReranker(model=cross_encoder(endpoint), top_n=3)
    compression = ContextualCompressionRetriever(
        base_compressor=compressor, base_retriever=retriever
    )
    documents = compression.invoke(EXAMPLE_QUERY)
    assert [document.page_content for document in documents] == [t for t, _ in expected[:3]]
    # The ranking is not the retriever's own order: the reranker decided it.
    retrieved = [document.page_content for document in retriever.invoke(EXAMPLE_QUERY)]
    assert [t for t, _ in expected] != retrieved


def test_example_flow_with_sagemaker_rerank_keeps_the_scores(endpoint, retriever, expected):
    compression = ContextualCompressionRetriever(
        base_compressor=SagemakerRerank(model=cross_encoder(endpoint), top_n=3),
        base_retriever=retriever,
    )
    documents = compression.invoke(EXAMPLE_QUERY)
    ranked = [(d.page_content, d.metadata["relevance_score"]) for d in documents]
    # relevance_score is a probability, as BedrockRerank's: the sigmoid of the raw score
    assert ranked == [(text, sigmoid(score)) for text, score in expected[:3]]
    assert all(
        document.metadata["source"].endswith("state_of_the_union.txt") for document in documents
    )
    asynchronous = asyncio.run(compression.ainvoke(EXAMPLE_QUERY))
    assert [(d.page_content, d.metadata["relevance_score"]) for d in asynchronous] == ranked
    # The retriever's documents are copied, not modified.
    assert all("relevance_score" not in d.metadata for d in retriever.invoke(EXAMPLE_QUERY))


def test_demo_offline_falls_back_labelled_and_stops_its_server(capsys, monkeypatch):
    """``make demo`` without the hub: one line saying so, the stand-in labelled as not a
    trained reranker, 3 documents with scores, the stage timings, the server stopped.
    (The stand-in here is the tiny model rather than MiniLM, to keep the suite fast.)"""
    monkeypatch.setattr(demo, "OFFLINE_MODEL", "tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert demo.main(["--model", "BAAI/bge-reranker-base"]) == 0
    out = capsys.readouterr().out
    assert out.count("hub unreachable") == 1
    assert "NOT a trained reranker" in out
    ranked = re.findall(r"^Document (\d) \(score (-?\d+\.\d{4})\):$", out, re.MULTILINE)
    assert [rank for rank, _ in ranked] == ["1", "2", "3"]
    scores = [float(score) for _, score in ranked]
    assert scores == sorted(scores, reverse=True)
    assert re.search(
        r"timings: package .* s \| start .* s \| index .* s \| retrieve\+rerank .* s", out
    )
    port = int(re.search(r"on http://127\.0\.0\.1:(\d+)", out).group(1))
    assert not port_open("127.0.0.1", port)
    assert out.rstrip().endswith("local endpoint stopped")


def test_demo_reports_a_missing_model_directory_in_one_line(capsys, tmp_path):
    assert demo.main(["--model", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("demo failed: PackageError:") and len(err.strip().splitlines()) == 1
