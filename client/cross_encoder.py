"""``SagemakerEndpointCrossEncoder``: a LangChain cross-encoder backed by a SageMaker endpoint.

Large inputs are cut into requests within the endpoint's limits (pairs, bytes, estimated
tokens), sent concurrently (``max_concurrency`` at once) and put back in input order. Throttling
is retried with capped exponential backoff and full jitter, a component scaling from zero is
waited for (``cold_start``); nothing else is retried, not even a read timeout, which would run a
slow inference twice. A response is read within ``max_response_bytes`` and a call within
``timeout``. Every failure is a ``RerankerEndpointError``, a wrong number of scores or a
non-finite score too: LangChain's ``CrossEncoderReranker`` zips scores with documents
non-strictly and would drop documents silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import IO, Any, Literal

from botocore.config import Config
from langchain_core.cross_encoders import BaseCrossEncoder
from langchain_core.utils import secret_from_env
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from sagemaker_reranker.client.cold_start import ScaleFromZero
from sagemaker_reranker.client.content_handlers import PairsHandler, accept_of, check_handler
from sagemaker_reranker.client.errors import RerankerEndpointError
from sagemaker_reranker.client.fanout import gather_or_first_error, results_or_first_error
from sagemaker_reranker.client.reading import Deadline
from sagemaker_reranker.client.runtime import (
    Credentials,
    check_endpoint_kwargs,
    client_is_loopback,
    make_runtime_client,
    warn_about_injected_client,
)
from sagemaker_reranker.client.scores import assemble, checked_scores, ranked, read_response
from sagemaker_reranker.client.sending import send
from sagemaker_reranker.client.splitting import (
    CHARS_PER_TOKEN,
    TOKENS_PER_PAIR_CAP,
    Limits,
    Request,
    as_pair_list,
    plan_requests,
    query_pairs,
)
from sagemaker_reranker.inference.reranker_contract import MAX_BODY_BYTES, MAX_INSTRUCTION_CHARS

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
CREDENTIALS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
# Fields that name an invoke_endpoint parameter (also settable through endpoint_kwargs).
INVOKE_FIELDS = {
    "inference_component_name": "InferenceComponentName",
    "target_variant": "TargetVariant",
    "custom_attributes": "CustomAttributes",
}


class SagemakerEndpointCrossEncoder(BaseModel, BaseCrossEncoder):
    """Scores (query, document) pairs with a reranker behind a SageMaker endpoint.

    Example::

        model = SagemakerEndpointCrossEncoder(endpoint_name="reranker", region_name="us-east-1")
        CrossEncoderReranker(model=model, top_n=3)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    endpoint_name: str = Field(min_length=1)
    region_name: str | None = None
    """AWS region; by default AWS_REGION, AWS_DEFAULT_REGION or the profile's."""
    credentials_profile_name: str | None = None
    aws_access_key_id: SecretStr | None = Field(
        default_factory=secret_from_env("AWS_ACCESS_KEY_ID", default=None)
    )
    """With ``aws_secret_access_key`` (and ``aws_session_token``): explicit credentials. Read
    from AWS_ACCESS_KEY_ID etc. when not given, unless a profile or a client is."""
    aws_secret_access_key: SecretStr | None = Field(
        default_factory=secret_from_env("AWS_SECRET_ACCESS_KEY", default=None)
    )
    aws_session_token: SecretStr | None = Field(
        default_factory=secret_from_env("AWS_SESSION_TOKEN", default=None)
    )
    client: Any = Field(default=None, exclude=True, repr=False)
    """A ``sagemaker-runtime`` client; one passed in is used as is, never replaced."""
    endpoint_url: str | None = None
    """Runtime URL override: https, or http to a loopback host (``sagemaker-reranker serve``,
    whose requests go unsigned: no credentials or region needed)."""
    allow_insecure_http: bool = False
    """Allow an http ``endpoint_url`` to a host that is not loopback (sent in clear)."""
    config: Config | None = None
    """botocore ``Config`` merged over the defaults (adaptive rate limiting, no botocore
    retries, 70 s read timeout, a pool of ``max_concurrency`` connections)."""
    content_handler: Any = Field(default_factory=PairsHandler)
    """This project's handlers, or any object with LangChain's content-handler interface."""
    endpoint_kwargs: dict[str, Any] | None = None
    """More ``invoke_endpoint`` parameters: ``TargetModel``, ``InferenceId``, ``SessionId``..."""
    inference_component_name: str | None = None
    target_variant: str | None = None
    custom_attributes: str | None = None
    instruction: str | None = Field(None, max_length=MAX_INSTRUCTION_CHARS)
    """Sent with every request as ``"instruction"`` (instruction-aware rerankers use it,
    encoders ignore it); ``rerank(..., instruction=...)`` overrides it per call."""
    normalize: Literal["sigmoid"] | None = None
    """``None`` returns the model's raw logits; ``"sigmoid"`` maps them to (0, 1)."""
    max_pairs_per_request: int = Field(256, ge=1)
    # The runtime rejects bodies over 6 MiB (serverless: 4 MB); stay clear of the edge.
    max_request_bytes: int = Field(5 * MIB, ge=64, lt=MAX_BODY_BYTES)
    max_tokens_per_request: int = Field(32_768, ge=1)
    """Estimated tokens per request (see ``splitting``); keeps each call far from 60 s and
    within the token cap ``deploy`` gives CPU instances (``RERANKER_MAX_TOKENS=32768``)."""
    max_tokens_per_pair: int = Field(TOKENS_PER_PAIR_CAP, ge=1)
    """The model's max length (8,192 for LLM rerankers; 512 for bge-reranker-base packs
    requests of long documents fuller): the most one pair can cost in the estimate."""
    max_concurrency: int = Field(4, ge=1, le=64)
    max_attempts: int = Field(5, ge=1, le=20)
    """Attempts per request when throttled (429/503)."""
    backoff_base: float = Field(0.25, ge=0)
    backoff_max: float = Field(20.0, ge=0)
    scale_from_zero_timeout: float = Field(300.0, ge=0)
    """Seconds a request waits for an inference component scaling from zero (0: fail at once)."""
    max_response_bytes: int = Field(MAX_BODY_BYTES + MIB, ge=1)
    """A larger response is refused as it arrives (the runtime's answers stop at 6 MiB)."""
    timeout: float | None = Field(None, gt=0)
    """Seconds for a whole call, retries and backoff included (``None``: no deadline)."""

    _pool: ThreadPoolExecutor | None = PrivateAttr(default=None)
    _pool_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _loopback: bool = PrivateAttr(default=False)
    _warned_instruction: bool = PrivateAttr(default=False)
    _cold: ScaleFromZero = PrivateAttr(default_factory=ScaleFromZero)
    _validated: bool = PrivateAttr(default=False)

    @field_validator("content_handler")
    @classmethod
    def _handler_interface(cls, handler: Any) -> Any:
        return check_handler(handler)

    @model_validator(mode="after")
    def _make_client(self) -> SagemakerEndpointCrossEncoder:
        # A model holding this one as a field (SagemakerRerank) runs this again on the built
        # instance, whose client it made itself: checking it as a given one would refuse it.
        if self._validated:
            return self
        self._keep_environment_credentials_where_boto3_would()
        if self.client is not None:
            ignored = [
                name
                for name in ("endpoint_url", "config", "credentials_profile_name", *CREDENTIALS)
                if getattr(self, name) is not None
            ]
            if ignored:
                raise ValueError(
                    f"client= is used as it is, so {', '.join(ignored)} would be ignored: set "
                    "them on the client you pass, or leave client out"
                )
            warn_about_injected_client(self.client, self.max_concurrency)
        else:
            self.client = make_runtime_client(
                max_concurrency=self.max_concurrency,
                region_name=self.region_name,
                profile_name=self.credentials_profile_name,
                endpoint_url=self.endpoint_url,
                allow_insecure_http=self.allow_insecure_http,
                credentials=Credentials(
                    access_key_id=_reveal(self.aws_access_key_id),
                    secret_access_key=_reveal(self.aws_secret_access_key),
                    session_token=_reveal(self.aws_session_token),
                ),
                config=self.config,
            )
            self.region_name = self.client.meta.region_name
        self._loopback = client_is_loopback(self.client)
        named = {key: getattr(self, name) for name, key in INVOKE_FIELDS.items()}
        twice = sorted(
            key
            for key, value in named.items()
            if value is not None and key in (self.endpoint_kwargs or {})
        )
        if twice:
            raise ValueError(f"{', '.join(twice)} set both as a field and in endpoint_kwargs")
        check_endpoint_kwargs(self.endpoint_kwargs or {})
        self._validated = True
        return self

    def _keep_environment_credentials_where_boto3_would(self) -> None:
        """Keys read from the environment give way to a client (used as it is) and to a named
        profile (which boto3 prefers to the variables); an empty variable is no key."""
        gives_way = self.client is not None or bool(self.credentials_profile_name)
        for name in set(CREDENTIALS) - self.model_fields_set:
            value = getattr(self, name)
            if value is not None and (gives_way or not value.get_secret_value()):
                setattr(self, name, None)

    # ------------------------------------------------------------------ public API

    def score(
        self, text_pairs: Sequence[Sequence[str]], instruction: str | None = None
    ) -> list[float]:
        """One score per pair, in input order (raw logits unless ``normalize`` is set)."""
        deadline = Deadline.start(self.timeout)
        count, requests = self._prepare(text_pairs, instruction)
        if len(requests) <= 1 and self.timeout is None:
            results = [self._invoke(request, deadline) for request in requests]
        else:  # in threads, so that the deadline can end the wait for a stuck request
            futures = [self._executor().submit(self._invoke, r, deadline) for r in requests]
            results = results_or_first_error(futures, deadline, self.endpoint_name)
        return assemble(count, requests, self.normalize, results)

    async def ascore(
        self, text_pairs: Sequence[Sequence[str]], instruction: str | None = None
    ) -> list[float]:
        """``score`` without blocking the event loop; requests run concurrently in threads."""
        deadline = Deadline.start(self.timeout)
        loop = asyncio.get_running_loop()
        pool = self._executor()
        count, requests = await loop.run_in_executor(pool, self._prepare, text_pairs, instruction)
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def invoke(request: Request) -> list[float]:
            async with semaphore:
                return await loop.run_in_executor(pool, self._invoke, request, deadline)

        tasks = [asyncio.ensure_future(invoke(request)) for request in requests]
        results = await gather_or_first_error(tasks, deadline, self.endpoint_name)
        return assemble(count, requests, self.normalize, results)

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        instruction: str | None = None,
    ) -> list[tuple[int, float]]:
        """``(index, score)`` for ``documents``, best first; equal scores keep input order."""
        return ranked(self.score(query_pairs(query, documents), instruction), top_n)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        instruction: str | None = None,
    ) -> list[tuple[int, float]]:
        """Async ``rerank``."""
        pairs = query_pairs(query, documents)
        return ranked(await self.ascore(pairs, instruction), top_n)

    def close(self, wait: bool = True) -> None:
        """Stop the worker threads, by default after the requests still running finish
        (a failed call's requests already sent included); they also stop at interpreter exit."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)

    # ------------------------------------------------------------------ internals

    def _prepare(
        self, text_pairs: Sequence[Sequence[str]], instruction: str | None, **body: Any
    ) -> tuple[int, list[Request]]:
        """The requests for the pairs; ``body``: more keyword arguments for the handler."""
        pairs = as_pair_list(text_pairs)
        handler = self.content_handler
        serialize = partial(handler.transform_input, **body) if body else handler.transform_input
        extra_tokens = 0
        instruction = self._instruction(instruction)
        if instruction is not None:
            # An instruction-aware model reads the instruction with every pair.
            serialize = partial(serialize, instruction=instruction)
            extra_tokens = len(instruction) // CHARS_PER_TOKEN
        max_pairs = self.max_pairs_per_request
        handler_cap = getattr(handler, "max_pairs_per_request", None)
        if handler_cap:
            max_pairs = min(max_pairs, handler_cap)
        limits = Limits(
            max_pairs,
            self.max_request_bytes,
            self.max_tokens_per_request,
            extra_tokens,
            self.max_tokens_per_pair,
        )
        one_query = bool(getattr(handler, "one_query_per_request", False))
        requests = plan_requests(pairs, limits, serialize, one_query)
        logger.debug(
            "endpoint %s: %d pairs in %d request(s)", self.endpoint_name, len(pairs), len(requests)
        )
        return len(pairs), requests

    def _instruction(self, given: str | None) -> str | None:
        """The instruction to send (the call's, else the field's), or None to send none."""
        instruction = given if given is not None else self.instruction
        if instruction is None:
            return None
        if not isinstance(instruction, str) or len(instruction) > MAX_INSTRUCTION_CHARS:
            raise ValueError(
                f"instruction must be a string of at most {MAX_INSTRUCTION_CHARS} characters"
            )
        if getattr(self.content_handler, "supports_instruction", False):
            return instruction
        if not self._warned_instruction:
            self._warned_instruction = True
            logger.warning(
                "%s has no instruction field: the instruction is not sent to endpoint %s",
                type(self.content_handler).__name__,
                self.endpoint_name,
            )
        return None

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.max_concurrency, thread_name_prefix=f"reranker-{self.endpoint_name}"
                )
            return self._pool

    def _invoke_kwargs(self) -> dict[str, Any]:
        kwargs = {
            "EndpointName": self.endpoint_name,
            "ContentType": self.content_handler.content_type,
            "Accept": accept_of(self.content_handler),
            **{key: getattr(self, name) for name, key in INVOKE_FIELDS.items()},
            **(self.endpoint_kwargs or {}),
        }
        return {key: value for key, value in kwargs.items() if value is not None}

    def _invoke(
        self, request: Request, deadline: Deadline, read: Callable[[IO[bytes]], Any] | None = None
    ) -> Any:
        """One request, retried while throttled or its component scales from zero, within the
        call's deadline; ``read`` makes the result of the body (default: the checked scores)."""
        attempt, cold = 1, self._cold.waiter(self.scale_from_zero_timeout, self._invoke_kwargs())
        while True:
            if deadline.expired():
                raise deadline.error(self.endpoint_name)
            try:
                result = self._invoke_once(request, deadline, read)
                self._cold.served()
                return result
            except RerankerEndpointError as error:
                if error.no_capacity:
                    pause = cold.pause(error)
                    if pause >= (deadline.remaining() or float("inf")):
                        raise deadline.error(self.endpoint_name) from error
                    time.sleep(pause)
                    continue
                delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))
                if not error.retryable or attempt == self.max_attempts:
                    raise
                if delay >= (deadline.remaining() or float("inf")):
                    raise deadline.error(self.endpoint_name) from error
                logger.info(
                    "endpoint %s busy (%s); retry %d of %d in %.2f s",
                    self.endpoint_name,
                    error.status or error.error_code,
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                time.sleep(delay)
                attempt += 1

    def _invoke_once(
        self, request: Request, deadline: Deadline, read: Callable[[IO[bytes]], Any] | None
    ) -> Any:
        invoke_kwargs = self._invoke_kwargs()
        body, request_id = send(
            self.client,
            request.body,
            invoke_kwargs,
            self._loopback,
            self.max_response_bytes,
            deadline,
        )
        where = {"endpoint_name": self.endpoint_name, "request_id": request_id}
        if read is not None:
            return read_response(read, body, where)
        return checked_scores(self.content_handler, body, len(request.indices), where)


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
