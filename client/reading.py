"""A call's two bounds: how many bytes a response may hold, and when the whole call ends.

botocore bounds each socket read (``read_timeout``), not a response: a body trickled a byte
at a time is awaited forever, and a body of any size is read into memory. The endpoint
never answers more than the runtime's 6 MiB, so a larger body is refused as it arrives, and
a call's deadline (``timeout``, retries and backoff included) shuts the socket of a body
still being read when it passes.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sagemaker_reranker.client.errors import RerankerEndpointError

READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Deadline:
    """When a call must have its answer; ``seconds=None``: no deadline."""

    seconds: float | None
    at: float = field(default=0.0)

    @classmethod
    def start(cls, seconds: float | None) -> Deadline:
        return cls(seconds, time.monotonic() + seconds if seconds is not None else 0.0)

    def remaining(self) -> float | None:
        return None if self.seconds is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.seconds is not None and time.monotonic() >= self.at

    def error(self, endpoint_name: str | None) -> RerankerEndpointError:
        return RerankerEndpointError(
            f"no complete answer within the call's timeout ({self.seconds:g} s, retries "
            "included); requests still running were abandoned",
            endpoint_name=endpoint_name,
            error_code="Timeout",
        )


def too_large(limit: int, endpoint_name: str | None, request_id: str | None):
    return RerankerEndpointError(
        f"the response exceeds max_response_bytes ({limit} bytes); the endpoint answers at "
        "most the runtime's 6 MiB, so this is not a reranker's answer",
        endpoint_name=endpoint_name,
        request_id=request_id,
        error_code="ResponseTooLarge",
    )


def read_body(
    response: dict[str, Any], limit: int, deadline: Deadline, endpoint_name: str | None
) -> bytes:
    """``response["Body"]`` read whole, refused past ``limit`` bytes or past ``deadline``."""
    body = response["Body"]
    request_id = response.get("ResponseMetadata", {}).get("RequestId")
    raw = getattr(body, "_raw_stream", None)
    declared = getattr(raw, "headers", {}).get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        body.close()
        raise too_large(limit, endpoint_name, request_id)
    watchdog = _Watchdog(_socket_of(raw), deadline.remaining())
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := body.read(READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large(limit, endpoint_name, request_id)
            chunks.append(chunk)
            if deadline.expired():
                raise deadline.error(endpoint_name)
    except RerankerEndpointError:
        body.close()  # the rest unread: the connection cannot go back to the pool
        raise
    except Exception:
        body.close()
        if watchdog.fired:
            raise deadline.error(endpoint_name) from None
        raise
    finally:
        watchdog.cancel()
    if watchdog.fired:  # the shut socket read as the body's end
        raise deadline.error(endpoint_name)
    return b"".join(chunks)


def _socket_of(raw: Any) -> socket.socket | None:
    """The socket under botocore's stream (urllib3's response), when there is one."""
    connection = getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _Watchdog:
    """Shuts ``sock`` when ``seconds`` pass, which ends a read blocked on it."""

    def __init__(self, sock: socket.socket | None, seconds: float | None) -> None:
        self.fired = False
        self._sock = sock
        self._timer = None
        if sock is not None and seconds is not None:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: the read ended anyway

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
