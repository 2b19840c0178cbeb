"""A loopback stand-in for the SageMaker runtime in front of the REAL handler (client tests).

It answers ``POST /endpoints/{name}/invocations`` like the runtime: the real
``inference.transform_fn`` on a real model scores the body; a handler error becomes
``ModelError`` (424) with the container's original status and message, rendered either as
the plain toolkit does (the handler's status) or as the Hugging Face container does on AWS
(every error a 400 wrapping ``str(error)``). Scripted faults (throttling, server errors) are
the AWS side's answers, for retry tests. A gate can hold requests until N are in flight, which
proves concurrency without timing. It binds 127.0.0.1 only and checks it stopped listening.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config
from handler import inference
from sagemaker_inference.errors import GenericInferenceToolkitError

from sagemaker_reranker.client.runtime import runtime_config
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.deploy.local.routes import model_error


@dataclass(frozen=True)
class Fault:
    """One scripted runtime answer: HTTP status, error code and, for ModelError, the original."""

    status: int
    code: str
    original_status: int | None = None
    message: str = "scripted fault"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RuntimeResponder:
    """The runtime API over ``transform_fn``; ``hf_container``: errors as AWS's HF image shows."""

    reranker: inference.Reranker
    hf_container: bool = False
    transform: Callable[[bytes, str, str], tuple[int, bytes]] | None = None
    faults: deque = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    gate: threading.Barrier | None = None
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _model_lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> RuntimeResponder:
        responder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                status, headers, payload = responder.answer(self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        port = self.port
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        assert not port_open("127.0.0.1", port), f"port {port} still listening after stop"

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def runtime_client(self, max_concurrency: int = 4, adaptive: bool = False, **config: object):
        """A real boto3 ``sagemaker-runtime`` client (dummy credentials) pointed here.

        The client's own settings, except that botocore's adaptive rate limiter is off unless
        asked for: after a scripted throttle it would pace every later call of the test to
        about one per second.
        """
        merged = runtime_config(max_concurrency).merge(Config(**config))
        if not adaptive:
            merged = merged.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
        return boto3.client(
            "sagemaker-runtime",
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=merged,
        )

    # ------------------------------------------------------------------ answers

    def answer(self, path: str, headers: dict[str, str], body: bytes):
        with self._lock:
            self.requests.append(Recorded(path, headers, body))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            fault = self.faults.popleft() if self.faults else None
        try:
            if self.gate is not None:
                self.gate.wait()
            if fault is not None:  # None in the script: answer this request normally
                return self._fault(fault)
            if not path.endswith("/invocations") or not path.startswith("/endpoints/"):
                return self._error(404, "UnknownOperationException", f"no route {path}")
            content_type = headers.get("Content-Type", "")
            accept = headers.get("Accept", "application/json")
            with self._model_lock:  # one worker, like the model server's
                status, payload = self._container(body, content_type, accept)
            if status == 200:
                return 200, {"Content-Type": "application/json", **_request_id()}, payload
            return self._model_error(status, payload.decode("utf-8"))
        finally:
            with self._lock:
                self._in_flight -= 1

    def _container(self, body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
        if self.transform is not None:
            return self.transform(body, content_type, accept)
        try:
            return 200, handler_body(self.reranker, body, content_type, accept)
        except GenericInferenceToolkitError as error:
            if self.hf_container:
                wrapped = {"code": 400, "type": "InternalServerException", "message": str(error)}
                return 400, json.dumps(wrapped, indent=2).encode()
            return error.status_code, error.message.encode()

    @staticmethod
    def _model_error(original_status: int, original_message: str):
        kind = "client" if original_status < 500 else "server"
        reply = model_error("x", original_status, original_message, _request_id(), kind)
        return reply.status, {"Content-Type": reply.content_type, **reply.headers}, reply.body

    def _fault(self, fault: Fault):
        if fault.code == "ModelError":
            return self._model_error(fault.original_status or 500, fault.message)
        return self._error(fault.status, fault.code, fault.message)

    @staticmethod
    def _error(status: int, code: str, message: str):
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code}
        return status, {**headers, **_request_id()}, json.dumps({"message": message}).encode()


def handler_body(reranker: inference.Reranker, body, content_type: str, accept: str) -> bytes:
    """The response body of the real ``transform_fn`` (bytes, or a ``(bytes, type)`` tuple)."""
    result = inference.transform_fn(reranker, body, content_type, accept)
    return result[0] if isinstance(result, tuple) else result


def _request_id() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}
