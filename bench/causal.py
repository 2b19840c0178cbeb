"""The benchmark's LLM reranker cells: the model card's computation vs ours, same weights.

Both run in this process on one model object (loaded by the handler's ``model_fn``): the
reference (``ModelCardYesNoReranker``) scores one left-padded batch through the full model,
vocabulary-wide head included; ours is the handler's ``transform_fn``. Both use
``max_length`` 512 (``RERANKER_MAX_LENGTH``), so that the reference's logits (pairs x width x
151,669 floats, 3.7 GB for the mixed cell) fit in memory; the handler's code path is the same
at its 8,192 default.

Each cell reports the share of the reference's FLOPs spent in the vocabulary-wide head, which
ours never computes: the speed-up that comes from skipping it is not a faster kernel.

Qwen3-Reranker-0.6B's widths run at full depth (28 layers) on the example query's top 20 (a)
and a single pair (d), and the mixed request (c) at 8 layers: the reference pads 12 mixed
pairs to 512 tokens and computes 7 TFLOP at full depth, minutes per run on 2 cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from pathlib import Path

from bench.machine import decoder_flops
from bench.reference import ModelCardYesNoReranker
from bench.timing import cell_summary, timed_rounds
from bench.workloads import Workload
from sagemaker_reranker.deploy.packaging.build import import_handler
from sagemaker_reranker.inference.reranker_contract import JSON

BENCH_MAX_LENGTH = 512
# (layers or None for the model's own, workloads) per model kind.
CELLS = {
    "qwen3-0.6b-random": ((None, ("a", "d")), (8, ("c",))),
    "tiny-qwen3": ((None, ("a", "c", "d")),),
}
CAUSAL_KINDS = tuple(CELLS)
MIXED_PAIRS = {"qwen3-0.6b-random": 12, "tiny-qwen3": 32}


def at_depth(model_dir: Path, layers: int | None, cache: Path) -> Path:
    """``model_dir`` with its first ``layers`` layers only: a config asking for fewer layers
    beside links to the same files (transformers leaves the other layers' weights unread)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if layers is None or layers == config["num_hidden_layers"]:
        return model_dir
    out = cache / f"{model_dir.name}-{layers}-layers"
    out.mkdir(parents=True, exist_ok=True)
    for entry in model_dir.iterdir():
        link = out / entry.name
        if entry.name != "config.json" and not link.exists():
            link.symlink_to(entry.resolve())
    config["num_hidden_layers"] = layers
    if isinstance(config.get("layer_types"), list):
        config["layer_types"] = config["layer_types"][:layers]
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out


def load_pair_of_systems(model_dir: Path):
    """(handler module, our reranker, the card's reference on the same model object)."""
    from transformers import AutoTokenizer

    handler = import_handler()
    previous = os.environ.get("RERANKER_MAX_LENGTH")
    os.environ["RERANKER_MAX_LENGTH"] = str(BENCH_MAX_LENGTH)
    try:
        ours = handler.model_fn(str(model_dir))
    finally:
        if previous is None:
            os.environ.pop("RERANKER_MAX_LENGTH")
        else:
            os.environ["RERANKER_MAX_LENGTH"] = previous
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    card = ModelCardYesNoReranker(tokenizer, ours.model, max_length=BENCH_MAX_LENGTH)
    return handler, ours, card


def flops(card, ours, config, pairs) -> tuple[dict, dict]:
    """(the card's, ours) FLOPs for ``pairs``, with the vocabulary-wide head's part. Ours
    follows the packed decoder's passes: a pass whose rows start with the start the pass
    before kept (``PrefixStates``) does not compute it again."""
    width = card.batch(pairs)["input_ids"].shape[1]
    card_flops = decoder_flops(config, [([width] * len(pairs), 0, False)], card=True)
    encoded, batches = ours.plan(pairs)
    passes, kept = [], None
    for batch in batches:
        rows = [encoded[i]["input_ids"] for i in batch]
        shared, reused, keeping = ours.packed.start(rows, ours.device, kept)
        passes.append(([len(row) for row in rows], shared, reused))
        kept = keeping or kept
    return card_flops, decoder_flops(config, passes, card=False) | {"passes": passes}


def bench_causal(
    kind: str, model_dir: Path, workloads: list[Workload], args: argparse.Namespace, peak: dict
) -> dict:
    """Time the card's computation and ours on each cell; accuracy against the card's."""
    by_name = {workload.name: workload for workload in workloads}
    results = {}
    for layers, names in CELLS[kind]:
        handler, ours, card = load_pair_of_systems(at_depth(model_dir, layers, args.cache))
        config = ours.model.config

        def our_scores(pairs, handler=handler, ours=ours):
            # Every run a new request: the start kept by the run before does not carry over.
            if ours.packed is not None:
                ours.packed.kept = None
            body = json.dumps({"pairs": pairs}).encode()
            return json.loads(handler.transform_fn(ours, body, JSON, JSON))["scores"]

        scorers = {"card": card, "ours": our_scores}
        for name in names:
            workload = by_name[name]
            for scorer in scorers.values():
                scorer(workload.pairs[:2])  # warm-up
            timings = timed_rounds(
                scorers, workload.pairs, args.repeats, args.cell_seconds, args.min_seconds
            )
            card_flops, our_flops = flops(card, ours, config, workload.pairs)
            row = {
                "description": workload.description,
                "pairs": len(workload.pairs),
                "layers": config.num_hidden_layers,
                "head_share_of_card": card_flops["head"] / card_flops["total"],
                "systems": {},
            }
            reference = timings["card"]["scores"]
            for system, cell in timings.items():
                entry = cell_summary(cell, len(workload.pairs), reference, "card")
                median = entry["median_s"]
                work = card_flops if system == "card" else our_flops
                row["systems"][system] = {
                    **entry,
                    "gflop": work["total"] / 1e9,
                    "head_gflop": work["head"] / 1e9,
                    "peak_fraction": work["total"] / median / 1e9 / peak["gflops"],
                }
            results[f"{name}@{config.num_hidden_layers}"] = row
            print(
                f"  {kind} ({name}, {config.num_hidden_layers} layers): "
                + ", ".join(f"{n} {e['pairs_per_s']:.2f}" for n, e in row["systems"].items())
                + " pairs/s",
                flush=True,
            )
        del handler, ours, card, scorers
        gc.collect()
    return results
