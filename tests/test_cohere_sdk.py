"""Real rerank clients, unmodified, against a local endpoint: the official Cohere SDK's two
SageMaker clients, and ``rerankers``' Cohere-compatible API ranker at ``/v1/rerank``.

The reference scores come from the model's logits through transformers directly, not from
this project's handler. The Cohere SDK hard-codes AWS's runtime host in
``cohere.aws_client.get_url``; only that is pointed at the local endpoint.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import cohere
import cohere.aws_client
import pytest
import torch
from cohere.core.api_error import ApiError
from rerankers.models.api_rankers import APIRanker
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open

QUERY = "what is a cat"
DOCUMENTS = [
    "stocks fell today",
    "a cat is a small feline",
    "cats purr and chase mice around the house",
    "the weather is sunny",
    "dogs bark",
]


@pytest.fixture(scope="module")
def sharp_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with its head's weights scaled up: random weights score every pair
    within 1e-4 of each other, too close for an order or a 1e-4 check to mean anything."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    inputs = tokenizer([QUERY] * len(DOCUMENTS), DOCUMENTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        model.classifier.weight.mul_(2000)
        # centred on 0, where the sigmoid is steepest, so probabilities differ as much as scores
        model.classifier.bias.sub_(model(**inputs).logits.mean())
    folder = tmp_path_factory.mktemp("sharp")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def endpoint(sharp_model_dir):
    with LocalEndpoint(model_dir=sharp_model_dir) as started:
        yield started
    assert not port_open("127.0.0.1", started.port)


@pytest.fixture(scope="module")
def reference(sharp_model_dir) -> list[float]:
    """The model's raw scores (its one logit) for (QUERY, document), by transformers."""
    tokenizer = AutoTokenizer.from_pretrained(sharp_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(sharp_model_dir).eval()
    inputs = tokenizer([QUERY] * len(DOCUMENTS), DOCUMENTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits[:, 0].tolist()
    ordered = sorted(logits, reverse=True)
    # The order is only a fact if no two scores are within the tolerance of each other.
    assert all(a - b > 1e-3 for a, b in itertools.pairwise(ordered)), ordered
    return logits


def best_first(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda index: -scores[index])


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


@pytest.fixture
def cohere_at(endpoint, aws_env, monkeypatch):
    """The Cohere SDK's runtime URL pointed at the local endpoint; SigV4 signs with the fake
    credentials of ``aws_env`` (the local server checks no signature)."""
    sent = []

    def local_url(*, platform, aws_region, model, stream):
        sent.append((platform, model, stream))
        return f"{endpoint.url}/endpoints/{model}/invocations"

    monkeypatch.setattr(cohere.aws_client, "get_url", local_url)
    return sent


def check(results, reference, top_n: int, documents: bool) -> None:
    assert [result.index for result in results] == best_first(reference)[:top_n]
    for result in results:
        assert result.relevance_score == pytest.approx(sigmoid(reference[result.index]), abs=1e-4)
        if documents:  # v1's answer model has a document type; v2's keeps it as a dict
            document = result.document
            text = document["text"] if isinstance(document, dict) else document.text
            assert text == DOCUMENTS[result.index]


def test_cohere_sagemaker_client_v1(endpoint, cohere_at, reference):
    client = cohere.SagemakerClient(aws_region="us-east-1")
    response = client.rerank(
        model=endpoint.endpoint_name,
        query=QUERY,
        documents=DOCUMENTS,
        top_n=3,
        return_documents=True,
    )
    check(response.results, reference, 3, documents=True)
    assert cohere_at == [("sagemaker", endpoint.endpoint_name, False)]
    everything = client.rerank(model=endpoint.endpoint_name, query=QUERY, documents=DOCUMENTS)
    check(everything.results, reference, len(DOCUMENTS), documents=False)
    assert all(result.document is None for result in everything.results)


def test_cohere_sagemaker_client_v2(endpoint, cohere_at, reference):
    client = cohere.SagemakerClientV2(aws_region="us-east-1")
    response = client.rerank(
        model=endpoint.endpoint_name, query=QUERY, documents=DOCUMENTS, top_n=2
    )
    check(response.results, reference, 2, documents=False)
    # v2's rerank has no return_documents argument; the SDK's extra body fields carry it.
    response = client.rerank(
        model=endpoint.endpoint_name,
        query=QUERY,
        documents=DOCUMENTS,
        top_n=4,
        max_tokens_per_doc=512,
        request_options={"additional_body_parameters": {"return_documents": True}},
    )
    check(response.results, reference, 4, documents=True)


def test_cohere_refusal_names_the_problem(endpoint, cohere_at):
    """A request the handler refuses reaches the SDK as the runtime's ModelError (424) with
    the handler's 400 and its words inside."""
    client = cohere.SagemakerClient(aws_region="us-east-1")
    with pytest.raises(ApiError) as caught:
        client.rerank(
            model=endpoint.endpoint_name, query=QUERY, documents=DOCUMENTS, rank_fields=["title"]
        )
    assert caught.value.status_code == 424
    assert caught.value.body["OriginalStatusCode"] == 400
    assert "'rank_fields' can only be ['text']" in caught.value.body["OriginalMessage"]


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_rerankers_api_ranker(endpoint, reference, path):
    ranker = APIRanker(
        model="local", api_key="unused", api_provider="cohere", url=f"{endpoint.url}{path}"
    )
    ranked = ranker.rank(QUERY, DOCUMENTS)
    assert [result.document.doc_id for result in ranked.results] == best_first(reference)
    for result in ranked.results:
        assert result.score == pytest.approx(sigmoid(reference[result.document.doc_id]), abs=1e-4)
    assert [result.document.text for result in ranked.top_k(2)] == [
        DOCUMENTS[index] for index in best_first(reference)[:2]
    ]
