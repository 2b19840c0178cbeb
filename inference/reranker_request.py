"""Requests: content negotiation, the JSON shapes of the wire contract, and their errors.

Every client error is a ``GenericInferenceToolkitError`` whose message names the problem (and
the index of the bad pair); the serving toolkit turns it into the response status.
"""

from __future__ import annotations

import json

from reranker_settings import MAX_INSTRUCTION_CHARS
from sagemaker_inference.errors import GenericInferenceToolkitError

JSON = "application/json"


def parse_request(
    body: bytes | str, content_type: str | None
) -> tuple[list[tuple[str, str]], str | None]:
    """Validate a request body; return its (query, document) pairs and its ``instruction``
    (None when absent: the model's default applies)."""
    media_type = (content_type or JSON).split(";")[0].strip().lower()
    if media_type != JSON:
        raise GenericInferenceToolkitError(
            415, f"unsupported content type {content_type!r}; send {JSON}"
        )
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise GenericInferenceToolkitError(
                400, f"request body is not valid UTF-8 (byte {error.start})"
            ) from None
    if not body.strip():
        raise GenericInferenceToolkitError(400, "request body is empty; send a JSON object")
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise GenericInferenceToolkitError(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise GenericInferenceToolkitError(400, "malformed JSON: nested too deeply") from None
    except ValueError as error:  # NaN / Infinity literals
        raise GenericInferenceToolkitError(400, f"malformed JSON: {error}") from None
    instruction = instruction_from_payload(payload)
    pairs = pairs_from_payload(payload)
    _check_unicode(pairs)
    return pairs, instruction


def instruction_from_payload(payload: object) -> str | None:
    """The optional ``instruction`` beside any shape: a string of at most
    ``MAX_INSTRUCTION_CHARS`` characters, for prompted rerankers (encoders ignore it)."""
    if not isinstance(payload, dict) or "instruction" not in payload:
        return None
    instruction = payload.pop("instruction")
    if not isinstance(instruction, str):
        raise GenericInferenceToolkitError(
            400, f"'instruction' must be a string, got {_type_name(instruction)}"
        )
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise GenericInferenceToolkitError(
            400,
            f"'instruction' has {len(instruction)} characters, over the limit of "
            f"{MAX_INSTRUCTION_CHARS}",
        )
    try:
        instruction.encode("utf-8")
    except UnicodeEncodeError as error:
        raise GenericInferenceToolkitError(
            400,
            f"'instruction' holds an unpaired surrogate at character {error.start}; "
            "send valid Unicode",
        ) from None
    return instruction


def _check_unicode(pairs: list[tuple[str, str]]) -> None:
    """JSON escapes can spell lone surrogates (``"\\ud800"``), which are no text: the
    tokenizer fails on them with a TypeError (a 500), so name them as the client's error."""
    for index, pair in enumerate(pairs):
        for position, text in enumerate(pair):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                code = ord(text[error.start])
                raise GenericInferenceToolkitError(
                    400,
                    f"pair {index} {('query', 'document')[position]} holds an unpaired surrogate "
                    f"\\u{code:04x} at character {error.start}; send valid Unicode",
                ) from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


SHAPES = (
    "{'pairs': [[query, doc], ...]}, {'text_pairs': [[query, doc], ...]} or "
    "{'query': q, 'texts': [doc, ...]}, each with an optional 'instruction': str"
)


def pairs_from_payload(payload: object) -> list[tuple[str, str]]:
    """Accept the three request shapes of the wire contract; name the first problem found."""
    if not isinstance(payload, dict):
        raise GenericInferenceToolkitError(
            400, f"expected a JSON object, got {_type_name(payload)}; send {SHAPES}"
        )
    keys = set(payload)
    if keys == {"pairs"} or keys == {"text_pairs"}:
        (key,) = keys
        return _pairs(payload[key], key)
    if keys == {"query", "texts"}:
        query, texts = payload["query"], payload["texts"]
        if not isinstance(query, str):
            raise GenericInferenceToolkitError(
                400, f"'query' must be a string, got {_type_name(query)}"
            )
        if not isinstance(texts, list):
            raise GenericInferenceToolkitError(
                400, f"'texts' must be a list of strings, got {_type_name(texts)}"
            )
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise GenericInferenceToolkitError(
                    400, f"texts[{index}] must be a string, got {_type_name(text)}"
                )
        return [(query, text) for text in texts]
    known = {"pairs", "text_pairs", "query", "texts", "instruction"}
    unknown = sorted(keys - known)
    problem = f"unknown key(s) {unknown}" if unknown else f"keys {sorted(keys)} do not fit"
    raise GenericInferenceToolkitError(400, f"{problem}; send {SHAPES}")


def _pairs(items: object, key: str) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        raise GenericInferenceToolkitError(
            400, f"'{key}' must be a list of [query, document] pairs, got {_type_name(items)}"
        )
    pairs = []
    for index, item in enumerate(items):
        if not isinstance(item, list) or len(item) != 2:
            size = f"{len(item)} items" if isinstance(item, list) else _type_name(item)
            raise GenericInferenceToolkitError(
                400, f"{key}[{index}] must be [query, document] (2 strings), got {size}"
            )
        for position, text in enumerate(item):
            if not isinstance(text, str):
                raise GenericInferenceToolkitError(
                    400, f"{key}[{index}][{position}] must be a string, got {_type_name(text)}"
                )
        pairs.append((item[0], item[1]))
    return pairs


def _type_name(value: object) -> str:
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
    raise GenericInferenceToolkitError(406, f"unsupported accept {accept!r}; accept {JSON}")
