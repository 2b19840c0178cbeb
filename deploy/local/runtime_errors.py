"""The runtime's answers that are not the model's: its error shapes, as botocore parses them.

``sagemaker-runtime`` speaks rest-json: the error code travels in ``x-amzn-ErrorType`` and
the body carries ``Message`` (and, for ``ModelError``, the container's original status and
message). Local mode's front and the client tests' stand-in runtime both answer through here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sagemaker_reranker.deploy.platform import CONTAINER, VARIANT
from sagemaker_reranker.inference.reranker_contract import JSON


@dataclass
class Reply:
    """An HTTP answer: status, JSON or raw body, extra headers; ``reason`` (never sent) is
    what the access log says about an answer that is not a 200."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] | None = None
    close: bool = False
    reason: str | None = None

    @classmethod
    def json(cls, status: int, payload: dict, **kwargs) -> Reply:
        return cls(status, json.dumps(payload).encode("utf-8"), JSON, **kwargs)


def runtime_error(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str],
    close: bool = False,
    reason: str | None = None,
    **fields,
) -> Reply:
    """An error as the runtime's rest-json protocol sends it (botocore reads the header)."""
    headers = {**headers, "x-amzn-ErrorType": f"{code}:"}
    payload = {"ErrorCode": code, "Message": message, **fields}
    return Reply.json(
        status, payload, headers=headers, close=close, reason=reason or f"{code}: {message}"
    )


def timeout_message(timeout: float) -> str:
    """What the runtime says when the container did not answer in time."""
    return (
        f"Your invocation timed out while waiting for a response from container {CONTAINER}"
        f" (invocation timeout {timeout:g} s)."
    )


def model_error(endpoint: str, status: int, message: str, ids: dict[str, str], kind: str) -> Reply:
    """The runtime's ModelError: the container's status and message wrapped in a 424."""
    log_stream = (
        f"arn:aws:logs:local:000000000000:log-group:/aws/sagemaker/Endpoints/{endpoint}"
        f":log-stream:{VARIANT}/local"
    )
    wrapped = (
        f'Received {kind} error ({status}) from {CONTAINER} with message "{message}". '
        "See the local server's log for more information."
    )
    return runtime_error(
        424,
        "ModelError",
        wrapped,
        ids,
        reason=f"ModelError: container answered {status}: {container_message(message)}",
        OriginalStatusCode=status,
        OriginalMessage=message,
        LogStreamArn=log_stream,
    )


def container_message(body: str) -> str:
    """The message inside a container's error body (``{"message": ...}``), else the body."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return payload["message"]
    return body
