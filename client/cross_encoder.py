"""``SagemakerEndpointCrossEncoder``: a LangChain cross-encoder backed by a SageMaker endpoint.

Large inputs are cut into requests within the endpoint's limits (pairs, bytes, estimated
tokens), sent concurrently (``max_concurrency`` at once) and put back in input order. Throttling
is retried with capped exponential backoff and full jitter; nothing else is, in particular not a
read timeout, which would run a slow inference twice. Every failure is a
``RerankerEndpointError``; a wrong number of scores or a non-finite score is one too, because
LangChain's ``CrossEncoderReranker`` zips scores with documents non-strictly and would drop
documents silently.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoRegionError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from langchain_core.cross_encoders import BaseCrossEncoder
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from sagemaker_reranker.client.content_handlers import ContentHandler, PairsHandler
from sagemaker_reranker.client.errors import RerankerEndpointError
from sagemaker_reranker.client.splitting import Limits, Pair, Request, plan_requests

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
# The runtime rejects bodies over 6 MiB (serverless: 4 MB); stay clear of the edge.
RUNTIME_MAX_BODY = 6 * MIB
# The platform gives a container 60 s; AWS recommends a 70 s socket timeout so the client
# sees the platform's answer (an error naming the timeout) rather than a socket timeout.
DEFAULT_READ_TIMEOUT = 70.0


class SagemakerEndpointCrossEncoder(BaseModel, BaseCrossEncoder):
    """Scores (query, document) pairs with a reranker behind a SageMaker endpoint.

    Example::

        model = SagemakerEndpointCrossEncoder(endpoint_name="reranker", region_name="us-east-1")
        CrossEncoderReranker(model=model, top_n=3)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    endpoint_name: str = Field(min_length=1)
    region_name: str | None = None
    """AWS region; by default the environment's or the profile's, like boto3."""
    credentials_profile_name: str | None = None
    client: Any = None
    """A ``sagemaker-runtime`` client; one passed in is used as is, never replaced."""
    endpoint_url: str | None = None
    """Runtime URL override, e.g. a local endpoint (``sagemaker-reranker serve``)."""
    boto_config: Config | None = None
    """Merged over the defaults (adaptive rate limiting, no botocore retries, 70 s read)."""
    content_handler: ContentHandler = Field(default_factory=PairsHandler)
    inference_component_name: str | None = None
    target_variant: str | None = None
    custom_attributes: str | None = None
    normalize: Literal["sigmoid"] | None = None
    """``None`` returns the model's raw logits; ``"sigmoid"`` maps them to (0, 1)."""
    max_pairs_per_request: int = Field(256, ge=1)
    max_request_bytes: int = Field(5 * MIB, ge=64, lt=RUNTIME_MAX_BODY)
    max_tokens_per_request: int = Field(32_768, ge=1)
    """Estimated tokens per request (see ``splitting``); keeps each call far from 60 s and
    within the token cap ``deploy`` gives CPU instances (``RERANKER_MAX_TOKENS=32768``)."""
    max_concurrency: int = Field(4, ge=1, le=64)
    max_attempts: int = Field(5, ge=1, le=20)
    """Attempts per request when throttled (429/503); other errors are never retried."""
    backoff_base: float = Field(0.25, ge=0)
    backoff_max: float = Field(20.0, ge=0)

    _pool: ThreadPoolExecutor | None = PrivateAttr(default=None)
    _pool_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _make_client(self) -> SagemakerEndpointCrossEncoder:
        if self.client is not None:
            _warn_about_injected_client(self.client, self.max_concurrency)
            return self
        config = runtime_config(self.max_concurrency).merge(self.boto_config or Config())
        if (config.max_pool_connections or 10) < self.max_concurrency:
            raise ValueError(
                f"boto_config.max_pool_connections ({config.max_pool_connections}) must be >= "
                f"max_concurrency ({self.max_concurrency})"
            )
        try:
            session = boto3.Session(profile_name=self.credentials_profile_name)
            self.client = session.client(
                "sagemaker-runtime",
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                config=config,
            )
        except NoRegionError:
            raise ValueError(
                "no AWS region: pass region_name=..., or set AWS_REGION / AWS_DEFAULT_REGION, "
                "or a region in your AWS profile"
            ) from None
        except ProfileNotFound as error:
            raise ValueError(f"AWS profile not found: {error}") from None
        self.region_name = self.client.meta.region_name
        return self

    # ------------------------------------------------------------------ public API

    def score(self, text_pairs: Sequence[Sequence[str]]) -> list[float]:
        """One score per pair, in input order (raw logits unless ``normalize`` is set)."""
        count, requests = self._prepare(text_pairs)
        if len(requests) <= 1:
            results = [self._invoke(request) for request in requests]
        else:
            futures = [self._executor().submit(self._invoke, request) for request in requests]
            results = _results_or_first_error(futures)
        return self._assemble(count, requests, results)

    async def ascore(self, text_pairs: Sequence[Sequence[str]]) -> list[float]:
        """``score`` without blocking the event loop; requests run concurrently in threads."""
        loop = asyncio.get_running_loop()
        pool = self._executor()
        count, requests = await loop.run_in_executor(pool, self._prepare, text_pairs)
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def invoke(request: Request) -> list[float]:
            async with semaphore:
                return await loop.run_in_executor(pool, self._invoke, request)

        tasks = [asyncio.ensure_future(invoke(request)) for request in requests]
        return self._assemble(count, requests, await _gather_or_first_error(tasks))

    def rerank(
        self, query: str, documents: Sequence[str], top_n: int | None = None
    ) -> list[tuple[int, float]]:
        """``(index, score)`` for ``documents``, best first; equal scores keep input order."""
        return _ranked(self.score(_query_pairs(query, documents)), top_n)

    async def arerank(
        self, query: str, documents: Sequence[str], top_n: int | None = None
    ) -> list[tuple[int, float]]:
        """Async ``rerank``."""
        return _ranked(await self.ascore(_query_pairs(query, documents)), top_n)

    def close(self, wait: bool = True) -> None:
        """Stop the worker threads, by default after the requests still running finish.

        After a failed call, requests already sent for it may still be running; ``close``
        waits for them. Threads also stop at interpreter exit.
        """
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)

    # ------------------------------------------------------------------ internals

    def _prepare(self, text_pairs: Sequence[Sequence[str]]) -> tuple[int, list[Request]]:
        pairs = as_pair_list(text_pairs)
        handler = self.content_handler
        max_pairs = self.max_pairs_per_request
        if handler.max_pairs_per_request:
            max_pairs = min(max_pairs, handler.max_pairs_per_request)
        limits = Limits(max_pairs, self.max_request_bytes, self.max_tokens_per_request)
        requests = plan_requests(
            pairs, limits, handler.transform_input, handler.one_query_per_request
        )
        logger.debug(
            "endpoint %s: %d pairs in %d request(s)", self.endpoint_name, len(pairs), len(requests)
        )
        return len(pairs), requests

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.max_concurrency, thread_name_prefix=f"reranker-{self.endpoint_name}"
                )
            return self._pool

    def _invoke_kwargs(self) -> dict[str, str]:
        kwargs = {
            "EndpointName": self.endpoint_name,
            "ContentType": self.content_handler.content_type,
            "Accept": self.content_handler.accept,
            "InferenceComponentName": self.inference_component_name,
            "TargetVariant": self.target_variant,
            "CustomAttributes": self.custom_attributes,
        }
        return {key: value for key, value in kwargs.items() if value is not None}

    def _invoke(self, request: Request) -> list[float]:
        """One request, retried only while throttled, with capped exponential backoff."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._invoke_once(request)
            except RerankerEndpointError as error:
                if not error.retryable or attempt == self.max_attempts:
                    raise
                delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))
                logger.info(
                    "endpoint %s busy (%s); retry %d of %d in %.2f s",
                    self.endpoint_name,
                    error.status or error.error_code,
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _invoke_once(self, request: Request) -> list[float]:
        name = self.endpoint_name
        try:
            response = self.client.invoke_endpoint(Body=request.body, **self._invoke_kwargs())
            body = response["Body"].read()
        except ClientError as error:
            raise RerankerEndpointError.from_client_error(error, name) from error
        except ReadTimeoutError as error:
            raise RerankerEndpointError(
                f"no response within the read timeout ({error}); not retried, since the "
                "endpoint may still be running it",
                endpoint_name=name,
                error_code="ReadTimeout",
            ) from error
        except BotoConnectionError as error:
            # Connection refused or connect timeout: the request never reached the endpoint.
            raise RerankerEndpointError(
                str(error), endpoint_name=name, error_code="ConnectionError", retryable=True
            ) from error
        except BotoCoreError as error:
            raise RerankerEndpointError(str(error), endpoint_name=name) from error
        request_id = response.get("ResponseMetadata", {}).get("RequestId")
        return self._checked_scores(body, len(request.indices), request_id)

    def _checked_scores(self, body: bytes, expected: int, request_id: str | None) -> list[float]:
        """The scores in a response body, or an error naming what is wrong with them."""
        try:
            scores = self.content_handler.transform_output(body)
        except ValueError as error:
            raise RerankerEndpointError(
                f"unreadable response: {error}",
                endpoint_name=self.endpoint_name,
                request_id=request_id,
            ) from error
        problem = score_problem(scores, expected)
        if problem:
            raise RerankerEndpointError(
                problem, endpoint_name=self.endpoint_name, request_id=request_id
            )
        return scores

    def _assemble(
        self, count: int, requests: list[Request], results: list[list[float]]
    ) -> list[float]:
        scores: list[float] = [0.0] * count
        for request, values in zip(requests, results, strict=True):
            indices = request.indices
            if isinstance(indices, range):
                scores[indices.start : indices.stop] = values
            else:
                for index, value in zip(indices, values, strict=True):
                    scores[index] = value
        if self.normalize == "sigmoid":
            return [sigmoid(value) for value in scores]
        return [float(value) for value in scores]


def runtime_config(max_concurrency: int) -> Config:
    """botocore settings for invoking an endpoint.

    Adaptive mode keeps its client-side rate limiter, which slows sending after throttling;
    ``total_max_attempts=1`` turns botocore's own retries off, because they would also retry a
    read timeout (running a slow inference twice) while missing ``ModelError`` throttling.
    The client retries throttling itself.
    """
    return Config(
        read_timeout=DEFAULT_READ_TIMEOUT,
        connect_timeout=10,
        retries={"mode": "adaptive", "total_max_attempts": 1},
        max_pool_connections=max(10, max_concurrency),
        tcp_keepalive=True,
    )


def _warn_about_injected_client(client: Any, max_concurrency: int) -> None:
    config = getattr(getattr(client, "meta", None), "config", None)
    if config is None:
        return
    if (config.read_timeout or 60) <= 60:
        logger.warning(
            "the sagemaker-runtime client has read_timeout=%s s, not above the platform's 60 s: "
            "a slow call times out in the client first (and botocore may retry it)",
            config.read_timeout,
        )
    if (config.max_pool_connections or 10) < max_concurrency:
        logger.warning(
            "the sagemaker-runtime client keeps %s connections, fewer than max_concurrency=%d",
            config.max_pool_connections,
            max_concurrency,
        )


def as_pair_list(text_pairs: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """``text_pairs`` as a list (the planner checks each pair as it goes)."""
    if isinstance(text_pairs, (str, bytes)) or not isinstance(text_pairs, Iterable):
        raise TypeError(
            f"text_pairs must be a sequence of (query, document) pairs, "
            f"got {type(text_pairs).__name__}"
        )
    return text_pairs if type(text_pairs) is list else list(text_pairs)


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


def _query_pairs(query: str, documents: Sequence[str]) -> list[Pair]:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if isinstance(documents, str):
        raise TypeError("documents must be a sequence of strings, not one string")
    return [(query, document) for document in documents]


def _ranked(scores: list[float], top_n: int | None) -> list[tuple[int, float]]:
    if top_n is not None and (isinstance(top_n, bool) or top_n < 0):
        raise ValueError(f"top_n must be None or >= 0, got {top_n!r}")
    order = sorted(range(len(scores)), key=lambda index: -scores[index])  # stable
    return [(index, scores[index]) for index in order[:top_n]]


async def _gather_or_first_error(tasks: list[asyncio.Future]) -> list[list[float]]:
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


def _results_or_first_error(futures: list[Future]) -> list[list[float]]:
    """Results in order; on the first failure, cancel what has not started and raise it."""
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    for future in pending:
        future.cancel()
    for future in futures:
        if future in done and future.exception() is not None:
            raise future.exception()
    return [future.result() for future in futures]
