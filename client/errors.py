"""``RerankerEndpointError``: every endpoint failure, with the endpoint's real status and message.

The SageMaker runtime reports a container's error as ``ModelError`` (HTTP 424) carrying the
container's ``OriginalStatusCode`` and ``OriginalMessage``. The Hugging Face container on AWS
turns every handler error into a 400 whose message wraps the handler's own error, for example
``{"code": 400, "message": "(413, 'request has 2000 pairs ...', '...')"}``. This module parses
that back, so users see ``status=413`` and the handler's message rather than an opaque 400.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import KW_ONLY, dataclass, replace

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from sagemaker_reranker.inference.reranker_contract import NO_CAPACITY_PREFIX

# Statuses that mean "too busy now, try again later"; never a verdict on the request itself.
THROTTLING_STATUSES = frozenset({429, 503})
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ModelNotReadyException",
    }
)
_WRAPPED = re.compile(r"^\((\d{3}),\s*(['\"])(.*)", re.DOTALL)


@dataclass(eq=False, repr=False)  # an exception compares by identity and shows its args
class RerankerEndpointError(RuntimeError):
    """A failed reranker call: the endpoint's status and message, and the AWS request id."""

    message: str
    """The cause, unwrapped from the container's error when it wrapped one."""
    _: KW_ONLY
    status: int | None = None
    """The cause's status (the handler's 413, say, not the container's 400)."""
    retryable: bool = False
    """Only throttling, and connection failures before the request was sent."""
    endpoint_name: str | None = None
    request_id: str | None = None
    error_code: str | None = None
    """What the runtime itself reported: ``error_code``, ``http_status``, and for a
    container's error (``ModelError``) ``original_status`` and ``original_message``."""
    http_status: int | None = None
    original_status: int | None = None
    original_message: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    @property
    def no_capacity(self) -> bool:
        """The runtime's answer while an inference component scales from zero."""
        return self.error_code == "ValidationError" and self.message.startswith(NO_CAPACITY_PREFIX)

    def __str__(self) -> str:
        where = f"endpoint {self.endpoint_name!r}" if self.endpoint_name else "endpoint"
        status = f" ({self.status})" if self.status is not None else ""
        request = f" [request id {self.request_id}]" if self.request_id else ""
        return f"{where} failed{status}: {self.message}{request}"

    @classmethod
    def from_client_error(
        cls, error: ClientError, endpoint_name: str | None = None
    ) -> RerankerEndpointError:
        """Build the error from botocore's ``ClientError``, unwrapping the container's message."""
        response = error.response
        details = response.get("Error", {})
        metadata = response.get("ResponseMetadata", {})
        reported = cls(
            details.get("Message") or str(error),
            request_id=metadata.get("RequestId"),
            endpoint_name=endpoint_name,
            error_code=details.get("Code") or None,
            http_status=metadata.get("HTTPStatusCode"),
            original_status=_as_int(response.get("OriginalStatusCode")),
            original_message=response.get("OriginalMessage"),
        )
        # A container's error (ModelError) carries its own status; the runtime's is 424.
        container = reported.original_status is not None
        status, message = unwrap_container_error(
            reported.original_status if container else reported.http_status,
            reported.original_message
            if reported.original_message is not None
            else reported.message,
        )
        code = reported.error_code
        retryable = code in THROTTLING_CODES or (
            code == "ModelError" and reported.original_status in THROTTLING_STATUSES
        )
        if code != "ModelError" and reported.http_status in THROTTLING_STATUSES:
            retryable = True
        return replace(reported, message=message, status=status, retryable=retryable)


def unwrap_container_error(status: int | None, message: str) -> tuple[int | None, str]:
    """The handler's own (status, message) inside a container's error body, when one is there.

    Understands the model server's JSON body (``{"code", "type", "message"}``), TEI's
    (``{"error", "error_type"}``) and the Hugging Face toolkit's ``"(413, 'msg', 'msg')"``
    rendering of ``GenericInferenceToolkitError``. Anything else is returned unchanged.
    """
    text = message.strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("message", body.get("error"))
        if isinstance(inner, str):
            text = inner.strip()
            if status is None and isinstance(body.get("code"), int):
                status = body["code"]
    match = _WRAPPED.match(text)
    if not match:
        return status, text
    try:
        parts = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        # Truncated by the runtime: keep what follows the status, minus the opening quote.
        return int(match.group(1)), match.group(3).rstrip(")'\" ")
    if isinstance(parts, tuple) and len(parts) >= 2 and isinstance(parts[1], str):
        return int(parts[0]), parts[1]
    return status, text


def _as_int(value: object) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def transport_error(
    error: BotoCoreError, endpoint_name: str | None, loopback: bool
) -> RerankerEndpointError:
    """botocore's failures below HTTP, worded for the caller. A read timeout is not retried
    (the endpoint may still be running the request); a connection that never reached the
    endpoint is, unless the endpoint is a loopback one: a local server that is not running,
    which retrying only takes longer to say."""
    if isinstance(error, ReadTimeoutError):
        return RerankerEndpointError(
            f"no response within the read timeout ({error}); not retried, since the "
            "endpoint may still be running it",
            endpoint_name=endpoint_name,
            error_code="ReadTimeout",
        )
    if isinstance(error, BotoConnectionError):
        hint = " (is the local endpoint running?)" if loopback else ""
        return RerankerEndpointError(
            f"{error}{hint}",
            endpoint_name=endpoint_name,
            error_code="ConnectionError",
            retryable=not loopback,
        )
    return RerankerEndpointError(str(error), endpoint_name=endpoint_name)
