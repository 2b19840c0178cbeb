"""Benchmark: the LangChain docs' sample handler vs sentence-transformers vs ours (encoders),
with ONNX Runtime as a further peer for ``--onnx`` models (``bench/onnx_peer.py``), and
Qwen3-Reranker's model card computation vs ours (LLM rerankers); same weights, same inputs.

Run from the repository root: ``python -m bench.run`` (``make bench``). Prints a markdown
table and writes ``bench/results/<machine>.json`` and ``.md``.

Budget (2 CPU cores, < 20 min in all): bge-base costs ~8x MiniLM per token and the sample
pads a mixed request to 512 tokens, so workload (c) has 128 pairs for MiniLM but 32 for bge-base
(same mix, same generator); the LLM reranker's cells are sized in ``bench/causal.py``; each
system gets one small warm-up call per workload; and each
(system, workload) cell runs ``--repeats`` times (median) but stops early, after at least
one run, once its runs took ``--cell-seconds`` in all; fast cells run until they took
``--min-seconds`` (at most ``MAX_RUNS`` runs). The table shows the runs per cell.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import time
from pathlib import Path

import torch

from bench.causal import CAUSAL_KINDS, bench_causal
from bench.causal import MIXED_PAIRS as CAUSAL_MIXED_PAIRS
from bench.machine import (
    encoder_flops,
    fp32_peak_gflops,
    load_average,
    machine_info,
    machine_name,
    matmul_gflops,
)
from bench.onnx_peer import ONNX_MODES, OnnxCrossEncoder, export_onnx
from bench.reference import SAMPLE_MAX_LENGTH, SampleCrossEncoder
from bench.report import markdown_table, target_checks
from bench.timing import MAX_RUNS, Scorer, cell_summary, timed_rounds
from bench.workloads import Workload, build_workloads
from sagemaker_reranker.deploy.packaging.build import import_handler
from sagemaker_reranker.examples.speech import SPEECH
from sagemaker_reranker.inference.reranker_contract import JSON

BENCH_DIR = Path(__file__).resolve().parent
BENCH_MODELS = ("minilm", "bge-base-random", "qwen3-0.6b-random")
ENCODER_MIXED_PAIRS = {"minilm": 128, "bge-base-random": 32}
# Encoders that get ONNX Runtime peers (an export of bge-base costs minutes of both cores).
ONNX_MODELS = ("minilm",)


def load_systems(model_dir: Path, onnx_threads: int = 0) -> dict[str, tuple[Scorer, object]]:
    """The contenders, each as (score function, its handle for batch accounting); with
    ``onnx_threads``, ONNX Runtime fed padded and length-sorted (``bench/onnx_peer.py``)."""
    from sentence_transformers import CrossEncoder

    handler = import_handler()
    sample = SampleCrossEncoder(str(model_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peer = CrossEncoder(str(model_dir), device=device, activation_fn=torch.nn.Identity())
    ours = handler.model_fn(str(model_dir))

    def peer_scores(pairs):
        return peer.predict(pairs, batch_size=32, show_progress_bar=False).tolist()

    def our_scores(pairs):
        body = json.dumps({"pairs": pairs})
        response = handler.transform_fn(ours, body.encode(), JSON, JSON)
        return json.loads(response)["scores"]

    systems = {
        "sample": (sample, sample),
        "sentence-transformers": (peer_scores, peer),
        "ours": (our_scores, ours),
    }
    if onnx_threads:
        onnx_path = export_onnx(model_dir, model_dir / "onnx" / "model.onnx")
        for mode in ONNX_MODES:
            runtime = OnnxCrossEncoder(model_dir, onnx_path, onnx_threads, mode)
            systems[f"onnxruntime-{mode}"] = (runtime, runtime)
    return systems


def planned_batches(system: str, handle, pairs: list[tuple[str, str]]) -> tuple[list, bool] | None:
    """The row lengths of each forward pass a system runs for ``pairs``, and whether packed."""
    if system == "sample":
        encoded = handle.tokenizer(pairs, truncation=True, max_length=SAMPLE_MAX_LENGTH)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        return [lengths], False
    if system == "ours":
        encoded, batches = handle.plan(pairs)
        lengths = [[len(encoded[i]["input_ids"]) for i in batch] for batch in batches]
        return lengths, handle.packed is not None
    return None  # sentence-transformers: internal batching, not accounted


def bench_model(
    kind: str, model_dir: Path, workloads: list[Workload], args: argparse.Namespace, peak: dict
) -> dict:
    """Time every system on every workload; accuracy is measured against the sample's scores."""
    onnx_threads = (args.threads or torch.get_num_threads()) if kind in args.onnx else 0
    systems = load_systems(model_dir, onnx_threads)
    config = systems["ours"][1].model.config
    scorers = {name: scorer for name, (scorer, _) in systems.items()}
    results = {}
    for workload in workloads:
        if args.workloads and workload.name not in args.workloads:
            continue
        for scorer in scorers.values():
            scorer(workload.pairs[:2])  # warm-up: kernels, allocator, tokenizer caches
        timings = timed_rounds(
            scorers, workload.pairs, args.repeats, args.cell_seconds, args.min_seconds
        )
        reference = timings["sample"]["scores"]
        row = {"description": workload.description, "pairs": len(workload.pairs), "systems": {}}
        for name, cell in timings.items():
            entry = cell_summary(cell, len(workload.pairs), reference, "sample")
            median = entry["median_s"]
            planned = planned_batches(name, systems[name][1], workload.pairs)
            if planned is not None:
                batches, packed = planned
                flops = encoder_flops(config, batches, packed)
                shapes = [(len(batch), max(batch)) for batch in batches]
                entry |= {"batches": shapes, "packed": packed, "gflop": flops / 1e9}
                entry["peak_fraction"] = flops / median / 1e9 / peak["gflops"]
                cpu_rate = flops / entry["median_cpu_s"] / 1e9
                entry["cpu_peak_fraction"] = cpu_rate / peak["per_core_cpu_gflops"]
            row["systems"][name] = entry
        best_onnx(row)
        results[workload.name] = row
        print(
            f"  {kind} ({workload.name}): "
            + ", ".join(f"{n} {e['pairs_per_s']:.1f}" for n, e in row["systems"].items())
            + " pairs/s",
            flush=True,
        )
        gc.collect()
    return results


def best_onnx(row: dict) -> None:
    """The ONNX Runtime peer of a cell: the faster of its padded and length-sorted feeds."""
    feeds = {name: e for name, e in row["systems"].items() if name.startswith("onnxruntime-")}
    if feeds:
        name = min(feeds, key=lambda n: feeds[n]["median_s"])
        row["systems"]["onnxruntime"] = feeds[name] | {"feed": name.removeprefix("onnxruntime-")}


def bf16_check(info: dict) -> dict:
    """bf16 vs fp32 on this CPU; without native bf16 the handler keeps fp32 (say why)."""
    native = import_handler("reranker_loading").cpu_has_native_bf16()
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
        "--models", default=",".join(BENCH_MODELS), help="comma-separated offline model kinds"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per system and workload")
    parser.add_argument(
        "--cell-seconds", type=float, default=45.0, help="stop repeating a cell after this long"
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=2.0,
        help=f"repeat a fast cell until its runs took this long (at most {MAX_RUNS} runs)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (default: torch's choice, one per core); 1 sidesteps the OpenMP "
        "stalls that other processes on the same cores cause",
    )
    parser.add_argument(
        "--onnx",
        default=",".join(ONNX_MODELS),
        help="comma-separated encoders that get ONNX Runtime peers (same threads as torch)",
    )
    parser.add_argument(
        "--workloads", default="", help="comma-separated workloads to run (default: a,b,c,d)"
    )
    parser.add_argument("--speech", type=Path, default=SPEECH)
    parser.add_argument(
        "--cache", type=Path, default=BENCH_DIR / ".models", help="where offline models are built"
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    args.onnx = [kind for kind in args.onnx.split(",") if kind]
    if args.onnx and importlib.util.find_spec("onnxruntime") is None:
        parser.exit(
            2, "bench: the ONNX Runtime peer needs pip install -e '.[bench]' (or --onnx '')\n"
        )
    args.workloads = [name for name in args.workloads.split(",") if name]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sagemaker_reranker.examples.offline_models import build_offline_model

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    info = machine_info()
    flags = " ".join(info["key_flags"])
    print(f"machine: {info['gpu'] or info['cpu']}, {info['cores']} cores, flags {flags}")
    peak = fp32_peak_gflops()
    print(f"fp32 matmul peak: {peak['gflops']:.1f} GFLOP/s", flush=True)
    report = {
        "machine": info,
        "fp32_peak": peak,
        "repeats": args.repeats,
        "cell_seconds": args.cell_seconds,
        "min_seconds": args.min_seconds,
        "mixed_pairs": ENCODER_MIXED_PAIRS | CAUSAL_MIXED_PAIRS,
        "models": {},
        "causal": {},
    }
    for kind in args.models.split(","):
        model_dir = args.cache / kind
        if not (model_dir / "config.json").is_file():
            build_offline_model(kind, model_dir)
        causal = kind in CAUSAL_KINDS
        mixed = (CAUSAL_MIXED_PAIRS if causal else ENCODER_MIXED_PAIRS).get(kind, 128)
        workloads = build_workloads(args.speech, mixed)
        if causal:
            report["causal"][kind] = bench_causal(kind, model_dir, workloads, args, peak)
        else:
            report["models"][kind] = bench_model(kind, model_dir, workloads, args, peak)
    report["bf16"] = bf16_check(info)
    report["runtime_s"] = time.perf_counter() - started
    report["load_average_after"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.threads}thread" if args.threads else ""
    stem = args.out / f"{machine_name(info)}{suffix}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    table = markdown_table(report) + "\n\n" + target_checks(report)
    stem.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"wrote {stem}.json and .md in {report['runtime_s']:.0f} s")


if __name__ == "__main__":
    main()
