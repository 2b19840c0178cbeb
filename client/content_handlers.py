"""Content handlers: how pairs become a request body and how a response body becomes scores.

A handler is a small object with this interface (subclass ``ContentHandler`` for a custom one)::

    content_type: str                 # request Content-Type
    accept: str                       # response Accept (LangChain's spelling ``accepts`` too)
    one_query_per_request: bool       # the client sends pairs of one query per request
    max_pairs_per_request: int | None # the server's own cap, when it has one (TEI: 32)
    supports_instruction: bool        # transform_input takes instruction=...
    transform_input(pairs) -> bytes   # pairs: a sequence of (query, document) tuples
    transform_output(body) -> list[float]

``transform_output`` gets the response body as a stream to ``read()``, like botocore's
``StreamingBody``, so a LangChain content handler (``accepts``, ``output.read()``) works
unchanged; only ``content_type``, ``accept``/``accepts`` and the two methods are required. It
returns one score per input pair, in input order, and raises ``ValueError`` naming the problem
when the body is not what it expects. The client checks the count and that every score is
finite, so a handler need not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from sagemaker_reranker.inference.reranker_contract import (
    DOCUMENTS_KEY,
    INSTRUCTION_KEY,
    JSON,
    PAIR_KEYS,
    QUERY_KEY,
    RAW_SCORE_KEY,
    RESULTS_KEY,
    SCORES_KEY,
    TEXTS_KEY,
    TOP_N_KEY,
)

Pair = tuple[str, str]
Body = bytes | IO[bytes]


class ContentHandler:
    """Base for handlers: JSON in, JSON out, no grouping and no server cap by default."""

    content_type: str = JSON
    accept: str = JSON
    one_query_per_request: bool = False
    max_pairs_per_request: int | None = None
    supports_instruction: bool = False

    @property
    def accepts(self) -> str:
        """LangChain's name for ``accept``."""
        return self.accept

    def transform_input(self, pairs: Sequence[Pair]) -> bytes:
        raise NotImplementedError

    def transform_output(self, body: Body) -> list[float]:
        raise NotImplementedError


def accept_of(handler: object) -> str | None:
    """The handler's Accept: LangChain's ``accepts``, else ``accept`` (``ContentHandler``'s
    ``accepts`` reads its ``accept``, so a subclass may set either)."""
    for name in ("accepts", "accept"):
        value = getattr(handler, name, None)
        if isinstance(value, str):
            return value
    return None


def check_handler(handler: object) -> object:
    """Refuse an object that lacks the handler interface, naming what is missing."""
    missing = [
        name
        for name in ("transform_input", "transform_output")
        if not callable(getattr(handler, name, None))
    ]
    if not isinstance(getattr(handler, "content_type", None), str):
        missing.append("content_type")
    if accept_of(handler) is None:
        missing.append("accept (or accepts)")
    if missing:
        raise ValueError(
            f"content_handler {type(handler).__name__} lacks {', '.join(missing)}; a handler "
            "needs content_type, accept (or accepts), transform_input and transform_output"
        )
    return handler


def body_bytes(body: Any) -> bytes | memoryview:
    """The bytes of a body given as bytes or as a stream with ``read()``."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        # orjson takes bytes but not a subclass of them; a view of them costs no copy.
        return memoryview(body) if type(body) is not bytes else body
    if isinstance(body, str):
        return body.encode("utf-8")
    read = getattr(body, "read", None)
    if callable(read):
        return body_bytes(read())
    raise ValueError(f"expected the response body as bytes or a stream, got {type(body).__name__}")


def dumps(payload: object) -> bytes:
    """Serialise with orjson (several times faster than ``json`` on long texts)."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError as error:
        raise ValueError(f"cannot serialise the request: {error}") from None


def loads(body: Any) -> Any:
    body = body_bytes(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        preview = bytes(body[:80]).decode("utf-8", "replace")
        raise ValueError(f"response is not JSON ({error}): {preview!r}") from None


def _scores_list(payload: Any) -> list:
    if not isinstance(payload, dict) or not isinstance(payload.get(SCORES_KEY), list):
        shape = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"expected {{'{SCORES_KEY}': [...]}} in the response, got {shape}")
    return payload[SCORES_KEY]


@dataclass(frozen=True)
class PairsHandler(ContentHandler):
    """``{"pairs": [[query, doc], ...]}`` -> ``{"scores": [...]}``: this project's handler.

    An instruction (for instruction-aware rerankers) goes beside the pairs as
    ``"instruction"``; encoders ignore it.
    """

    key: str = PAIR_KEYS[0]
    supports_instruction: bool = field(default=True, init=False)

    def transform_input(self, pairs: Sequence[Pair], instruction: str | None = None) -> bytes:
        if instruction is None:
            return dumps({self.key: pairs})
        return dumps({self.key: pairs, INSTRUCTION_KEY: instruction})

    def transform_output(self, body: Body) -> list[float]:
        return _scores_list(loads(body))


@dataclass(frozen=True)
class TextPairsHandler(PairsHandler):
    """``{"text_pairs": [...]}``: the format of the stock ``langchain_community`` client."""

    key: str = PAIR_KEYS[1]


@dataclass(frozen=True)
class TEIHandler(ContentHandler):
    """Text Embeddings Inference ``/rerank``: one query and its texts per request.

    TEI applies a sigmoid unless ``raw_scores`` is set, and answers ``[{index, score}]``
    sorted by score; the scores are put back in input order by index. TEI caps texts per
    request with ``--max-client-batch-size`` (32 by default): match ``max_pairs_per_request``.
    TEI has no instruction field; the client leaves an instruction out (and warns).
    """

    raw_scores: bool = True
    truncate: bool = True
    max_pairs_per_request: int | None = 32
    one_query_per_request: bool = field(default=True, init=False)

    def transform_input(self, pairs: Sequence[Pair]) -> bytes:
        queries = {query for query, _ in pairs}
        if len(queries) > 1:
            raise ValueError(f"TEI takes one query per request, got {len(queries)}")
        query = pairs[0][0] if pairs else ""
        return dumps(
            {
                QUERY_KEY: query,
                TEXTS_KEY: [document for _, document in pairs],
                "raw_scores": self.raw_scores,
                "truncate": self.truncate,
            }
        )

    def transform_output(self, body: Body) -> list[float]:
        results = loads(body)
        if not isinstance(results, list):
            raise ValueError(f"expected [{{index, score}}, ...], got {type(results).__name__}")
        return _in_input_order(results, "TEI", lambda item: item.get("score"))


@dataclass(frozen=True)
class RerankHandler(ContentHandler):
    """The rerank API of Cohere, Jina, Voyage and vLLM: ``{"query", "documents"}`` ->
    ``{"results": [{"index", "relevance_score", ...}]}`` best first, one query per request.

    Scores come back in input order as raw scores: this project's ``raw_score``, else the
    logit of ``relevance_score`` (a probability; Cohere Rerank on SageMaker or Bedrock sends
    only that), so ``normalize="sigmoid"`` gives the probability back either way. The
    instruction travels as ``"instruction"``, which this project's handler reads and others
    may refuse.
    """

    one_query_per_request: bool = field(default=True, init=False)
    supports_instruction: bool = field(default=True, init=False)

    def transform_input(
        self, pairs: Sequence[Pair], instruction: str | None = None, top_n: int | None = None
    ) -> bytes:
        """``top_n`` asks the endpoint for the best ``top_n`` results only (read them with
        ``ranked_output``; ``transform_output`` wants one per document)."""
        queries = {query for query, _ in pairs}
        if len(queries) > 1:
            raise ValueError(f"a rerank request takes one query, got {len(queries)}")
        payload = {
            QUERY_KEY: pairs[0][0] if pairs else "",
            DOCUMENTS_KEY: [document for _, document in pairs],
        }
        if instruction is not None:
            payload[INSTRUCTION_KEY] = instruction
        if top_n is not None:
            payload[TOP_N_KEY] = top_n
        return dumps(payload)

    def transform_output(self, body: Body) -> list[float]:
        return _in_input_order(_results(loads(body)), "rerank", _raw_score)

    def ranked_output(self, body: Body, count: int, top_n: int) -> list[tuple[int, float]]:
        """The answer to a ``top_n`` request about ``count`` documents: ``(index, raw score)``,
        best first (equal scores by index), one per kept document."""
        # scores imports splitting, which imports this module
        from sagemaker_reranker.client.scores import score_problem

        results = _results(loads(body))
        expected = min(top_n, count)
        if len(results) != expected:
            raise ValueError(f"expected {expected} results (top_n={top_n}), got {len(results)}")
        scores = _in_input_order(results, "rerank", _raw_score, count)
        kept = [(index, score) for index, score in enumerate(scores) if score is not None]
        problem = score_problem([score for _, score in kept], expected)
        if problem:
            raise ValueError(problem)
        return sorted(kept, key=lambda item: (-item[1], item[0]))


def _results(payload: Any) -> list:
    results = payload.get(RESULTS_KEY) if isinstance(payload, dict) else None
    if not isinstance(results, list):
        shape = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"expected {{'{RESULTS_KEY}': [...]}} in the response, got {shape}")
    return results


def _in_input_order(results: list, source: str, score_of, count: int | None = None) -> list:
    """Ranked ``[{"index", ...}]`` results as scores in input order, each index at most once;
    ``count`` documents were sent (by default one per result, so every index appears)."""
    count = len(results) if count is None else count
    scores: list = [None] * count
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count:
            raise ValueError(f"bad or out-of-range index in {source} result {item!r}")
        if scores[index] is not None:
            raise ValueError(f"index {index} appears twice in the {source} response")
        scores[index] = score_of(item)
    return scores


def _raw_score(item: dict) -> object:
    """A result's raw score: ``raw_score``, else the logit of ``relevance_score``."""
    if RAW_SCORE_KEY in item:
        return item[RAW_SCORE_KEY]
    probability = item.get("relevance_score")
    if isinstance(probability, bool) or not isinstance(probability, (int, float)):
        raise ValueError(f"rerank result without a numeric relevance_score: {item!r:.80}")
    if not 0 < probability < 1:
        raise ValueError(f"relevance_score {probability} is not a probability in (0, 1)")
    return math.log(probability / (1 - probability))


@dataclass(frozen=True)
class HFTextClassificationHandler(ContentHandler):
    """The Hugging Face container's default pipeline (``HF_TASK=text-classification``).

    Sends ``{"inputs": [{"text", "text_pair"}], "parameters": ...}``. The default parameters
    ask for the raw logit (``function_to_apply: "none"``; the pipeline otherwise applies a
    sigmoid to a one-label model) and truncate long pairs instead of failing. Reads either
    ``[{label, score}]`` (one per input) or ``[[{label, score}]]`` (with ``top_k``).
    """

    parameters: dict = field(
        default_factory=lambda: {"function_to_apply": "none", "truncation": True}
    )

    def transform_input(self, pairs: Sequence[Pair]) -> bytes:
        inputs = [{"text": query, "text_pair": document} for query, document in pairs]
        return dumps({"inputs": inputs, "parameters": self.parameters})

    def transform_output(self, body: Body) -> list[float]:
        results = loads(body)
        if not isinstance(results, list):
            raise ValueError(f"expected a list of {{label, score}}, got {type(results).__name__}")
        scores = []
        for index, item in enumerate(results):
            if isinstance(item, list) and len(item) == 1:
                item = item[0]
            if not isinstance(item, dict) or "score" not in item:
                raise ValueError(f"result {index} is not one {{label, score}}: {item!r:.80}")
            scores.append(item["score"])
        return scores
