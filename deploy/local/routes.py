"""The local server's request handling: the routes, what each answers, and the
runtime's own answers as botocore parses them.

``server.py`` holds the server (connections, the model's load state, the process entry);
``request_reading.py`` how a request is read and checked before a route sees it.

``sagemaker-runtime`` speaks rest-json: the error code travels in ``x-amzn-ErrorType`` and
the body carries ``Message`` (and, for ``ModelError``, the container's original status and
message). The client tests' stand-in runtime answers through ``model_error`` too.
"""

from __future__ import annotations

import io
import json
import logging
import time
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import unquote

from sagemaker_reranker.deploy.local.backend import BackendResponse, Invocation, InvocationTimeout
from sagemaker_reranker.deploy.local.components import (
    COMPONENT_HEADER,
    NO_HEADER,
    Hosted,
    unknown_component,
)
from sagemaker_reranker.deploy.local.request_reading import (
    DeadlineSocket,
    Refusal,
    body_length,
    custom_attributes,
    escape,
    has_body,
    header_safe,
)
from sagemaker_reranker.deploy.platform import CONTAINER, VARIANT
from sagemaker_reranker.inference.reranker_contract import (
    CUSTOM_ATTRIBUTES,
    JSON,
    NO_CAPACITY,
    RERANK_PATHS,
)

if TYPE_CHECKING:
    from sagemaker_reranker.deploy.local.server import LocalServer

logger = logging.getLogger("sagemaker_reranker.local")


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


def model_error(
    endpoint: str,
    status: int,
    message: str,
    ids: dict[str, str],
    kind: str,
    said: str | None = None,
) -> Reply:
    """The runtime's ModelError: the container's status and body (``message``) wrapped in a
    424; ``said`` is the container's error in words, for the log (else the body)."""
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
        reason=f"ModelError: container answered {status}: {said or message}",
        OriginalStatusCode=status,
        OriginalMessage=message,
        LogStreamArn=log_stream,
    )


class RequestHandler(BaseHTTPRequestHandler):
    """Routes one connection's requests; writes one access-log line per request."""

    server: LocalServer
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    server_version = "sagemaker-reranker-local"

    def setup(self) -> None:
        super().setup()
        self.deadline = time.monotonic() + self.server.config.request_timeout
        plain, raw = self.rfile, DeadlineSocket(self.connection, lambda: self.deadline)
        self.rfile = io.BufferedReader(raw)
        plain.close()

    def handle_one_request(self) -> None:
        """One request, which must arrive whole (line, headers, body) before its deadline."""
        self.deadline = time.monotonic() + self.server.config.request_timeout
        super().handle_one_request()

    def do_GET(self) -> None:
        self._serve(self._ping if self.path.split("?")[0] == "/ping" else self._not_found)

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path == "/invocations" or path in RERANK_PATHS:  # the same handler, by a base URL
            self._serve(self._container_invocation)
            return
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "endpoints" and parts[3] == "invocations":
            name = unquote(parts[2])
            self._serve(lambda: self._runtime_invocation(name))
            return
        self._serve(self._not_found)

    def _serve(self, route) -> None:
        started = time.perf_counter()
        self.pairs: int | None = None
        reply = route()
        # Logged before the answer goes out, so a client that has its answer finds the line.
        # SageMaker pings every few seconds, and a starting endpoint is polled until loaded:
        # only invocations and failures make the access log at INFO.
        loading = self.path == "/ping" and reply.status == 503
        routine = self.command == "GET" and (reply.status < 400 or loading)
        level = logging.DEBUG if routine else logging.INFO
        logger.log(
            level,
            "%s %s %d pairs=%s %.1fms%s",
            escape(self.command),
            escape(self.path.split("?")[0]),
            reply.status,
            "-" if self.pairs is None else self.pairs,
            (time.perf_counter() - started) * 1000,
            f" reason={escape(reply.reason)[:300]!r}" if reply.reason else "",
        )
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.connection.settimeout(self.server.config.request_timeout)  # a client not reading
        content_type = reply.content_type if header_safe(reply.content_type) else "text/plain"
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for key, value in (reply.headers or {}).items():
            if header_safe(value):
                self.send_header(key, value)
            else:  # never let a control character end a header early
                logger.warning("dropped response header %s: not printable ASCII", key)
        if reply.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        try:
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            logger.info("the client went away before its %d answer was sent", reply.status)
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        """No ``100 Continue`` for a body that will be refused: the client need not send it."""
        if isinstance(body_length(self.headers, self.server.config.max_body_bytes), Refusal):
            return True  # do_POST answers without reading
        return super().handle_expect_100()

    def log_message(self, format: str, *args) -> None:
        """The stdlib's lines (malformed requests, timeouts) at debug, escaped."""
        logger.debug("%s", escape(format % args))

    # ----------------------------------------------------------------- routes

    def _not_found(self) -> Reply:
        return self._refuse(404, f"no route for {self.command} {escape(self.path)}")

    def _ping(self) -> Reply:
        if has_body(self.headers):
            return self._refuse(400, "GET /ping takes no body")
        state, reason = self.server.state()
        status = {"healthy": 200, "loading": 503, "failed": 500}[state]
        payload = {"status": state} if state == "healthy" else {"status": state, "reason": reason}
        if self.server.components:
            payload["components"] = {n: h.state()[0] for n, h in self.server.components.items()}
        return Reply.json(status, payload, reason=None if state == "healthy" else reason)

    def _container_invocation(self) -> Reply:
        host = self._host()
        if isinstance(host, str):
            return self._refuse(400, host)
        body = self._read_body()
        if isinstance(body, Refusal):
            return self._refuse(body.status, body.message)
        state, reason = host.state()
        if state != "healthy":
            message = f"model is not ready ({state}): {reason}"
            return Reply.json(503, {"message": message}, reason=message)
        answer = self._invoke(body, host)
        if answer == NO_CAPACITY:
            return Reply.json(503, {"message": NO_CAPACITY}, reason=NO_CAPACITY)
        if answer is None:
            message = timeout_message(self.server.config.invocation_timeout)
            return Reply.json(408, {"message": message}, reason=message)
        return Reply(
            answer.status,
            answer.body,
            answer.content_type,
            self._attributes_header(answer),
            reason=_log_reason(answer),
        )

    def _runtime_invocation(self, name: str) -> Reply:
        ids = {"x-amzn-RequestId": str(uuid.uuid4())}
        endpoint = self.server.config.endpoint_name
        if name != endpoint:
            # The runtime's words, then what a user of the local server needs: its one name.
            message = (
                f"Endpoint {escape(name)} of account 000000000000 not found. This local server "
                f"serves one endpoint, {endpoint!r} (set by serve --endpoint-name)."
            )
            return self._refuse(
                400, message, lambda m: runtime_error(400, "ValidationError", m, ids)
            )
        host = self._host()
        if isinstance(host, str):
            return self._refuse(400, host, lambda m: runtime_error(400, "ValidationError", m, ids))
        body = self._read_body()
        if isinstance(body, Refusal):
            # Bad input is a ValidationError; an oversized body gets the runtime's bare 413.
            if body.status == 400:
                shape = lambda m: runtime_error(400, "ValidationError", m, ids)  # noqa: E731
            else:
                shape = lambda m: Reply.json(body.status, {"message": m}, headers=ids)  # noqa: E731
            return self._refuse(body.status, body.message, shape)
        state, reason = host.state()
        if self.server.components and state in ("cold", "loading"):
            return self._no_capacity(host, ids)
        if state == "loading":
            message = f"Endpoint {name} is still loading its model. Wait and try again."
            return runtime_error(429, "ModelNotReadyException", message, ids, reason=message)
        if state == "failed":
            message = f"Endpoint {name} is not in service: {reason}"
            return runtime_error(400, "ValidationError", message, ids, reason=message)
        answer = self._invoke(body, host)
        if answer is None:
            message = timeout_message(self.server.config.invocation_timeout)
            return model_error(endpoint, 0, message, ids, kind="server")
        if answer == NO_CAPACITY:  # scaled in between the check above and the call
            return self._no_capacity(host, ids)
        if answer.status >= 400:
            text = answer.body.decode("utf-8", errors="replace")
            kind = "client" if answer.status < 500 else "server"
            return model_error(endpoint, answer.status, text, ids, kind, _log_reason(answer))
        headers = {**ids, "x-Amzn-Invoked-Production-Variant": VARIANT}
        headers.update(self._attributes_header(answer) or {})
        return Reply(answer.status, answer.body, answer.content_type, headers)

    # ----------------------------------------------------------------- helpers

    def _host(self) -> Hosted | str:
        """The model container this request is for, or why there is none: an endpoint that
        hosts components routes by the component header, as the runtime does."""
        if not self.server.components:
            return self.server.hosts[""]
        name = self.headers.get(COMPONENT_HEADER)
        if not name:
            return NO_HEADER
        host = self.server.components.get(name)
        return host if host is not None else unknown_component(escape(name))

    def _no_capacity(self, host: Hosted, ids: dict[str, str]) -> Reply:
        """A component without a worker: the runtime's answer, and (as the runtime's
        NoCapacityInvocationFailures alarm does) a worker starting."""
        host.wake(f"component {self.headers.get(COMPONENT_HEADER)}")
        return runtime_error(400, "ValidationError", NO_CAPACITY, ids)

    def _refuse(self, status: int, message: str, shape=None) -> Reply:
        """Refuse without reading the body: the connection closes, so its bytes are never
        parsed as a request."""
        reply = shape(message) if shape else Reply.json(status, {"message": message})
        reply.close = reply.close or has_body(self.headers) or status in (400, 408, 411, 413)
        reply.reason = reply.reason or message
        return reply

    def _read_body(self) -> bytes | Refusal:
        """The whole body, or why not: refused from the headers, or not arrived in time."""
        length = body_length(self.headers, self.server.config.max_body_bytes)
        if isinstance(length, Refusal):
            return length
        attributes = custom_attributes(self.headers)
        if isinstance(attributes, Refusal):
            return attributes
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            body = b""
        if len(body) < length:
            timeout = self.server.config.request_timeout
            return Refusal(408, f"the request body did not arrive within {timeout:g} s")
        return body

    def _invoke(self, body: bytes, host: Hosted | None = None) -> BackendResponse | str | None:
        """The answer of ``host``'s backend (the plain endpoint's by default; a backend fault
        as a JSON 500); None after the timeout, ``NO_CAPACITY`` when it has no worker."""
        host = host or self.server.hosts[""]
        try:
            request = Invocation(
                body,
                self.headers.get("Content-Type"),
                self.headers.get("Accept"),
                self.headers.get(CUSTOM_ATTRIBUTES),
            )
            answer = host.invoke(request, self.server.config.invocation_timeout)
            if answer is None:
                return NO_CAPACITY
        except InvocationTimeout:
            return None
        except Exception as error:  # a backend fault must not reset the client's connection
            logger.error("backend failed: %s", type(error).__name__)
            logger.debug("%s", traceback.format_exc())
            return BackendResponse.error(500, f"the model server failed: {type(error).__name__}")
        if answer.status == 200 and answer.content_type.startswith(JSON):
            self.pairs = _score_count(answer.body)
        return answer

    @staticmethod
    def _attributes_header(answer: BackendResponse) -> dict[str, str] | None:
        if answer.custom_attributes is None:
            return None
        return {CUSTOM_ATTRIBUTES: answer.custom_attributes}


def _log_reason(answer: BackendResponse) -> str | None:
    """For the log: what the container said when it refused (its words, else its body)."""
    if answer.status < 400:
        return None
    return answer.message or answer.body[:2000].decode("utf-8", errors="replace")


def _score_count(body: bytes) -> int | None:
    """How many scores a handler's 200 holds, for the access log, without parsing the body
    (the client does that): ``{"scores": [n, ...]}`` of plain numbers has one comma fewer."""
    prefix, suffix = b'{"scores": [', b"]}"
    if not (body.startswith(prefix) and body.endswith(suffix)):
        return None
    if len(body) == len(prefix) + len(suffix):
        return 0
    return body.count(b",") + 1
