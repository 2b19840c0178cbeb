"""10,000 pairs through the client against the local endpoint: complete, in order, requests
under the byte limit, ``max_concurrency`` at once and no more; and the client's own overhead
(validate, split, serialise, parse, check, reassemble) per 1,000 pairs, printed
(docs/performance.md quotes it).

Nothing here asserts a time: the figures are printed for the report.
"""

from __future__ import annotations

import json
import statistics
import threading
import time

import orjson
import pytest
from handler import inference

from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
from sagemaker_reranker.client.scores import assemble, checked_scores
from sagemaker_reranker.examples.speech import EXAMPLE_QUERY, speech_chunks

pytestmark = pytest.mark.slow

COUNT = 10_000
OPERATION = "sagemaker-runtime.InvokeEndpoint"


@pytest.fixture(scope="module")
def chunks() -> list[str]:
    return speech_chunks()


@pytest.fixture(scope="module")
def pairs(chunks) -> list[tuple[str, str]]:
    """10,000 distinct chunk-sized documents (the speech's chunks, numbered)."""
    return [(EXAMPLE_QUERY, f"{i}: {chunks[i % len(chunks)]}") for i in range(COUNT)]


@pytest.fixture(scope="module")
def short_pairs(chunks) -> list[tuple[str, str]]:
    """10,000 distinct short documents: the model's cost here is tokens, not requests."""
    return [(EXAMPLE_QUERY, f"{i}: {chunks[i % len(chunks)][:60]}") for i in range(COUNT)]


class WireMeter:
    """Counts what the boto3 client puts on the wire: body sizes and requests in flight."""

    def __init__(self, client) -> None:
        self.sizes: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        client.meta.events.register(f"before-send.{OPERATION}", self._sent)
        client.meta.events.register(f"needs-retry.{OPERATION}", self._answered)

    def _sent(self, request, **_) -> None:
        with self._lock:
            self.sizes.append(len(request.body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _answered(self, **_) -> None:
        with self._lock:
            self.in_flight -= 1


def test_ten_thousand_pairs_complete_in_order_within_limits(endpoint, short_pairs, tiny_model_dir):
    pairs = short_pairs
    client = endpoint.runtime_client()
    meter = WireMeter(client)
    model = SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name, client=client, max_concurrency=4
    )
    started = time.perf_counter()
    scores = model.score(pairs)
    seconds = time.perf_counter() - started
    assert len(scores) == COUNT
    # Every 7th position, scored in-process (7 is prime to the 256 pairs per request, so the
    # sample cuts across every request and offset): a shifted, swapped or lost request shows.
    sample = range(0, COUNT, 7)
    expected = inference.model_fn(str(tiny_model_dir)).score([pairs[i] for i in sample])
    assert [scores[i] for i in sample] == pytest.approx(expected, abs=1e-5)
    assert len(meter.sizes) == -(-COUNT // model.max_pairs_per_request)
    assert max(meter.sizes) <= model.max_request_bytes < 6 * 1024 * 1024
    assert meter.max_in_flight == model.max_concurrency
    assert meter.in_flight == 0
    print(
        f"\n10k pairs: {len(meter.sizes)} requests, "
        f"largest body {max(meter.sizes) / 1024:.0f} KiB, "
        f"{meter.max_in_flight} in flight at most, {seconds:.1f} s end to end "
        f"({COUNT / seconds:.0f} pairs/s, tiny model on a shared CPU)"
    )


def _cpu_ms(work, repeats: int = 15) -> tuple[float, float]:
    """(fastest, median) CPU time of this thread in ms: other processes on a shared machine
    do not count, and the fastest run is the one they disturbed least."""
    times = []
    for _ in range(repeats):
        started = time.thread_time()
        work()
        times.append((time.thread_time() - started) * 1000)
    return min(times), statistics.median(times)


def test_client_overhead_per_thousand_pairs(pairs, endpoint):
    """The client's own work for 10k pairs, without the network or the model: check, split,
    serialise (orjson), parse and check each response, reassemble."""
    model = SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name, client=endpoint.runtime_client()
    )
    count, requests = model._prepare(pairs, None)
    bodies = [json.dumps({"scores": [0.123456789] * len(r.indices)}).encode() for r in requests]

    def round_trip() -> None:
        planned = model._prepare(pairs, None)[1]
        results = [
            checked_scores(model.content_handler, body, len(r.indices), {})
            for r, body in zip(planned, bodies, strict=True)
        ]
        assemble(count, planned, None, results)

    def serialise(dumps) -> None:
        for r in requests:
            dumps({"pairs": pairs[r.indices.start : r.indices.stop]})

    results = [
        checked_scores(model.content_handler, b, len(r.indices), {})
        for r, b in zip(requests, bodies, strict=True)
    ]
    assert assemble(count, requests, None, results) == [0.123456789] * COUNT
    per_thousand = COUNT / 1000
    total = [value / per_thousand for value in _cpu_ms(round_trip)]
    fast = [value / per_thousand for value in _cpu_ms(lambda: serialise(orjson.dumps))]
    stdlib = [value / per_thousand for value in _cpu_ms(lambda: serialise(json.dumps))]
    size = sum(len(r.body) for r in requests) / per_thousand / 1024
    print(
        f"\nclient overhead per 1,000 chunk-sized pairs ({size:.0f} KiB of JSON), CPU time, "
        f"fastest/median of 15: {total[0]:.3f}/{total[1]:.3f} ms; of which serialising: orjson "
        f"{fast[0]:.3f}/{fast[1]:.3f} ms (stdlib json {stdlib[0]:.3f}/{stdlib[1]:.3f} ms)"
    )
