"""Checking inputs and scores, ranking, and waiting for the requests of one call.

A call cut into several requests succeeds whole or fails whole: the first failure cancels
what has not started and is raised; scores are never returned for part of the input.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait

from sagemaker_reranker.client.content_handlers import Pair
from sagemaker_reranker.client.splitting import Request


def as_pair_list(text_pairs: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """``text_pairs`` as a list (the planner checks each pair as it goes)."""
    if isinstance(text_pairs, (str, bytes)) or not isinstance(text_pairs, Iterable):
        raise TypeError(
            f"text_pairs must be a sequence of (query, document) pairs, "
            f"got {type(text_pairs).__name__}"
        )
    return text_pairs if type(text_pairs) is list else list(text_pairs)


def query_pairs(query: str, documents: Sequence[str]) -> list[Pair]:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if isinstance(documents, str):
        raise TypeError("documents must be a sequence of strings, not one string")
    return [(query, document) for document in documents]


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


async def gather_or_first_error(tasks: list[asyncio.Future]) -> list[list[float]]:
    """Results in order; on the first failure, cancel the tasks still waiting and raise it."""
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [task.exception() for task in tasks if task in done and task.exception()]
    if errors:
        raise errors[0]
    return [task.result() for task in tasks]


def results_or_first_error(futures: list[Future]) -> list[list[float]]:
    """Results in order; on the first failure, cancel what has not started and raise it."""
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    for future in pending:
        future.cancel()
    for future in futures:
        if future in done and future.exception() is not None:
            raise future.exception()
    return [future.result() for future in futures]


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
