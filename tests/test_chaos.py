"""A bounded chaos run against a real local endpoint (127.0.0.1 only).

Four clients interleave, in a seeded order, good requests with malformed bodies, bodies over
the limit, slow readers, connections dropped in the middle of a body and clients that leave
before the answer. Afterwards: every good request got exactly the scores a quiet endpoint
gave for the same body, the server process holds no more threads or file descriptors than
before the run, and its memory (and the handler worker's) grew by less than the bounds below.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from pathlib import Path

import pytest

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.examples.speech import EXAMPLE_QUERY, speech_chunks

pytestmark = pytest.mark.slow

CLIENTS, ACTIONS = 4, 60
LIMIT = 256 * 1024  # the endpoint's body limit for this run (6 MiB on AWS)
ACTIONS_BY_WEIGHT = ["good"] * 4 + ["malformed", "oversized", "slow_reader", "dropped", "left"]
# Growth allowed over the run (measured on a 2-core machine: front < 2 MiB, worker < 10 MiB).
FRONT_RSS_BOUND = 16 * 1024 * 1024
WORKER_RSS_BOUND = 64 * 1024 * 1024
SETTLE_SECONDS = 30  # at most, for connections the clients closed to be let go


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def threads_and_fds(pid: int) -> tuple[int, int]:
    return len(list(Path(f"/proc/{pid}/task").iterdir())), len(
        list(Path(f"/proc/{pid}/fd").iterdir())
    )


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def payloads() -> list[bytes]:
    chunks = speech_chunks()
    sizes = [1, 3, 8, 20, 5, 13]
    return [
        json.dumps({"pairs": [[EXAMPLE_QUERY, chunk] for chunk in chunks[i : i + n]]}).encode()
        for i, n in enumerate(sizes)
    ]


def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def raw_request(body_length: int, path: str = "/invocations") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_length}\r\n\r\n"
    ).encode()


def read_slowly(sock: socket.socket) -> tuple[int, bytes]:
    """Read a whole response a few bytes at a time."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(7)
        if not chunk:
            break
        data += chunk
        time.sleep(0.002)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        chunk = sock.recv(7)
        if not chunk:
            break
        rest += chunk
        time.sleep(0.002)
    return int(head.split()[1]), rest


@pytest.mark.timeout(120)  # the run's bound, start and stop of the endpoint included
def test_chaos_clients_leave_exact_scores_and_no_leaks(tiny_archive: Path) -> None:
    bodies = payloads()
    with LocalEndpoint(model_data=tiny_archive, max_body_bytes=LIMIT) as endpoint:
        port, server = endpoint.port, endpoint.pid
        runtime_path = f"/endpoints/{endpoint.endpoint_name}/invocations"
        expected = [post(port, "/invocations", body) for body in bodies]
        assert all(status == 200 for status, _ in expected)
        for body in bodies * 3:  # warm the allocator before the baseline
            post(port, "/invocations", body)
        workers = children(server)
        base_threads, base_fds = threads_and_fds(server)
        base_rss = {pid: rss(pid) for pid in [server, *workers]}
        mismatches: list[str] = []
        counts: dict[str, int] = {}
        lock = threading.Lock()

        def act(kind: str, rng: random.Random) -> None:
            index = rng.randrange(len(bodies))
            if kind == "good":
                path = rng.choice(["/invocations", runtime_path])
                got = post(port, path, bodies[index])
                if got != expected[index]:
                    mismatches.append(f"{path} body {index}: {got[0]} {got[1][:80]!r}")
            elif kind == "malformed":
                status, data = post(port, runtime_path, b'{"pairs": [["q", "unfinished')
                if status != 424 or json.loads(data)["OriginalStatusCode"] != 400:
                    mismatches.append(f"malformed: {status} {data[:80]!r}")
            elif kind == "oversized":
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    sock.sendall(raw_request(LIMIT + 1) + b"x" * 4096)
                    answer = sock.recv(4096)
                if not answer.startswith(b"HTTP/1.1 413"):
                    mismatches.append(f"oversized: {answer[:60]!r}")
            elif kind == "slow_reader":
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    sock.sendall(raw_request(len(bodies[index])) + bodies[index])
                    got = read_slowly(sock)
                if got != expected[index]:
                    mismatches.append(f"slow reader body {index}: {got[0]}")
            elif kind == "dropped":
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    sock.sendall(raw_request(len(bodies[index])) + bodies[index][:40])
            else:  # left: the whole request, then gone before the answer
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    sock.sendall(raw_request(len(bodies[index])) + bodies[index])
            with lock:
                counts[kind] = counts.get(kind, 0) + 1

        def client(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(ACTIONS):
                act(rng.choice(ACTIONS_BY_WEIGHT), rng)

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=110)
        assert not any(thread.is_alive() for thread in threads), "a client hung"
        seconds = time.perf_counter() - started
        assert mismatches == []
        assert post(port, "/invocations", bodies[3]) == expected[3]

        deadline = time.monotonic() + SETTLE_SECONDS
        while threads_and_fds(server) > (base_threads, base_fds) and time.monotonic() < deadline:
            time.sleep(0.2)
        after_threads, after_fds = threads_and_fds(server)
        growth = {pid: rss(pid) - before for pid, before in base_rss.items()}
        print(
            f"\nchaos: {CLIENTS} clients x {ACTIONS} actions in {seconds:.1f} s "
            f"{sorted(counts.items())}; threads {base_threads}->{after_threads}, "
            f"fds {base_fds}->{after_fds}, RSS growth "
            + ", ".join(f"{pid}: {g / 2**20:+.1f} MiB" for pid, g in growth.items())
        )
        assert after_threads <= base_threads, "threads leaked in the server process"
        assert after_fds <= base_fds, "file descriptors leaked in the server process"
        assert growth[server] < FRONT_RSS_BOUND
        assert all(growth[pid] < WORKER_RSS_BOUND for pid in workers)
        assert set(counts) == set(ACTIONS_BY_WEIGHT)
