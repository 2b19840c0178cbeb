"""Benchmark: the seed handler vs sentence-transformers vs ours, same weights, same inputs.

Run from the repository root: ``python -m bench.run`` (``make bench``). Prints a markdown
table and writes ``bench/results/<machine>.json`` and ``.md``. Budget (2 CPU cores, < 15 min
in all): bge-base is ~8x MiniLM's cost per token and the seed pads mixed requests to 512
tokens, so workload (c) has 128 pairs for MiniLM but 32 for bge-base (same mix, same
generator), and warm-up runs one small request per system instead of a full pass.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.machine import (
    encoder_flops,
    fp32_peak_gflops,
    load_average,
    machine_info,
    machine_name,
    matmul_gflops,
)
from bench.report import markdown_table, target_checks
from bench.seed import SeedCrossEncoder
from bench.workloads import Workload, build_workloads

ROOT = Path(__file__).resolve().parent
SPEECH = ROOT / "data" / "state_of_the_union.txt"
MODELS = ("minilm", "bge-base-random")
MIXED_PAIRS = {"minilm": 128, "bge-base-random": 32}
SEED_MAX_LENGTH = 512

Scorer = Callable[[list[tuple[str, str]]], list[float]]


def timed(scorer: Scorer, pairs: list[tuple[str, str]], repeats: int) -> tuple[list[float], list]:
    """Run ``scorer`` ``repeats`` times; return the wall times and the last scores."""
    times, scores = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = scorer(pairs)
        times.append(time.perf_counter() - start)
    return times, scores


def load_systems(model_dir: Path) -> dict[str, tuple[Scorer, object]]:
    """The three contenders, each as (score function, its handle for batch accounting)."""
    from sentence_transformers import CrossEncoder

    from sagemaker_reranker.inference.inference import JSON, model_fn, transform_fn

    seed = SeedCrossEncoder(str(model_dir))
    peer = CrossEncoder(str(model_dir), device="cpu", activation_fn=torch.nn.Identity())
    ours = model_fn(str(model_dir))

    def peer_scores(pairs):
        return peer.predict(pairs, batch_size=32, show_progress_bar=False).tolist()

    def our_scores(pairs):
        body = json.dumps({"pairs": pairs})
        response = transform_fn(ours, body.encode(), JSON, JSON)
        return json.loads(response)["scores"]

    return {
        "seed": (seed, seed),
        "sentence-transformers": (peer_scores, peer),
        "ours": (our_scores, ours),
    }


def padded_batches(
    system: str, handle, pairs: list[tuple[str, str]]
) -> list[tuple[int, int]] | None:
    """(rows, padded length) of each forward pass a system runs for ``pairs``."""
    if system == "seed":
        lengths = [
            len(ids)
            for ids in handle.tokenizer(pairs, truncation=True, max_length=SEED_MAX_LENGTH)[
                "input_ids"
            ]
        ]
        return [(len(lengths), max(lengths))]
    if system == "ours":
        encoded, batches = handle.plan(pairs)
        return [(len(b), max(len(encoded[i]["input_ids"]) for i in b)) for b in batches]
    return None  # sentence-transformers: internal batching, not accounted


def bench_model(
    kind: str, model_dir: Path, workloads: list[Workload], repeats: int, peak: float
) -> dict:
    """Time every system on every workload; accuracy is measured against the seed's scores."""
    systems = load_systems(model_dir)
    config = systems["ours"][1].model.config
    results = {}
    for workload in workloads:
        row = {"description": workload.description, "pairs": len(workload.pairs), "systems": {}}
        reference = None
        for name, (scorer, handle) in systems.items():
            scorer(workload.pairs[:2])  # warm-up: kernels, allocator, tokenizer caches
            times, scores = timed(scorer, workload.pairs, repeats)
            median = statistics.median(times)
            entry = {
                "times_s": times,
                "median_s": median,
                "pairs_per_s": len(workload.pairs) / median,
            }
            if reference is None:
                reference = scores
            entry["max_abs_diff_vs_seed"] = max(
                abs(a - b) for a, b in zip(scores, reference, strict=True)
            )
            batches = padded_batches(name, handle, workload.pairs)
            if batches is not None:
                flops = encoder_flops(config, batches)
                entry |= {"batches": batches, "gflop": flops / 1e9}
                entry["peak_fraction"] = flops / median / 1e9 / peak
            row["systems"][name] = entry
            print(
                f"  {kind} ({workload.name}) {name}: {entry['pairs_per_s']:.1f} pairs/s", flush=True
            )
        results[workload.name] = row
        gc.collect()
    return results


def bf16_check(info: dict) -> dict:
    """bf16 vs fp32 on this CPU; without native bf16 the handler keeps fp32 (say why)."""
    from sagemaker_reranker.inference.inference import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    size = 512
    fp32 = matmul_gflops(size)
    bf16 = matmul_gflops(size, torch.bfloat16, repeats=1)
    return {
        "native_bf16": native,
        "matmul_size": size,
        "fp32_gflops": fp32,
        "bf16_gflops": bf16,
        "bf16_slowdown": fp32 / bf16,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated offline model kinds"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per system and workload")
    parser.add_argument("--speech", type=Path, default=SPEECH)
    parser.add_argument(
        "--cache", type=Path, default=ROOT / ".models", help="where offline models are built"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sagemaker_reranker.deploy.offline import build_offline_model

    started = time.perf_counter()
    info = machine_info()
    flags = " ".join(info["key_flags"])
    print(f"machine: {info['gpu'] or info['cpu']}, {info['cores']} cores, flags {flags}")
    peak = fp32_peak_gflops()
    print(f"fp32 matmul peak: {peak['gflops']:.1f} GFLOP/s", flush=True)
    report = {"machine": info, "fp32_peak": peak, "repeats": args.repeats, "models": {}}
    for kind in args.models.split(","):
        model_dir = args.cache / kind
        if not (model_dir / "config.json").is_file():
            build_offline_model(kind, model_dir)
        workloads = build_workloads(args.speech, MIXED_PAIRS.get(kind, 128))
        report["models"][kind] = bench_model(
            kind, model_dir, workloads, args.repeats, peak["gflops"]
        )
    report["bf16"] = bf16_check(info)
    report["runtime_s"] = time.perf_counter() - started
    report["load_average_after"] = load_average()
    table = markdown_table(report) + "\n\n" + target_checks(report)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / machine_name(info)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    print(f"wrote {stem}.json and .md in {report['runtime_s']:.0f} s")


if __name__ == "__main__":
    main()
