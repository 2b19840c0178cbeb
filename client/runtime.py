"""The ``sagemaker-runtime`` client behind ``SagemakerEndpointCrossEncoder``, and where it may talk.

An endpoint URL must be https unless its host is loopback (127.0.0.0/8, ::1, localhost): over
plain http a request carries its documents, and a signed one its session token, in clear to
whoever is on the path. A loopback URL is a local endpoint (``sagemaker-reranker serve``),
which checks no signature: requests to it go unsigned, with a placeholder region when none is
configured, so local use needs no AWS account, credentials or config. Credentials are never
invented for any other host.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import NoRegionError, ProfileNotFound

from sagemaker_reranker.inference.reranker_contract import INVOCATION_TIMEOUT, user_agent

logger = logging.getLogger(__name__)

SERVICE = "sagemaker-runtime"
# AWS recommends a socket timeout 10 s above the container's so that the client sees the
# platform's answer (an error naming the timeout) rather than a socket timeout.
DEFAULT_READ_TIMEOUT = INVOCATION_TIMEOUT + 10
# A loopback server either accepts at once or is not there: no reason to wait long.
LOOPBACK_CONNECT_TIMEOUT = 2.0
# Any region will do for a local endpoint; botocore needs one to build a client.
LOOPBACK_REGION = "us-east-1"
# botocore's own endpoint variables, in its order of precedence.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL")
# InvokeEndpoint's parameters (the SageMaker Runtime API reference).
INVOKE_PARAMETERS = frozenset(
    {
        "EndpointName",
        "Body",
        "ContentType",
        "Accept",
        "CustomAttributes",
        "TargetModel",
        "TargetVariant",
        "TargetContainerHostname",
        "InferenceId",
        "EnableExplanations",
        "InferenceComponentName",
        "SessionId",
        "PrefixAwareId",
    }
)
# The ones the client sets itself from its other fields.
RESERVED_INVOKE_PARAMETERS = frozenset({"EndpointName", "Body", "ContentType", "Accept"})


@dataclass(frozen=True)
class Credentials:
    """Explicit keys for the client (``None`` each: boto3's own chain decides)."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def as_client_kwargs(self) -> dict[str, str]:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            given, missing = (
                ("aws_access_key_id", "aws_secret_access_key")
                if self.access_key_id is not None
                else ("aws_secret_access_key", "aws_access_key_id")
            )
            raise ValueError(
                f"{given} is set (argument or environment) but {missing} is not; they go together"
            )
        kwargs = {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }
        return {key: value for key, value in kwargs.items() if value is not None}


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
        user_agent_extra=user_agent(),
    )


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) and ``localhost``; nothing that needs a resolver."""
    if not host:
        return False
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


class EndpointURLError(ValueError):
    """An endpoint URL the client will not send documents to.

    ``source`` says where the URL came from: ``"endpoint_url"`` (the argument), an
    environment variable's name or the AWS config; ``insecure``, that it is plain http to a
    host that is not loopback, which ``allow_insecure_http`` allows. A caller with names of
    its own for the argument and that opt-in (a CLI's flags) words the error with them
    through :meth:`worded`; ``str()`` uses the client's.
    """

    def __init__(self, source: str, problem: str, insecure: bool = False) -> None:
        super().__init__(source, problem, insecure)
        self.source = source
        self.problem = problem
        self.insecure = insecure

    def __str__(self) -> str:
        return self.worded()

    def worded(
        self, endpoint_url: str = "endpoint_url", opt_in: str = "allow_insecure_http=True"
    ) -> str:
        source = endpoint_url if self.source == "endpoint_url" else self.source
        remedy = f". Use https, or pass {opt_in} if you accept that" if self.insecure else ""
        return f"{source} {self.problem}{remedy}"


def check_endpoint_url(
    url: str, allow_insecure_http: bool = False, source: str = "endpoint_url"
) -> bool:
    """Refuse a URL the client should not send documents to; return whether it is loopback.

    Raises :class:`EndpointURLError` naming the problem: no http(s) scheme or host, a bad
    port, or plain http to a host that is not loopback (unless ``allow_insecure_http``).
    """
    parts = urlsplit(url.strip()) if isinstance(url, str) else None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise EndpointURLError(
            source,
            "must be a URL with http:// or https:// and a host, like http://127.0.0.1:8080; "
            f"got {url!r}",
        )
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError:
        raise EndpointURLError(source, f"has an invalid port: {url!r}") from None
    loopback = is_loopback_host(parts.hostname)
    if parts.scheme.lower() == "http" and not loopback and not allow_insecure_http:
        raise EndpointURLError(
            source,
            f"{url!r} is plain http to a host that is not loopback: documents and "
            "credentials would travel unencrypted",
            insecure=True,
        )
    return loopback


@dataclass(frozen=True)
class Target:
    """Where a client sends its requests, and whether that is a local endpoint."""

    url: str | None
    """None: AWS's own endpoint for the region (or the AWS config file's)."""
    local: bool
    """A loopback runtime: unsigned, a placeholder region, one short connect attempt."""


def runtime_target(endpoint_url: str | None, allow_insecure_http: bool = False) -> Target:
    """The URL the client will use (``endpoint_url``, else the one boto3 would take from the
    environment), checked by :func:`check_endpoint_url`.

    A loopback ``endpoint_url`` or ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` is a local
    endpoint. A loopback ``AWS_ENDPOINT_URL`` is not: it points every AWS service at an
    emulator (moto, LocalStack), which may tell accounts apart by their signed keys.
    """
    if endpoint_url is not None:
        return Target(endpoint_url, check_endpoint_url(endpoint_url, allow_insecure_http))
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return Target(None, False)
    for name in ENDPOINT_VARIABLES:
        url = os.environ.get(name)
        if url:
            loopback = check_endpoint_url(url, allow_insecure_http, name)
            return Target(url, loopback and name != "AWS_ENDPOINT_URL")
    return Target(None, False)


def client_is_loopback(client: Any) -> bool:
    """Whether a ``sagemaker-runtime`` client talks to a loopback host."""
    url = getattr(getattr(client, "meta", None), "endpoint_url", None)
    return isinstance(url, str) and is_loopback_host(urlsplit(url).hostname)


def make_runtime_client(
    *,
    max_concurrency: int,
    region_name: str | None,
    profile_name: str | None,
    endpoint_url: str | None,
    allow_insecure_http: bool,
    credentials: Credentials,
    config: Config | None,
) -> Any:
    """A ``sagemaker-runtime`` client: unsigned for a local endpoint, else boto3's usual chain.

    ``config`` is merged last, so a caller's setting wins (``signature_version="v4"`` signs
    requests to a loopback URL too, e.g. through a tunnel to AWS).
    """
    target = runtime_target(endpoint_url, allow_insecure_http)
    merged = runtime_config(max_concurrency)
    if target.local:
        merged = merged.merge(
            Config(signature_version=UNSIGNED, connect_timeout=LOOPBACK_CONNECT_TIMEOUT)
        )
    merged = merged.merge(config or Config())
    if (merged.max_pool_connections or 10) < max_concurrency:
        raise ValueError(
            f"config.max_pool_connections ({merged.max_pool_connections}) must be >= "
            f"max_concurrency ({max_concurrency})"
        )
    try:
        session = boto3.Session(profile_name=profile_name)
        # AWS_REGION, which the AWS CLI and the other SDKs read, before botocore's own.
        region = (
            region_name
            or os.environ.get("AWS_REGION")
            or session.region_name
            or (LOOPBACK_REGION if target.local else None)
        )
        signing = merged.signature_version is not UNSIGNED
        client = session.client(
            SERVICE,
            region_name=region,
            endpoint_url=target.url,
            config=merged,
            **(credentials.as_client_kwargs() if signing else {}),
        )
    except NoRegionError:
        raise ValueError(
            "no AWS region: pass region_name=..., or set AWS_REGION / AWS_DEFAULT_REGION, "
            "or a region in your AWS profile"
        ) from None
    except ProfileNotFound as error:
        raise ValueError(f"AWS profile not found: {error}") from None
    if target.url is None:  # one from the AWS config file is held to the same rule
        check_endpoint_url(client.meta.endpoint_url, allow_insecure_http, "the AWS config's URL")
    return client


def check_endpoint_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse ``endpoint_kwargs`` the client sets itself or ``invoke_endpoint`` does not take."""
    reserved = sorted(RESERVED_INVOKE_PARAMETERS & set(kwargs))
    if reserved:
        raise ValueError(
            f"endpoint_kwargs may not set {', '.join(reserved)}: the client sets them "
            "(endpoint_name, the request body and the content handler's types)"
        )
    unknown = sorted(set(kwargs) - INVOKE_PARAMETERS)
    if unknown:
        raise ValueError(
            f"endpoint_kwargs: invoke_endpoint takes no {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(INVOKE_PARAMETERS - RESERVED_INVOKE_PARAMETERS))}"
        )


def warn_about_injected_client(client: Any, max_concurrency: int) -> None:
    config = getattr(getattr(client, "meta", None), "config", None)
    if config is None:
        return
    if (config.read_timeout or 60) <= INVOCATION_TIMEOUT:
        logger.warning(
            "the sagemaker-runtime client has read_timeout=%s s, not above the platform's "
            "%g s: a slow call times out in the client first (and botocore may retry it)",
            config.read_timeout,
            INVOCATION_TIMEOUT,
        )
    if (config.max_pool_connections or 10) < max_concurrency:
        logger.warning(
            "the sagemaker-runtime client keeps %s connections, fewer than max_concurrency=%d",
            config.max_pool_connections,
            max_concurrency,
        )
