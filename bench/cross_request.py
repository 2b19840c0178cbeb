"""Would batching across requests help many small concurrent requests (CPU, or a GPU)?

Run from the repository root: ``python -m bench.cross_request``. The model server can hand
several queued requests to one handler call; its best case is that the handler then scores
all their pairs in one ``score`` call. This times, in one process, interleaved in shuffled
rounds, the 16 requests of 16 clients (1-5 pairs each, the example query against its top
chunks) scored

- **separate**: one ``transform_fn`` call per request, as today;
- **together**: one ``score`` call over all their pairs (the planner cuts the passes), the
  upper bound of what server-side batching could gain, queueing delay not counted;

at the process's torch threads (``--threads``), on the device the handler picks (a GPU where
one is visible: ``make gpu-check`` runs it there). Times are never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import torch

from bench.workloads import build_workloads, offline_model, write_json
from sagemaker_reranker.deploy.packaging.build import import_handler
from sagemaker_reranker.examples.speech import SPEECH
from sagemaker_reranker.inference.reranker_contract import JSON


def client_requests(pairs: list, clients: int, seed: int) -> list[list]:
    """One request per client, each 1-5 pairs drawn from ``pairs``."""
    rng = random.Random(seed)
    return [rng.sample(pairs, rng.randint(1, 5)) for _ in range(clients)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", help="offline encoder kind")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = offline_model(args.model)
    handler = import_handler()
    reranker = handler.model_fn(str(model_dir))
    pairs = next(w for w in build_workloads(SPEECH, 16) if w.name == "a").pairs
    bodies = [json.dumps({"pairs": r}).encode() for r in client_requests(pairs, args.clients, 0)]
    together = [tuple(pair) for body in bodies for pair in json.loads(body)["pairs"]]

    def separate():
        return [
            score
            for body in bodies
            for score in json.loads(handler.transform_fn(reranker, body, JSON, JSON))["scores"]
        ]

    def one_call():
        return reranker.score(together, reranker.settings.max_tokens)

    difference = max(abs(a - b) for a, b in zip(separate(), one_call(), strict=True))
    calls = {"separate": separate, "together": one_call}
    times: dict[str, list[float]] = {name: [] for name in calls}
    rng = random.Random(1)
    for _ in range(args.rounds):
        order = list(calls)
        rng.shuffle(order)
        for name in order:
            started = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    _, batches = reranker.plan(together)
    report = {
        "device": str(reranker.device),
        "dtype": str(next(reranker.model.parameters()).dtype),
        "clients": args.clients,
        "pairs": len(together),
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "passes_together": [len(batch) for batch in batches],
        "median_s": medians,
        "separate_over_together": medians["separate"] / medians["together"],
        "max_abs_diff": difference,
        "load_average_after": os.getloadavg(),
    }
    print(
        f"{args.clients} requests, {len(together)} pairs, {report['device']}, "
        f"{report['threads']} threads: "
        f"separate {1e3 * medians['separate']:.1f} ms, together {1e3 * medians['together']:.1f}"
        f" ms ({report['separate_over_together']:.2f}x; passes {report['passes_together']}); "
        f"max abs diff {difference:.1e}"
    )
    write_json(args.json, report)


if __name__ == "__main__":
    main()
