"""The rerank API shape (Cohere, Jina, Voyage, vLLM) in the handler and at local mode's
``/v1/rerank`` and ``/v2/rerank``; the project's own shapes answer the same bytes as before."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from handler import inference
from sagemaker_inference.errors import GenericInferenceToolkitError

QUERY = "what is a cat"
DOCUMENTS = [
    "a cat is a small feline",
    "stocks fell today",
    "cats purr and chase mice around the house",
    "the weather is sunny",
]


def answer(reranker, payload: dict) -> dict:
    body = inference.transform_fn(reranker, json.dumps(payload), "application/json", None)
    return json.loads(body)


def refusal(reranker, payload: object) -> tuple[int, str]:
    with pytest.raises(GenericInferenceToolkitError) as caught:
        inference.transform_fn(reranker, json.dumps(payload), "application/json", None)
    return caught.value.status_code, caught.value.message


def raw_scores(reranker, documents: list[str]) -> list[float]:
    return answer(reranker, {"query": QUERY, "texts": documents})["scores"]


# --- The project's shapes, pinned: exact bytes for fixed inputs on the fixed tiny model ---
PAIRS = [[QUERY, DOCUMENTS[0]], [QUERY, DOCUMENTS[1]]]
PINNED = b'{"scores": [0.003937025088816881, 0.003873413661494851]}'


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"pairs": PAIRS}, PINNED),
        ({"text_pairs": PAIRS}, PINNED),
        ({"query": QUERY, "texts": DOCUMENTS[:2]}, PINNED),
        ({"pairs": [["q", "d"]], "instruction": "find"}, b'{"scores": [0.0037760320119559765]}'),
        ({"pairs": []}, b'{"scores": []}'),
    ],
)
def test_project_shapes_answer_the_pinned_bytes(reranker, payload, expected):
    body = json.dumps(payload).encode("utf-8")
    assert inference.transform_fn(reranker, body, "application/json", None) == expected


def test_project_shapes_keep_their_refusals(reranker):
    assert refusal(reranker, {"pairs": "x"}) == (
        400,
        "'pairs' must be a list of [query, document] pairs, got a string",
    )
    status, message = refusal(reranker, {"query": "q", "texts": [], "top_k": 1})
    assert status == 400
    assert message.startswith("unknown key(s) ['top_k']; send {'pairs'")


# --- The rerank shape ----------------------------------------------------------------------
def test_results_are_best_first_with_sigmoid_of_the_raw_score(reranker):
    raw = raw_scores(reranker, DOCUMENTS)
    results = answer(reranker, {"query": QUERY, "documents": DOCUMENTS})["results"]
    assert [r["index"] for r in results] == sorted(range(4), key=lambda i: (-raw[i], i))
    for result in results:
        assert result["raw_score"] == raw[result["index"]]
        assert result["relevance_score"] == pytest.approx(1 / (1 + math.exp(-result["raw_score"])))
        assert "document" not in result


def test_top_n_and_return_documents(reranker):
    documents = [DOCUMENTS[0], {"text": DOCUMENTS[1]}, DOCUMENTS[2]]
    payload = {"query": QUERY, "documents": documents, "top_n": 2, "return_documents": True}
    results = answer(reranker, payload)["results"]
    full = answer(reranker, {"query": QUERY, "documents": documents})["results"]
    assert [r["index"] for r in results] == [r["index"] for r in full[:2]]
    texts = [DOCUMENTS[r["index"]] for r in results]
    assert [r["document"] for r in results] == [{"text": text} for text in texts]
    # top_n above the count answers every document
    assert len(answer(reranker, {**payload, "top_n": 10})["results"]) == 3


def test_equal_scores_keep_input_order(reranker):
    results = answer(reranker, {"query": QUERY, "documents": ["same text"] * 3})["results"]
    assert [r["index"] for r in results] == [0, 1, 2]


def test_max_tokens_per_doc_truncates_each_document(reranker):
    long = DOCUMENTS[2]
    tokens = reranker.tokenizer(long, add_special_tokens=False, return_offsets_mapping=True)
    assert len(tokens["input_ids"]) > 3
    cut = long[: tokens["offset_mapping"][2][1]]
    payload = {"query": QUERY, "documents": [long, "cat"], "max_tokens_per_doc": 3}
    scores = {r["index"]: r["raw_score"] for r in answer(reranker, payload)["results"]}
    assert scores == dict(enumerate(raw_scores(reranker, [cut, "cat"])))
    assert scores[0] != raw_scores(reranker, [long])[0]


def test_tolerated_keys_are_ignored(reranker):
    plain = answer(reranker, {"query": QUERY, "documents": DOCUMENTS})
    extra = {
        "model": "any",
        "api_version": 2,
        "priority": 1,
        "max_chunks_per_doc": 4,
        "rank_fields": ["text"],
    }
    assert answer(reranker, {"query": QUERY, "documents": DOCUMENTS, **extra}) == plain


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"query": QUERY, "documents": DOCUMENTS, "top_k": 2}, "unknown key(s) ['top_k']"),
        ({"query": QUERY, "documents": DOCUMENTS, "return_document": True}, "['return_document']"),
        ({"documents": DOCUMENTS}, "needs 'query'"),
        ({"query": 3, "documents": DOCUMENTS}, "'query' must be a string, got a number"),
        ({"query": QUERY, "documents": "x"}, "'documents' must be a list"),
        ({"query": QUERY, "documents": ["a", {"txt": "b"}]}, "documents[1] must be a string or"),
        ({"query": QUERY, "documents": ["a", 5]}, "documents[1] must be a string or"),
        ({"query": QUERY, "documents": ["a"], "top_n": 0}, "'top_n' must be a positive integer"),
        ({"query": QUERY, "documents": ["a"], "top_n": True}, "'top_n' must be a positive"),
        ({"query": QUERY, "documents": ["a"], "top_n": "2"}, "'top_n' must be a positive"),
        ({"query": QUERY, "documents": ["a"], "max_tokens_per_doc": -1}, "'max_tokens_per_doc'"),
        ({"query": QUERY, "documents": ["a"], "return_documents": "yes"}, "true or false"),
        ({"query": QUERY, "documents": ["a"], "rank_fields": ["title"]}, "'rank_fields' can only"),
        ({"query": QUERY, "documents": ["a"], "instruction": 3}, "'instruction' must be a string"),
    ],
)
def test_bad_rerank_requests_are_400_naming_the_field(reranker, payload, named):
    status, message = refusal(reranker, payload)
    assert status == 400
    assert named in message


def test_rerank_requests_keep_the_pair_limit(reranker, monkeypatch):
    monkeypatch.setattr(reranker, "settings", dataclasses.replace(reranker.settings, max_pairs=2))
    status, message = refusal(reranker, {"query": QUERY, "documents": DOCUMENTS})
    assert status == 413
    assert "RERANKER_MAX_PAIRS" in message


def test_sigmoid_is_stable_far_from_zero():
    from handler import reranker_rerank_api

    assert reranker_rerank_api.sigmoid(-1000.0) == 0.0
    assert reranker_rerank_api.sigmoid(1000.0) == 1.0
    assert reranker_rerank_api.sigmoid(0.0) == 0.5


# --- Local mode's base-URL routes ----------------------------------------------------------
def test_rerank_routes_answer_as_invocations_does(endpoint):
    body = json.dumps({"query": QUERY, "documents": DOCUMENTS, "top_n": 2}).encode("utf-8")
    status, expected, _ = endpoint.request("POST", "/invocations", body)
    assert status == 200
    assert json.loads(expected)["results"]
    for path in ("/v1/rerank", "/v2/rerank"):
        assert endpoint.request("POST", path, body)[:2] == (200, expected)


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"query": "q", "documents": ["a"], "top_k": 1}', {}, 400),
        (b"{not json", {}, 400),
        (b'{"query": "q", "documents": ["a"]}', {"Content-Type": "text/plain"}, 415),
        (b'{"query": "q", "documents": ["a"]}', {"Accept": "text/csv"}, 406),
    ],
)
def test_rerank_routes_refuse_as_invocations_does(endpoint, body, headers, status):
    reference = endpoint.request("POST", "/invocations", body, headers)
    assert reference[0] == status
    for path in ("/v1/rerank", "/v2/rerank"):
        assert endpoint.request("POST", path, body, headers)[:2] == reference[:2]


def test_rerank_routes_keep_the_body_limit(endpoint):
    headers = {"Content-Length": str(64 * 1024 * 1024)}
    reference = endpoint.request("POST", "/invocations", None, headers)
    assert reference[0] == 413
    assert endpoint.request("POST", "/v1/rerank", None, headers)[:2] == reference[:2]


def test_other_rerank_paths_are_not_found(endpoint):
    assert endpoint.request("POST", "/v3/rerank", b"{}")[0] == 404
