"""Load on the local endpoint (loopback, bounded): 8 clients x 200 requests of 20 pairs."""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tiers import endpoint_pool_fixture  # noqa: F401 - registers the fixture

from sagemaker_reranker.examples.offline_models import TINY_WORDS

CLIENTS, REQUESTS, PAIRS = 8, 200, 20
MARKER = "zebracorn"  # in every document: must never reach the log


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        pytest.skip("resident memory is read from /proc (Linux)")
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: the front's worker holds the model and does the work."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(child) for child in task.read_text().split()]
    return [grand for child in children for grand in (child, *descendants(child))]


def server_rss(pid: int) -> tuple[int, int]:
    """(RSS of the front and its worker processes together, how many processes counted)."""
    processes = [pid, *descendants(pid)]
    return sum(map(rss_bytes, processes)), len(processes)


def request_body(client: int) -> bytes:
    """Client ``client``'s request: 20 distinct pairs, different for every client."""
    words = TINY_WORDS[client:] + TINY_WORDS[:client]
    pairs = [
        [f"what is the plan for {words[i]}?", f"{MARKER} {' '.join(words[i : i + 3 + i % 7])}"]
        for i in range(PAIRS)
    ]
    return json.dumps({"pairs": pairs}).encode("utf-8")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_eight_clients_two_hundred_requests_each(endpoint_pool, capsys) -> None:
    endpoint = endpoint_pool.get("inprocess")
    runtime = endpoint.runtime_client(max_pool_connections=CLIENTS)
    bodies = [request_body(client) for client in range(CLIENTS)]

    def invoke(body: bytes) -> tuple[list[float], float]:
        started = time.perf_counter()
        reply = runtime.invoke_endpoint(
            EndpointName=endpoint.endpoint_name, Body=body, ContentType="application/json"
        )
        scores = json.loads(reply["Body"].read())["scores"]
        return scores, time.perf_counter() - started

    expected = [invoke(body)[0] for body in bodies]  # the single-call results
    for body in bodies * 4:  # warm the allocator before the baseline
        invoke(body)
    before, counted = server_rss(endpoint.pid)
    assert counted >= 2, "only the front counted: its worker process was not found"

    def client(index: int) -> tuple[int, list[float]]:
        errors, latencies = 0, []
        for _ in range(REQUESTS):
            try:
                scores, seconds = invoke(bodies[index])
            except Exception:  # counted: the assertion below reports how many
                errors += 1
                continue
            errors += scores != expected[index]
            latencies.append(seconds)
        return errors, latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS)))
    elapsed = time.perf_counter() - started
    growth = server_rss(endpoint.pid)[0] - before
    errors = sum(result[0] for result in results)
    latencies = sorted(seconds for result in results for seconds in result[1])
    p50 = statistics.median(latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    with capsys.disabled():
        print(
            f"\nload: {CLIENTS} clients x {REQUESTS} requests x {PAIRS} pairs: {errors} errors, "
            f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"{len(latencies) / elapsed:.0f} req/s, server RSS growth {growth / 2**20:+.1f} MiB"
        )
    assert errors == 0 and len(latencies) == CLIENTS * REQUESTS
    assert growth < 100 * 2**20
    log = endpoint.log_path.read_text(encoding="utf-8")
    assert log.count(f"/invocations 200 pairs={PAIRS} ") >= CLIENTS * REQUESTS
    assert MARKER not in log
