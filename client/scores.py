"""What comes back: a response's scores checked, put back in input order, normalised, ranked."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import IO, Any

from sagemaker_reranker.client.errors import RerankerEndpointError
from sagemaker_reranker.client.splitting import Request


def read_response(read: Callable[[IO[bytes]], Any], body: bytes, where: dict) -> Any:
    """What ``read`` makes of a response body, or an error saying it could not (``where``:
    the error's ``endpoint_name`` and ``request_id``)."""
    try:
        return read(io.BytesIO(body))
    except Exception as error:  # a LangChain handler raises KeyError, TypeError...
        detail = str(error) if isinstance(error, ValueError) else f"{error!r}"
        raise RerankerEndpointError(f"unreadable response: {detail}", **where) from error


def checked_scores(handler: Any, body: bytes, expected: int, where: dict) -> list[float]:
    """The scores ``handler`` reads in a response body, or an error naming what is wrong with
    them."""
    scores = read_response(handler.transform_output, body, where)
    problem = score_problem(scores, expected)
    if problem:
        raise RerankerEndpointError(problem, **where)
    return scores


def score_problem(scores: object, expected: int) -> str | None:
    """What is wrong with a response's scores, or ``None``: count, type and finiteness."""
    if not isinstance(scores, list):
        return f"expected a list of scores, got {type(scores).__name__}"
    if len(scores) != expected:
        return f"expected {expected} scores, got {len(scores)}; refusing to guess which is which"
    if all(type(value) is float or type(value) is int for value in scores) and all(
        map(math.isfinite, scores)
    ):
        return None
    for index, value in enumerate(scores):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"score {index} is not a number: {value!r:.40}"
        if not math.isfinite(value):
            return f"score {index} is not finite: {value}"
    return None


def sigmoid(value: float) -> float:
    """Logistic function without overflow for large negative logits."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


def ranked(scores: list[float], top_n: int | None) -> list[tuple[int, float]]:
    """``(index, score)`` best first; equal scores keep input order."""
    if top_n is not None and (isinstance(top_n, bool) or top_n < 0):
        raise ValueError(f"top_n must be None or >= 0, got {top_n!r}")
    order = sorted(range(len(scores)), key=lambda index: -scores[index])  # stable
    return [(index, scores[index]) for index in order[:top_n]]


def assemble(
    count: int, requests: list[Request], normalize: str | None, results: list[list[float]]
) -> list[float]:
    """The scores of every request put back at their input positions."""
    scores: list[float] = [0.0] * count
    for request, values in zip(requests, results, strict=True):
        indices = request.indices
        if isinstance(indices, range):
            scores[indices.start : indices.stop] = values
        else:
            for index, value in zip(indices, values, strict=True):
                scores[index] = value
    if normalize == "sigmoid":
        return [sigmoid(value) for value in scores]
    return [float(value) for value in scores]
