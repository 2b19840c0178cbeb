"""The rerank API shape that Cohere, Jina, Voyage, vLLM and infinity share, beside the
project's own shapes (``reranker_request``): reading a request of either, truncating documents
to ``max_tokens_per_doc``, and rendering the answer each shape expects.

Request::

    {"query": q, "documents": [str or {"text": str}, ...], "top_n": int, "return_documents":
     bool, "max_tokens_per_doc": int, "instruction": str}

Answer: ``{"results": [{"index", "relevance_score", "raw_score", "document": {"text"}}]}``,
best first, ties by input index; ``relevance_score`` is the sigmoid of ``raw_score`` (the
score the project's shapes answer); ``document`` only when ``return_documents`` is true.
Keys that clients of this shape add and that mean nothing here (``TOLERATED_KEYS``) are
ignored; any other key is refused by name, so a misspelled ``top_k`` is never dropped silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from reranker_contract import (
    DOCUMENTS_KEY,
    MAX_TOKENS_PER_DOC_KEY,
    QUERY_KEY,
    RANK_FIELDS_KEY,
    RAW_SCORE_KEY,
    RERANK_KEYS,
    RESULTS_KEY,
    RETURN_DOCUMENTS_KEY,
    SCORES_KEY,
    TEXT_KEY,
    TOLERATED_KEYS,
    TOP_N_KEY,
)
from reranker_request import (
    BadRequest,
    check_unicode,
    instruction_from_payload,
    pairs_from_payload,
    read_payload,
    type_name,
)


@dataclass(frozen=True)
class RerankOptions:
    """What a rerank-shaped request asks of the answer (and of its documents' length)."""

    documents: list[str]
    top_n: int | None = None
    return_documents: bool = False
    max_tokens_per_doc: int | None = None


@dataclass(frozen=True)
class Request:
    """One request: its pairs, its instruction, and ``rerank`` for the rerank shape (None: a
    project shape, answered ``{"scores": [...]}``)."""

    pairs: list[tuple[str, str]]
    instruction: str | None
    rerank: RerankOptions | None = None


def read_request(body: bytes | str, content_type: str | None) -> Request:
    """Validate a body of any shape the handler speaks; name the first problem found."""
    payload = read_payload(body, content_type)
    instruction = instruction_from_payload(payload)
    if isinstance(payload, dict) and DOCUMENTS_KEY in payload:
        query, options = rerank_from_payload(payload)
        pairs = [(query, document) for document in options.documents]
    else:
        pairs, options = pairs_from_payload(payload), None
    check_unicode(pairs)
    return Request(pairs, instruction, options)


def rerank_from_payload(payload: dict) -> tuple[str, RerankOptions]:
    """The query and options of a rerank-shaped request (its ``instruction`` already taken)."""
    unknown = sorted(set(payload) - set(RERANK_KEYS) - set(TOLERATED_KEYS))
    if unknown:
        raise BadRequest(
            f"unknown key(s) {unknown} in a rerank request; it takes {list(RERANK_KEYS)} "
            f"(and ignores {list(TOLERATED_KEYS)})"
        )
    if QUERY_KEY not in payload:
        raise BadRequest("a rerank request needs 'query' beside 'documents'")
    query = payload[QUERY_KEY]
    if not isinstance(query, str):
        raise BadRequest(f"'query' must be a string, got {type_name(query)}")
    documents = payload[DOCUMENTS_KEY]
    if not isinstance(documents, list):
        raise BadRequest(
            f"'documents' must be a list of strings or {{'text': str}}, got {type_name(documents)}"
        )
    rank_fields = payload.get(RANK_FIELDS_KEY)
    if rank_fields not in (None, [TEXT_KEY]):
        raise BadRequest(f"'rank_fields' can only be ['text'] here, got {rank_fields!r:.80}")
    return query, RerankOptions(
        [_document_text(document, index) for index, document in enumerate(documents)],
        _count(payload, TOP_N_KEY),
        _flag(payload, RETURN_DOCUMENTS_KEY),
        _count(payload, MAX_TOKENS_PER_DOC_KEY),
    )


def _document_text(document: object, index: int) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, dict) and isinstance(document.get(TEXT_KEY), str):
        return document[TEXT_KEY]
    got = "an object without a string 'text'" if isinstance(document, dict) else None
    raise BadRequest(
        f"documents[{index}] must be a string or {{'text': str}}, got {got or type_name(document)}"
    )


def _count(payload: dict, key: str) -> int | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        shown = type_name(value) if not isinstance(value, int) or isinstance(value, bool) else value
        raise BadRequest(f"'{key}' must be a positive integer, got {shown}")
    return value


def _flag(payload: dict, key: str) -> bool:
    value = payload.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be true or false, got {type_name(value)}")
    return bool(value)


def truncate_documents(
    tokenizer, pairs: list[tuple[str, str]], limit: int
) -> list[tuple[str, str]]:
    """Each document cut to its first ``limit`` tokens (no special tokens), at the character
    where its ``limit``-th token ends, so the text the model sees is the document's own."""
    documents = [document for _, document in pairs]
    try:
        offsets = tokenizer(documents, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
    except NotImplementedError:  # only fast (Rust) tokenizers report offsets
        raise BadRequest(
            f"'{MAX_TOKENS_PER_DOC_KEY}' needs a fast tokenizer, which this model lacks"
        ) from None
    return [
        (query, document[: spans[limit - 1][1]] if len(spans) > limit else document)
        for (query, document), spans in zip(pairs, offsets, strict=True)
    ]


def render(request: Request, scores: list[float]) -> bytes:
    """The answer's bytes: ``{"scores": [...]}`` in input order for the project's shapes, the
    ranked ``results`` for the rerank shape."""
    options = request.rerank
    if options is None:
        return json.dumps({SCORES_KEY: scores}).encode("utf-8")
    order = sorted(range(len(scores)), key=lambda index: (-scores[index], index))
    results = []
    for index in order[: options.top_n]:
        result = {
            "index": index,
            "relevance_score": sigmoid(scores[index]),
            RAW_SCORE_KEY: scores[index],
        }
        if options.return_documents:
            result["document"] = {TEXT_KEY: options.documents[index]}
        results.append(result)
    return json.dumps({RESULTS_KEY: results}).encode("utf-8")


def sigmoid(value: float) -> float:
    """The logistic function, without overflow for scores far below zero."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)
