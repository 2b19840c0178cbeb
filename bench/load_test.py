"""Local load test: throughput and p99 latency of workers x threads under concurrent clients.

Run from the repository root: ``python -m bench.load_test`` (MiniLM from ``bench/.models``).
Every configuration's servers are started up front, each a ``LocalEndpoint`` on 127.0.0.1
(``sagemaker-reranker serve``'s in-process server: one handler worker per process) with
``OMP_NUM_THREADS`` = threads; W workers are W such processes, and each client sticks to
one of them (client i to worker i mod W), as the model server's shared queue spreads steady
clients over its workers. Configurations then take turns in short bursts, in shuffled order,
for several rounds, so load from elsewhere hits each alike; the figures are each
configuration's totals over its bursts. Every server is stopped at the end, also on errors.

Shapes: ``small`` (16 clients, each request 1-5 pairs of the example query and its top
chunks) and ``top20`` (4 clients, each request the top-20 chunks). Times are never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path

from bench.workloads import build_workloads, offline_model, write_json
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.examples.speech import SPEECH

CONFIGS = ((1, 1), (1, 2), (2, 1), (2, 2))  # (workers, threads per worker)
LOAD_SHAPES = {"small": (16, 1, 5), "top20": (4, 20, 20)}  # clients, pairs per request (min, max)


def requests_for(shape: str, pairs: list[tuple[str, str]], seed: int) -> list[bytes]:
    """A client's request bodies, cycled through: ``shape``'s pair counts, drawn from ``pairs``."""
    _, low, high = LOAD_SHAPES[shape]
    rng = random.Random(seed)
    bodies = []
    for _ in range(50):
        count = rng.randint(low, high)
        chosen = rng.sample(pairs, count) if count < len(pairs) else pairs
        bodies.append(json.dumps({"pairs": chosen}).encode())
    return bodies


def client(
    port: int, bodies: list[bytes], stop: float, latencies: list, pairs: list, errors: list
) -> None:
    """Send requests back to back on one keep-alive connection until ``stop``. A refused
    request (e.g. 408: it waited past the invocation timeout) counts in ``errors`` and with
    its time in ``latencies``, as the caller waited that long for nothing."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for body in bodies * 1000:
            if time.perf_counter() >= stop:
                return
            started = time.perf_counter()
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                errors.append(f"{response.status}: {data[:200]!r}")
                continue
            pairs.append(len(json.loads(body)["pairs"]))
    finally:
        connection.close()


def burst(ports: list[int], shape: str, pairs: list, seconds: float, seed: int) -> dict:
    """``shape``'s clients against ``ports`` for ``seconds``: latencies and pairs answered."""
    clients = LOAD_SHAPES[shape][0]
    latencies: list[float] = []
    answered: list[int] = []
    errors: list[str] = []
    stop = time.perf_counter() + seconds
    threads = [
        threading.Thread(
            target=client,
            args=(
                ports[i % len(ports)],
                requests_for(shape, pairs, seed + i),
                stop,
                latencies,
                answered,
                errors,
            ),
        )
        for i in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "latencies": latencies, "pairs": answered, "errors": errors}


def summary(bursts: list[dict]) -> dict:
    seconds = sum(b["seconds"] for b in bursts)
    latencies = sorted(value for b in bursts for value in b["latencies"])
    pairs = sum(sum(b["pairs"]) for b in bursts)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
    return {
        "requests": len(latencies),
        "errors": sum(len(b["errors"]) for b in bursts),
        "seconds": seconds,
        "requests_per_s": len(latencies) / seconds,
        "pairs_per_s": pairs / seconds,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p99_s": p99,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", help="offline encoder kind")
    parser.add_argument("--shapes", default="small,top20")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="one burst's length")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    model_dir = offline_model(args.model)
    workloads = {w.name: w for w in build_workloads(SPEECH, 16)}
    pairs = workloads["a"].pairs
    shapes = args.shapes.split(",")
    results: dict[str, dict[str, list]] = {shape: {} for shape in shapes}
    with contextlib.ExitStack() as stack:
        ports = {}
        for workers, threads in CONFIGS:
            env = {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
            ports[(workers, threads)] = [
                stack.enter_context(LocalEndpoint(model_dir=model_dir, env=env)).port
                for _ in range(workers)
            ]
        print(f"started {sum(len(p) for p in ports.values())} servers", flush=True)
        rng = random.Random(0)
        for round_ in range(args.rounds):
            for shape in shapes:
                order = list(CONFIGS)
                rng.shuffle(order)
                for config in order:
                    key = f"{config[0]}w x {config[1]}t"
                    figures = burst(ports[config], shape, pairs, args.seconds, seed=round_ * 100)
                    results[shape].setdefault(key, []).append(figures)
            print(f"round {round_ + 1} done, load {os.getloadavg()}", flush=True)
    report = {
        "model": args.model,
        "cores": os.cpu_count(),
        "shapes": {name: LOAD_SHAPES[name] for name in shapes},
        "load_average_after": os.getloadavg(),
        "results": {
            shape: {key: summary(bursts) for key, bursts in by_config.items()}
            for shape, by_config in results.items()
        },
    }
    for shape, by_config in report["results"].items():
        clients, low, high = LOAD_SHAPES[shape]
        print(f"{shape}: {clients} clients x {low}-{high} pairs")
        for key, figures in by_config.items():
            print(
                f"  {key}: {figures['requests_per_s']:.1f} req/s, {figures['pairs_per_s']:.1f} "
                f"pairs/s, p50 {1e3 * figures['p50_s']:.0f} ms, p99 {1e3 * figures['p99_s']:.0f} ms"
                f" ({figures['requests']} requests, {figures['errors']} refused)"
            )
    write_json(args.json, report)


if __name__ == "__main__":
    main()
