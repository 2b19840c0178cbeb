"""Requests: content negotiation, the JSON shapes of the wire contract, and the errors a
request can meet anywhere in the handler.

Each error is a ``RerankerError`` subclass whose message names the problem (and the index of
the bad pair); ``inference.py`` alone turns its class into the response status.
"""

from __future__ import annotations

import json

from reranker_contract import (
    INSTRUCTION_KEY,
    JSON,
    MAX_INSTRUCTION_CHARS,
    PAIR_KEYS,
    QUERY_KEY,
    SHAPES,
    TEXTS_KEY,
)


class RerankerError(Exception):
    """A request the handler refuses, or fails to score, with a message for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RerankerError):
    """The body is not a request of the wire contract."""


class NotAcceptable(RerankerError):
    """The caller accepts no JSON answer."""


class RequestTooLarge(RerankerError):
    """Over RERANKER_MAX_PAIRS or RERANKER_MAX_TOKENS."""


class UnsupportedMediaType(RerankerError):
    """The body is not JSON."""


class ScoringFailed(RerankerError):
    """The model gave no usable score."""


def parse_request(
    body: bytes | str, content_type: str | None
) -> tuple[list[tuple[str, str]], str | None]:
    """Validate a request body; return its (query, document) pairs and its ``instruction``
    (None when absent: the model's default applies)."""
    payload = read_payload(body, content_type)
    instruction = instruction_from_payload(payload)
    pairs = pairs_from_payload(payload)
    check_unicode(pairs)
    return pairs, instruction


def read_payload(body: bytes | str, content_type: str | None) -> object:
    """The body's JSON value: a JSON content type, UTF-8, no NaN or Infinity literals."""
    media_type = (content_type or JSON).split(";")[0].strip().lower()
    if media_type != JSON:
        raise UnsupportedMediaType(f"unsupported content type {content_type!r}; send {JSON}")
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadRequest(f"request body is not valid UTF-8 (byte {error.start})") from None
    if not body.strip():
        raise BadRequest("request body is empty; send a JSON object")
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise BadRequest(f"malformed JSON: {error}") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None
    except ValueError as error:  # NaN / Infinity literals
        raise BadRequest(f"malformed JSON: {error}") from None
    return payload


def instruction_from_payload(payload: object) -> str | None:
    """The optional ``instruction`` beside any shape: a string of at most
    ``MAX_INSTRUCTION_CHARS`` characters, for prompted rerankers (encoders ignore it)."""
    if not isinstance(payload, dict) or INSTRUCTION_KEY not in payload:
        return None
    instruction = payload.pop(INSTRUCTION_KEY)
    if not isinstance(instruction, str):
        raise BadRequest(f"'instruction' must be a string, got {type_name(instruction)}")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise BadRequest(
            f"'instruction' has {len(instruction)} characters, over the limit of "
            f"{MAX_INSTRUCTION_CHARS}",
        )
    try:
        instruction.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadRequest(
            f"'instruction' holds an unpaired surrogate at character {error.start}; "
            "send valid Unicode",
        ) from None
    return instruction


def check_unicode(pairs: list[tuple[str, str]]) -> None:
    """JSON escapes can spell lone surrogates (``"\\ud800"``), which are no text: the
    tokenizer fails on them with a TypeError (a 500), so name them as the client's error."""
    for index, pair in enumerate(pairs):
        for position, text in enumerate(pair):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                code = ord(text[error.start])
                raise BadRequest(
                    f"pair {index} {('query', 'document')[position]} holds an unpaired surrogate "
                    f"\\u{code:04x} at character {error.start}; send valid Unicode",
                ) from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def pairs_from_payload(payload: object) -> list[tuple[str, str]]:
    """Accept the three request shapes of the wire contract; name the first problem found."""
    if not isinstance(payload, dict):
        raise BadRequest(f"expected a JSON object, got {type_name(payload)}; send {SHAPES}")
    keys = set(payload)
    if len(keys) == 1 and keys <= set(PAIR_KEYS):
        (key,) = keys
        return _pairs(payload[key], key)
    if keys == {QUERY_KEY, TEXTS_KEY}:
        query, texts = payload[QUERY_KEY], payload[TEXTS_KEY]
        if not isinstance(query, str):
            raise BadRequest(f"'query' must be a string, got {type_name(query)}")
        if not isinstance(texts, list):
            raise BadRequest(f"'texts' must be a list of strings, got {type_name(texts)}")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise BadRequest(f"texts[{index}] must be a string, got {type_name(text)}")
        return [(query, text) for text in texts]
    known = {*PAIR_KEYS, QUERY_KEY, TEXTS_KEY, INSTRUCTION_KEY}
    unknown = sorted(keys - known)
    problem = f"unknown key(s) {unknown}" if unknown else f"keys {sorted(keys)} do not fit"
    raise BadRequest(f"{problem}; send {SHAPES}")


def _pairs(items: object, key: str) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        raise BadRequest(
            f"'{key}' must be a list of [query, document] pairs, got {type_name(items)}"
        )
    pairs = []
    for index, item in enumerate(items):
        if not isinstance(item, list) or len(item) != 2:
            size = f"{len(item)} items" if isinstance(item, list) else type_name(item)
            raise BadRequest(f"{key}[{index}] must be [query, document] (2 strings), got {size}")
        for position, text in enumerate(item):
            if not isinstance(text, str):
                raise BadRequest(
                    f"{key}[{index}][{position}] must be a string, got {type_name(text)}"
                )
        pairs.append((item[0], item[1]))
    return pairs


def type_name(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def check_accept(accept: str | None) -> None:
    """Only JSON responses exist; ``*/*`` and no preference mean JSON."""
    for option in (accept or JSON).split(","):
        media_type = option.split(";")[0].strip().lower()
        if media_type in {JSON, "*/*", "application/*", ""}:
            return
    raise NotAcceptable(f"unsupported accept {accept!r}; accept {JSON}")
