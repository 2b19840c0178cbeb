"""The local server's HTTP hygiene, tried with raw sockets on 127.0.0.1: request smuggling,
bodies where none belong, malformed lengths, slow and stalled clients, connection floods,
header injection through custom attributes, control characters in the log, clients that
give up. Every socket is bounded by a timeout and closed."""

from __future__ import annotations

import json
import socket
import struct
import time
from contextlib import closing
from pathlib import Path

import pytest

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open

REQUEST_TIMEOUT = 3.0
MAX_CONNECTIONS = 6
PAIRS = json.dumps({"pairs": [["what is the plan?", "the economy"]]}).encode()


@pytest.fixture(scope="module")
def endpoint(tiny_archive: Path):
    with LocalEndpoint(
        model_data=tiny_archive,
        request_timeout=REQUEST_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
    ) as started:
        yield started
    assert not port_open("127.0.0.1", started.port)


def connect(endpoint: LocalEndpoint, timeout: float = 15.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", endpoint.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def exchange(endpoint: LocalEndpoint, data: bytes, timeout: float = 15.0) -> bytes:
    """Send ``data`` and read until the server closes the connection (or ``timeout``)."""
    with closing(connect(endpoint, timeout)) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        chunks.append(b"<client timed out waiting>")
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def statuses(reply: bytes) -> list[int]:
    """The status of every response in ``reply`` (one per ``HTTP/1.1 NNN`` line)."""
    return [int(line.split()[1]) for line in reply.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def post(path: str, headers: str, body: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode() + body


SMUGGLED = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def test_transfer_encoding_with_content_length_is_refused_and_closes(endpoint) -> None:
    chunked = b"0\r\n\r\n" + SMUGGLED
    request = post(
        "/invocations",
        "Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        chunked,
    )
    reply = exchange(endpoint, request)
    assert statuses(reply) == [411], reply
    assert b"Connection: close" in reply and b"Transfer-Encoding" in reply


def test_body_on_a_route_that_takes_none_is_refused_and_closes(endpoint) -> None:
    request = f"GET /ping HTTP/1.1\r\nContent-Length: {len(SMUGGLED)}\r\n\r\n".encode() + SMUGGLED
    reply = exchange(endpoint, request)
    assert statuses(reply) == [400], reply
    assert b"takes no body" in reply
    unknown = f"POST /nowhere HTTP/1.1\r\nContent-Length: {len(SMUGGLED)}\r\n\r\n".encode()
    assert statuses(exchange(endpoint, unknown + SMUGGLED)) == [404]


@pytest.mark.parametrize("length", ["1_000", " +7", "\uff17", "-1", "7, 7", "0x10", "1e3"])
def test_content_length_must_be_ascii_digits(endpoint, length) -> None:
    head = b"POST /invocations HTTP/1.1\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: " + length.encode("utf-8") + b"\r\n\r\n"
    reply = exchange(endpoint, head + PAIRS)
    assert statuses(reply) == [400], reply
    # The refusal's own words: every reply has a Content-Length header, and a handler's
    # 400 for a body cut at a laxly parsed length is a 400 too.
    assert b"invalid Content-Length" in reply and b"expected digits" in reply, reply


def test_two_content_lengths_are_refused(endpoint) -> None:
    headers = f"Content-Length: {len(PAIRS)}\r\nContent-Length: 3\r\n"
    reply = exchange(endpoint, post("/invocations", headers) + PAIRS)
    assert statuses(reply) == [400], reply
    assert b"more than one Content-Length header" in reply, reply


def test_a_body_shorter_than_its_length_gets_408_within_the_deadline(endpoint) -> None:
    request = post("/invocations", "Content-Type: application/json\r\nContent-Length: 100\r\n")
    reply = exchange(endpoint, request + PAIRS[:10], timeout=REQUEST_TIMEOUT * 4)
    assert statuses(reply) == [408], reply
    assert b"did not arrive within" in reply


def test_a_request_dripped_byte_by_byte_is_cut_off_at_its_deadline(endpoint) -> None:
    """A per-read timeout never trips for a client sending a byte every fraction of a second;
    the per-request deadline does: the server closes long before the drip would end."""
    with closing(connect(endpoint)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nX-Drip: ")
        closed = False
        for _ in range(int(REQUEST_TIMEOUT * 3 / 0.2)):
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
        if not closed:
            sock.settimeout(1.0)
            try:
                closed = sock.recv(1) == b""
            except ConnectionResetError:
                closed = True
            except TimeoutError:
                closed = False
    assert closed, "the server kept reading a request past its deadline"


def server_threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def hold_a_slot(endpoint: LocalEndpoint) -> socket.socket:
    """A keep-alive connection with a served request (earlier tests' connections may take a
    moment to leave the server: a 503 is retried)."""
    for _ in range(100):
        sock = connect(endpoint)
        sock.sendall(SMUGGLED)
        if sock.recv(65536).startswith(b"HTTP/1.1 200"):
            return sock
        sock.close()
        time.sleep(0.1)
    raise AssertionError("no free connection slot")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_connections_beyond_the_cap_get_503_without_a_thread_each(endpoint) -> None:
    baseline = server_threads(endpoint.pid)
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):  # each holds a slot: a keep-alive connection, answered
            held.append(hold_a_slot(endpoint))
        extra = []
        try:
            for _ in range(3 * MAX_CONNECTIONS):
                sock = connect(endpoint)
                extra.append(sock)
            busy = [read_all(sock) for sock in extra]
            assert all(statuses(reply) == [503] for reply in busy), busy[:3]
            assert server_threads(endpoint.pid) <= baseline + MAX_CONNECTIONS + 2
        finally:
            for sock in extra:
                sock.close()
        held.pop().close()  # a slot frees up: the next connection is served
        for _ in range(50):
            reply = exchange(
                endpoint, SMUGGLED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
            )
            if statuses(reply) == [200]:
                break
            time.sleep(0.1)
        assert statuses(reply) == [200]
    finally:
        for sock in held:
            sock.close()


def custom(value: bytes) -> bytes:
    head = post(
        "/invocations",
        f"Content-Type: application/json\r\nContent-Length: {len(PAIRS)}\r\nConnection: close\r\n",
    )
    return (
        head.replace(b"\r\n\r\n", b"\r\nX-Amzn-SageMaker-Custom-Attributes: " + value + b"\r\n\r\n")
        + PAIRS
    )


def test_custom_attributes_cannot_inject_headers(endpoint) -> None:
    folded = exchange(endpoint, custom(b"trace=1\r\n Injected: yes"))  # an obs-fold continuation
    assert statuses(folded) == [400], folded
    assert b"\r\nInjected:" not in folded and b"printable ASCII" in folded
    for bad in (b"x" * 1025, "caf\u00e9".encode("latin-1"), b"a\x01b"):
        assert statuses(exchange(endpoint, custom(bad))) == [400]
    ok = exchange(endpoint, custom(b"t" * 1024))
    assert statuses(ok) == [200] and b"X-Amzn-SageMaker-Custom-Attributes: " + b"t" * 1024 in ok


def test_control_characters_in_the_url_are_escaped_in_the_log(endpoint) -> None:
    exchange(endpoint, b"GET /ping\x1b[31mred\x7f HTTP/1.1\r\nConnection: close\r\n\r\n")
    log = endpoint.log_path.read_text(encoding="utf-8", errors="replace")
    assert "\x1b" not in log and "\x7f" not in log
    assert "/ping\\x1b[31mred\\x7f 404" in log


def test_a_client_that_gives_up_leaves_no_traceback(endpoint) -> None:
    body = json.dumps({"pairs": [["plan " * 30, "the economy " * 120]] * 64}).encode()
    request = post(
        "/invocations", f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n", body
    )
    with closing(connect(endpoint)) as sock:
        sock.sendall(request)
        # Close with a reset before the answer: the server's write then fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    for _ in range(200):
        log = endpoint.log_path.read_text(encoding="utf-8", errors="replace")
        if "went away" in log or "Traceback" in log:
            break
        time.sleep(0.1)
    assert "Traceback" not in log and "BrokenPipeError" not in log
    assert "the client went away before its 200 answer was sent" in log


def test_ping_says_healthy_and_nothing_more(endpoint) -> None:
    status, payload = endpoint.ping()
    assert (status, payload) == (200, {"status": "healthy"})


def test_handler_errors_are_json_and_the_424_log_line_names_the_reason(endpoint) -> None:
    status, body, headers = endpoint.request("POST", "/invocations", b'{"pairs": [["a"]]}')
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert "pairs[0]" in json.loads(body)["message"]
    path = f"/endpoints/{endpoint.endpoint_name}/invocations"
    status, body, _ = endpoint.request("POST", path, b'{"pairs": "nope"}')
    assert status == 424 and json.loads(body)["ErrorCode"] == "ModelError"
    log = endpoint.log_path.read_text(encoding="utf-8")
    line = next(line for line in log.splitlines() if f"POST {path} 424" in line)
    assert "reason=" in line and "'pairs' must be a list" in line
