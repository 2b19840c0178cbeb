"""Where one short pair's time goes in the handler, against ONNX Runtime, and a prototype fix.

Run from the repository root: ``python -m bench.one_pair`` (after ``make bench`` has built
``bench/.models/minilm``, or it builds it). In one process, interleaved in shuffled rounds:

- **ours**: ``transform_fn`` of the handler as it is;
- **prototype**: the same handler with the prototype applied in memory (``apply_prototype``:
  one tokenizer call, passes under 256 tokens on one thread, bound to one loaded reranker);
- **ort-padded** / **ort-sorted**: ONNX Runtime (``bench/onnx_peer.py``), same threads;
- with ``--stages``, the handler's stages on their own: tokenizing (``tokenize``), planning
  (``plan`` less ``tokenize``), the packed and the padded forward on one thread and on all.

Prints median wall and CPU times per system and workload and the ratios ours/ORT and
prototype/ORT (ORT: the faster feed); ``--json`` writes them. Times are never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import types
from pathlib import Path

import torch

from bench.onnx_peer import ONNX_MODES, OnnxCrossEncoder, export_onnx
from bench.workloads import build_workloads, offline_model, write_json
from sagemaker_reranker.deploy.packaging.build import import_handler
from sagemaker_reranker.examples.speech import SPEECH
from sagemaker_reranker.inference.reranker_contract import JSON

# A pass of fewer real tokens runs on one thread (the prototype): splitting 128 x 384
# matrices across threads costs more in OpenMP hand-offs than it saves, and far more when
# other processes hold the cores (docs/performance.md).
SMALL_PASS_TOKENS = 256
CLOCKS = ("wall", "cpu")


def apply_prototype(reranker, small_pass_tokens: int = SMALL_PASS_TOKENS) -> None:
    """Bind the patch's ``tokenize`` and ``forward`` to ``reranker`` (an ``EncoderReranker``)."""
    original_tokenize, original_forward = reranker.tokenize, reranker.forward

    def tokenize(self, pairs, instruction=None):
        # One tokenizer call when every query leaves room for its document; the tokenizer
        # refuses the whole call otherwise, and the two-step path sorts the queries out.
        try:
            batch = self.tokenizer(
                [query for query, _ in pairs],
                [document for _, document in pairs],
                truncation="only_second",
                max_length=self.max_length,
                padding=False,
            )
        except Exception:
            return original_tokenize(pairs, instruction)
        return [{key: values[row] for key, values in batch.items()} for row in range(len(pairs))]

    def forward(self, rows):
        if sum(len(row["input_ids"]) for row in rows) >= small_pass_tokens:
            return original_forward(rows)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return original_forward(rows)
        finally:
            torch.set_num_threads(threads)

    reranker.tokenize = types.MethodType(tokenize, reranker)
    reranker.forward = types.MethodType(forward, reranker)


def handler_scorer(handler, reranker):
    def scores(pairs):
        body = json.dumps({"pairs": pairs}).encode()
        return json.loads(handler.transform_fn(reranker, body, JSON, JSON))["scores"]

    return scores


def stage_scorers(reranker, pairs) -> dict:
    """The handler's stages for ``pairs`` on their own (no scores)."""
    encoded, batches = reranker.plan(pairs)
    rows = [[encoded[i] for i in batch] for batch in batches]

    def threads(count, step):
        def run():
            before = torch.get_num_threads()
            torch.set_num_threads(count)
            try:
                step()
            finally:
                torch.set_num_threads(before)

        return run

    def packed():
        with torch.inference_mode():
            for batch in rows:
                reranker.packed(batch, reranker.device)

    def padded():
        with torch.inference_mode():
            for batch in rows:
                reranker.model(**reranker.collate(batch))

    every = torch.get_num_threads()
    return {
        "stage tokenize": lambda: reranker.tokenize(pairs),
        "stage plan": lambda: reranker.plan(pairs),
        f"stage packed {every}t": packed,
        "stage packed 1t": threads(1, packed),
        f"stage padded {every}t": padded,
        "stage padded 1t": threads(1, padded),
    }


def interleaved(calls: dict, rounds: int, seed: int = 0) -> dict:
    """Wall and process CPU seconds of every call, in ``rounds`` rounds of shuffled order."""
    rng = random.Random(seed)
    times = {name: {"wall": [], "cpu": []} for name in calls}
    names = list(calls)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            wall, cpu = time.perf_counter(), time.process_time()
            calls[name]()
            times[name]["wall"].append(time.perf_counter() - wall)
            times[name]["cpu"].append(time.process_time() - cpu)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", help="offline encoder kind")
    parser.add_argument("--workloads", default="d,a,c", help="bench/workloads.py names")
    parser.add_argument("--rounds", type=int, default=30, help="rounds for one pair")
    parser.add_argument("--big-rounds", type=int, default=5, help="rounds for other workloads")
    parser.add_argument("--threads", type=int, default=0, help="torch and ORT threads")
    parser.add_argument("--small-pass-tokens", type=int, default=SMALL_PASS_TOKENS)
    parser.add_argument("--stages", action="store_true", help="time the handler's stages too")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    model_dir = offline_model(args.model)
    onnx_path = export_onnx(model_dir, model_dir / "onnx" / "model.onnx")
    handler = import_handler()
    ours, proto = handler.model_fn(str(model_dir)), handler.model_fn(str(model_dir))
    apply_prototype(proto, args.small_pass_tokens)
    scorers = {"ours": handler_scorer(handler, ours), "prototype": handler_scorer(handler, proto)}
    for mode in ONNX_MODES:
        scorers[f"ort-{mode}"] = OnnxCrossEncoder(model_dir, onnx_path, threads, mode)
    report = {
        "threads": threads,
        "load_average": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "workloads": {},
    }
    wanted = args.workloads.split(",")
    for workload in build_workloads(SPEECH, 128):
        if workload.name not in wanted:
            continue
        pairs = workload.pairs
        reference = scorers["ours"](pairs)
        diffs = {
            name: max(abs(a - b) for a, b in zip(scorer(pairs), reference, strict=True))
            for name, scorer in scorers.items()
        }
        calls = {name: (lambda s=scorer, p=pairs: s(p)) for name, scorer in scorers.items()}
        if args.stages:
            calls |= stage_scorers(ours, pairs)
        rounds = args.rounds if len(pairs) == 1 else args.big_rounds
        times = interleaved(calls, rounds)
        medians = {
            name: {kind: statistics.median(values) for kind, values in t.items()}
            for name, t in times.items()
        }
        ort = min((f"ort-{mode}" for mode in ONNX_MODES), key=lambda n: medians[n]["wall"])
        ratios = {
            f"{name}/ORT": {kind: medians[ort][kind] / medians[name][kind] for kind in CLOCKS}
            for name in ("ours", "prototype")
        }
        report["workloads"][workload.name] = {
            "description": workload.description,
            "pairs": len(pairs),
            "rounds": rounds,
            "ort_feed": ort,
            "median_s": medians,
            "ratios": ratios,
            "max_abs_diff_vs_ours": diffs,
        }
        print(f"({workload.name}) {workload.description}, {rounds} rounds, ORT = {ort}")
        for name, median in medians.items():
            wall, cpu = 1e3 * median["wall"], 1e3 * median["cpu"]
            print(f"  {name:22s} wall {wall:8.2f} ms  cpu {cpu:8.2f} ms")
        for name, ratio in ratios.items():
            print(f"  {name:22s} wall {ratio['wall']:.2f}x  cpu {ratio['cpu']:.2f}x")
        print(f"  max abs diff vs ours: {diffs}", flush=True)
    report["load_average_after"] = os.getloadavg()
    write_json(args.json, report)


if __name__ == "__main__":
    main()
