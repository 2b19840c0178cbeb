"""The client's two bounds against a real HTTP server on 127.0.0.1 that misbehaves: a body
larger than any reranker's answer, a body trickled a byte a second, throttling that never
ends. Each call ends in one ``RerankerEndpointError`` line."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sagemaker_reranker.client import RerankerEndpointError, SagemakerEndpointCrossEncoder
from sagemaker_reranker.client.reading import READ_CHUNK

PAIRS = [("q", "a"), ("q", "b"), ("q", "c")]
LIMIT = 256 * 1024


class Misbehaving(BaseHTTPRequestHandler):
    """``/endpoints/<behaviour>/invocations``: the endpoint's name picks the misbehaviour."""

    protocol_version = "HTTP/1.1"
    stop: threading.Event
    hung_up: threading.Event
    sent: dict[str, int]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        behaviour = self.path.split("/")[2]
        try:
            getattr(self, f"_{behaviour.replace('-', '_')}")()
        except OSError:  # the client hung up, as it should
            self.hung_up.set()

    def _declared_huge(self) -> None:
        self._head(200, length=1 << 30)
        self._send(b" " * READ_CHUNK, times=64)

    def _streamed_huge(self) -> None:  # chunked: no length to refuse up front
        self._head(200, chunked=True)
        for _ in range(4096):  # at most 256 MiB, unless the client stops reading
            if self.stop.is_set():
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (READ_CHUNK, b" " * READ_CHUNK))
            self.sent["bytes"] += READ_CHUNK

    def _trickle(self) -> None:
        body = json.dumps({"scores": [0.0] * len(PAIRS)}).encode()
        self._head(200, length=len(body))
        for byte in body:
            if self.stop.wait(1.0):
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            self.sent["bytes"] += 1

    def _throttled(self) -> None:
        body = json.dumps({"message": "slow down"}).encode()
        self.sent["bytes"] += 1
        self._head(429, length=len(body), error="ThrottlingException")
        self.wfile.write(body)

    def _head(self, status: int, length=None, chunked=False, error=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if error:
            self.send_header("x-amzn-ErrorType", error)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, data: bytes, times: int) -> None:
        for _ in range(times):
            if self.stop.is_set():
                return
            self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, int]]]:
    stop, hung_up = threading.Event(), threading.Event()
    sent = {"bytes": 0}
    handler = type("Handler", (Misbehaving,), {"stop": stop, "hung_up": hung_up, "sent": sent})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", sent, hung_up
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def model(url: str, name: str, **fields) -> SagemakerEndpointCrossEncoder:
    return SagemakerEndpointCrossEncoder(endpoint_name=name, endpoint_url=url, **fields)


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name", ["declared-huge", "streamed-huge"])
def test_a_body_over_max_response_bytes_is_refused_as_it_arrives(server, name) -> None:
    url, sent, hung_up = server
    with pytest.raises(RerankerEndpointError) as error:
        model(url, name, max_response_bytes=LIMIT).score(PAIRS)
    assert error.value.error_code == "ResponseTooLarge"
    assert f"exceeds max_response_bytes ({LIMIT} bytes)" in one_line(error)
    # The client stopped reading and hung up: the server could not send its 256 MiB.
    assert hung_up.wait(timeout=30)
    assert sent["bytes"] < 64 * 1024 * 1024


def test_the_default_cap_is_a_little_above_the_runtimes_6_mib() -> None:
    default = SagemakerEndpointCrossEncoder.model_fields["max_response_bytes"].default
    assert 6 * 1024 * 1024 < default <= 8 * 1024 * 1024


@pytest.mark.parametrize("calls", ["score", "ascore"])
def test_a_trickled_body_ends_at_the_calls_timeout(server, calls) -> None:
    url, sent, hung_up = server
    reranker = model(url, "trickle", timeout=2.5, config=None)
    with pytest.raises(RerankerEndpointError) as error:
        if calls == "score":
            reranker.score(PAIRS)
        else:
            import asyncio

            asyncio.run(reranker.ascore(PAIRS))
    assert error.value.error_code == "Timeout"
    assert "within the call's timeout (2.5 s, retries included)" in one_line(error)
    body = len(json.dumps({"scores": [0.0] * len(PAIRS)}))
    assert sent["bytes"] < body  # ended before the trickle did, by the deadline
    # ... and the request's thread let go of the connection too, not only the caller.
    assert hung_up.wait(timeout=body), "the client kept reading after its deadline"
    reranker.close(wait=False)


def test_the_timeout_includes_retries_and_backoff(server) -> None:
    url, sent, _ = server
    reranker = model(
        url, "throttled", timeout=1.0, max_attempts=20, backoff_base=0.2, backoff_max=0.3
    )
    with pytest.raises(RerankerEndpointError) as error:
        reranker.score(PAIRS)
    assert error.value.error_code == "Timeout"
    one_line(error)
    reranker.close(wait=True)  # the request's thread stops retrying at the deadline too
    assert 1 <= sent["bytes"] < 20, "retried until max_attempts, past the deadline"
