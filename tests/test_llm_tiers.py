"""A yes/no LLM reranker (the tiny Qwen3) through every local tier and LangChain's flow.

Packaged as users package it (``package`` detects the kind), served by the in-process tier
and by the model-server tier (multi-model-server with transformers 4.x, as the AWS image),
called through boto3 and the LangChain client with an instruction: the scores are the
handler's own in this process, in input order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from handler import inference, reranker_contract, reranker_decoder

from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.mms import backend as mms
from sagemaker_reranker.deploy.packaging.build import package
from sagemaker_reranker.deploy.packaging.extract import extract_archive
from sagemaker_reranker.deploy.packaging.manifest import read_manifest

PAIRS = [
    ("What is the plan for the economy?", "We will lower costs for American families."),
    ("What is the plan for the economy?", "Infrastructure jobs for workers " * 40),
    ("energy costs", "the price of energy"),
    ("jobs", ""),
]
INSTRUCTION = "Find passages about the economy"
# Same weights and prompt; transformers 4.x (the model-server tier) vs 5.x here.
ACROSS_VERSIONS = 1e-4


@pytest.fixture(scope="module")
def qwen3_archive(tiny_qwen3_dir: Path, tmp_path_factory) -> Path:
    return package(str(tiny_qwen3_dir), tmp_path_factory.mktemp("qwen3") / "model.tar.gz").path


@pytest.fixture(scope="module")
def expected(qwen3_archive: Path, tmp_path_factory) -> dict[str | None, list[float]]:
    """The handler's scores in this process, from the extracted archive: by instruction."""
    model_dir = extract_archive(qwen3_archive, tmp_path_factory.mktemp("qwen3-model"))
    reranker = inference.model_fn(str(model_dir))
    assert isinstance(reranker, reranker_decoder.DecoderReranker)
    return {None: reranker.score(PAIRS), INSTRUCTION: reranker.score(PAIRS, None, INSTRUCTION)}


def cross_encoder(endpoint: LocalEndpoint, **options) -> SagemakerEndpointCrossEncoder:
    return SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name, client=endpoint.runtime_client(), **options
    )


def test_the_archive_records_the_yes_no_kind(qwen3_archive):
    manifest = read_manifest(qwen3_archive)
    assert (manifest.scoring, manifest.prompt) == ("yes-no", "qwen3-reranker")
    assert manifest.instruction == reranker_contract.DEFAULT_INSTRUCTION


def check_tier(endpoint: LocalEndpoint, expected, tolerance: float) -> None:
    plain = cross_encoder(endpoint)
    assert plain.score(PAIRS) == pytest.approx(expected[None], abs=tolerance)
    told = cross_encoder(endpoint, instruction=INSTRUCTION)
    assert told.score(PAIRS) == pytest.approx(expected[INSTRUCTION], abs=tolerance)
    assert expected[INSTRUCTION] != pytest.approx(expected[None], abs=1e-3)
    ranked = told.rerank(PAIRS[0][0], [document for _, document in PAIRS[:2]], top_n=2)
    assert len(ranked) == 2


def test_in_process_tier_serves_the_causal_reranker(qwen3_archive, expected):
    with LocalEndpoint(model_data=qwen3_archive) as endpoint:
        check_tier(endpoint, expected, 1e-5)


@pytest.mark.slow
@pytest.mark.mms
def test_model_server_tier_serves_the_causal_reranker(qwen3_archive, expected):
    reason = mms.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with LocalEndpoint(model_data=qwen3_archive, server="mms") as endpoint:
        check_tier(endpoint, expected, ACROSS_VERSIONS)


@pytest.mark.slow
def test_langchain_flow_reranks_with_the_causal_reranker(qwen3_archive, tmp_path):
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker

    from sagemaker_reranker.examples.demo import build_retriever, minilm_embeddings
    from sagemaker_reranker.examples.speech import EXAMPLE_QUERY, split_speech

    retriever = build_retriever(split_speech(), minilm_embeddings())
    chunks = [document.page_content for document in retriever.invoke(EXAMPLE_QUERY)]
    reranker = inference.model_fn(str(extract_archive(qwen3_archive, tmp_path / "model")))
    scores = reranker.score([(EXAMPLE_QUERY, chunk) for chunk in chunks], None, INSTRUCTION)
    best = sorted(range(len(chunks)), key=lambda index: -scores[index])[:3]
    with LocalEndpoint(model_data=qwen3_archive) as endpoint:
        compressor = CrossEncoderReranker(
            model=cross_encoder(endpoint, instruction=INSTRUCTION), top_n=3
        )
        compression = ContextualCompressionRetriever(
            base_compressor=compressor, base_retriever=retriever
        )
        documents = compression.invoke(EXAMPLE_QUERY)
    assert [document.page_content for document in documents] == [chunks[i] for i in best]
