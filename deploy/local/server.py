"""Local mode server: the SageMaker container contract and runtime API in front of a backend.

The server runs as its own process (``python -m sagemaker_reranker.deploy.local.server``),
started by ``LocalEndpoint`` or ``sagemaker-reranker serve`` with ``cwd`` set to a private
temp dir and ``PYTHONPATH=<model>/code``: SageMaker imports the handler as the module
``inference``, which this repository's own ``inference/`` folder would shadow in-process.

Routes, as an endpoint's container and the runtime in front of it answer them:

``GET /ping``
    200 once ``model_fn`` (and its warm-up) succeeded; 503 while loading; 500 with the reason
    when the model failed to load (the server stays up, as SageMaker's health check sees it).
``POST /invocations``
    the container contract: the handler's status, body and content type as they are.
``POST /endpoints/{name}/invocations``
    the ``sagemaker-runtime`` InvokeEndpoint API, so boto3 with ``endpoint_url`` works
    unchanged: 200 passes the body through; a handler error becomes ``ModelError`` (424).

Bodies over ``max_body_bytes`` (6 MiB, the real-time limit) are refused with 413 before the
handler sees them; an invocation running past ``invocation_timeout`` (60 s on AWS) is
reported as the runtime reports it while the worker finishes in the background.

How the runtime route reports what is not a 200 (as AWS does, where known):

=============================  =======================================================
handler 4xx/5xx                424 ``ModelError`` with ``OriginalStatusCode``/``Message``
invocation timeout             424 ``ModelError``, original status 0, "Your invocation
                               timed out while waiting for a response from container"
                               (what AWS answers; the container route answers 408)
body over the limit            bare 413 "HTTP content length exceeded N bytes."
unknown endpoint name          400 ``ValidationError`` "Endpoint X of account ... not found."
model still loading            429 ``ModelNotReadyException`` (container route: 503)
model failed to load           400 ``ValidationError`` "... not in service: <reason>" (503)
=============================  =======================================================

The model behind it is a backend (``local/backend.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from sagemaker_reranker.deploy.local.backend import (
    SERVERS,
    Backend,
    BackendResponse,
    InvocationTimeout,
    make_backend,
)
from sagemaker_reranker.deploy.local.net import bind_warning
from sagemaker_reranker.deploy.local.runtime_errors import (
    Reply,
    model_error,
    runtime_error,
    timeout_message,
)
from sagemaker_reranker.deploy.platform import (
    CUSTOM_ATTRIBUTES,
    INVOCATION_TIMEOUT,
    JSON,
    MAX_BODY_BYTES,
    VARIANT,
)
from sagemaker_reranker.deploy.settings import parse_env

logger = logging.getLogger("sagemaker_reranker.local")


@dataclass(frozen=True)
class FrontConfig:
    """What the runtime front enforces: the endpoint's name and AWS's per-call limits."""

    endpoint_name: str
    invocation_timeout: float = INVOCATION_TIMEOUT
    max_body_bytes: int = MAX_BODY_BYTES


class LocalServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the backend and its load state."""

    daemon_threads = True
    request_queue_size = 128  # the stdlib's 5 resets connections under a burst of clients

    def __init__(self, address: tuple[str, int], backend: Backend, config: FrontConfig) -> None:
        super().__init__(address, RequestHandler)
        self.backend = backend
        self.config = config
        self.loaded = threading.Event()

    def load(self) -> None:
        """Load the model (in the background, so /ping can say 'loading' meanwhile)."""
        started = time.perf_counter()
        self.backend.start()
        self.loaded.set()
        ok, reason = self.backend.health()
        seconds = time.perf_counter() - started
        if ok:
            logger.info("model loaded in %.1f s; ready", seconds)
        else:
            logger.error("model failed to load after %.1f s: %s", seconds, reason)

    def state(self) -> tuple[str, str]:
        """``("loading" | "healthy" | "failed", reason)``."""
        if not self.loaded.is_set():
            return "loading", "model is loading"
        ok, reason = self.backend.health()
        return ("healthy", reason) if ok else ("failed", reason)


class RequestHandler(BaseHTTPRequestHandler):
    """Routes one connection's requests; writes one access-log line per request."""

    server: LocalServer
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    timeout = 60  # seconds a client may take to send its request
    server_version = "sagemaker-reranker-local"

    def do_GET(self) -> None:
        self._serve(self._ping if self.path.split("?")[0] == "/ping" else self._not_found)

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path == "/invocations":
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
        # SageMaker pings every few seconds; only invocations make the access log at INFO.
        level = logging.DEBUG if self.command == "GET" else logging.INFO
        logger.log(
            level,
            "%s %s %d pairs=%s %.1fms",
            self.command,
            self.path.split("?")[0],
            reply.status,
            "-" if self.pairs is None else self.pairs,
            (time.perf_counter() - started) * 1000,
        )
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for key, value in (reply.headers or {}).items():
            self.send_header(key, value)
        if reply.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply.body)

    def handle_expect_100(self) -> bool:
        """No ``100 Continue`` for a body that will be refused: the client need not send it."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.config.max_body_bytes:
            return True  # do_POST answers 413 without reading
        return super().handle_expect_100()

    def log_message(self, format: str, *args) -> None:
        """Silence the stdlib's own log line; ``_serve`` writes one without query strings."""

    # ----------------------------------------------------------------- routes

    def _not_found(self) -> Reply:
        self._skip_body()
        return Reply.json(404, {"message": f"no route for {self.command} {self.path}"})

    def _ping(self) -> Reply:
        state, reason = self.server.state()
        status = {"healthy": 200, "loading": 503, "failed": 500}[state]
        return Reply.json(status, {"status": state, "reason": reason})

    def _container_invocation(self) -> Reply:
        body, refusal = self._read_body()
        if refusal is not None:
            return Reply.json(refusal[0], {"message": refusal[1]}, close=True)
        state, reason = self.server.state()
        if state != "healthy":
            return Reply.json(503, {"message": f"model is not ready ({state}): {reason}"})
        try:
            answer = self._invoke(body)
        except InvocationTimeout:
            return Reply.json(
                408, {"message": timeout_message(self.server.config.invocation_timeout)}
            )
        headers = self._attributes_header(answer)
        return Reply(answer.status, answer.body, answer.content_type, headers)

    def _runtime_invocation(self, name: str) -> Reply:
        request_id = str(uuid.uuid4())
        ids = {"x-amzn-RequestId": request_id}
        served = self.server.config.endpoint_name
        if name != served:
            self._skip_body()
            message = f"Endpoint {name} of account 000000000000 not found."
            return runtime_error(400, "ValidationError", message, ids, close=True)
        body, refusal = self._read_body()
        if refusal is not None:
            # The runtime answers an oversized body with a bare 413 (boto3: ClientError '413').
            return Reply.json(refusal[0], {"message": refusal[1]}, headers=ids, close=True)
        state, reason = self.server.state()
        if state == "loading":
            message = f"Endpoint {name} is still loading its model. Wait and try again."
            return runtime_error(429, "ModelNotReadyException", message, ids)
        if state == "failed":
            message = f"Endpoint {name} is not in service: {reason}"
            return runtime_error(400, "ValidationError", message, ids)
        try:
            answer = self._invoke(body)
        except InvocationTimeout:
            return model_error(
                self.server.config.endpoint_name,
                0,
                timeout_message(self.server.config.invocation_timeout),
                ids,
                kind="server",
            )
        if answer.status >= 400:
            text = answer.body.decode("utf-8", errors="replace")
            kind = "client" if answer.status < 500 else "server"
            return model_error(
                self.server.config.endpoint_name, answer.status, text, ids, kind=kind
            )
        headers = {**ids, "x-Amzn-Invoked-Production-Variant": VARIANT}
        headers.update(self._attributes_header(answer) or {})
        return Reply(answer.status, answer.body, answer.content_type, headers)

    # ----------------------------------------------------------------- helpers

    def _read_body(self) -> tuple[bytes, tuple[int, str] | None]:
        """The request body, or a refusal decided from Content-Length alone (never read)."""
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b"", (411, "Content-Length is required")
        try:
            length = int(raw)
        except ValueError:
            return b"", (400, f"invalid Content-Length {raw[:40]!r}")
        limit = self.server.config.max_body_bytes
        if length < 0:
            return b"", (400, f"invalid Content-Length {length}")
        if length > limit:
            return b"", (413, f"HTTP content length exceeded {limit} bytes.")
        return self.rfile.read(length), None

    def _skip_body(self) -> None:
        """Mark the connection for closing: a body we will not read must not be parsed next."""
        if self.headers.get("Content-Length") not in (None, "0"):
            self.close_connection = True

    def _invoke(self, body: bytes) -> BackendResponse:
        try:
            answer = self.server.backend.invoke(
                body,
                self.headers.get("Content-Type"),
                self.headers.get("Accept"),
                self.headers.get(CUSTOM_ATTRIBUTES),
                self.server.config.invocation_timeout,
            )
        except InvocationTimeout:
            raise
        except Exception as error:  # a backend fault must not reset the client's connection
            logger.error("backend failed: %s", type(error).__name__)
            logger.debug("%s", traceback.format_exc())
            message = f"the model server failed: {type(error).__name__}"
            return BackendResponse(500, message.encode("utf-8"), "text/plain; charset=utf-8")
        if answer.status == 200 and answer.content_type.startswith(JSON):
            self.pairs = _count_scores(answer.body)
        return answer

    @staticmethod
    def _attributes_header(answer: BackendResponse) -> dict[str, str] | None:
        if answer.custom_attributes is None:
            return None
        return {CUSTOM_ATTRIBUTES: answer.custom_attributes}


def _count_scores(body: bytes) -> int | None:
    try:
        scores = json.loads(body).get("scores")
    except (ValueError, AttributeError):
        return None
    return len(scores) if isinstance(scores, list) else None


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Local SageMaker endpoint process.")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--endpoint-name", default="local-reranker")
    parser.add_argument("--invocation-timeout", type=float, default=INVOCATION_TIMEOUT)
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    parser.add_argument("--server", choices=SERVERS, default="inprocess")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--ready-file", type=Path, help="write the bound port here when ready")
    parser.add_argument("--parent-pid", type=int, help="exit when this process goes away")
    parser.add_argument("--run-dir", type=Path, help="private dir to remove if orphaned")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Bind, load the model in the background, serve until SIGTERM/SIGINT or parent exit."""
    args = _arguments(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    env = parse_env(args.env)
    os.environ.update(env)
    warning = bind_warning(args.host)
    if warning:
        logger.warning("%s", warning)
    config = FrontConfig(args.endpoint_name, args.invocation_timeout, args.max_body_bytes)
    backend = make_backend(args.server, args.model_dir, env)
    try:
        server = LocalServer((args.host, args.port), backend, config)
    except OSError as error:
        logger.error("cannot listen on %s:%d: %s", args.host, args.port, error.strerror)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    port = server.server_address[1]
    logger.info("listening on http://%s:%d (endpoint %s)", args.host, port, config.endpoint_name)
    if args.ready_file:
        partial = args.ready_file.with_suffix(".partial")
        partial.write_text(str(port), encoding="utf-8")
        partial.replace(args.ready_file)
    threading.Thread(target=server.load, name="load", daemon=True).start()
    orphaned = False
    while not stop.wait(0.5):
        if args.parent_pid and os.getppid() != args.parent_pid:
            logger.warning("parent process %d exited; shutting down", args.parent_pid)
            orphaned = True
            break
    logger.info("shutting down")
    server.shutdown()
    server.server_close()
    backend.stop()
    if orphaned and args.run_dir:
        shutil.rmtree(args.run_dir, ignore_errors=True)  # the killed parent cannot
    return 0


if __name__ == "__main__":
    sys.exit(main())
