"""Regression guard for the handler's batching: order, parity with the reference, token budget.

The reference is ``bench/reference.py``'s ``SampleCrossEncoder``: the computation of the
sample handler on the LangChain docs' page (one padded batch, ``padding=True,
truncation=True, max_length=512``). No timing assertions.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch
from handler import (
    inference,
    reranker_engine,
    reranker_loading,
    reranker_settings,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from references import SampleCrossEncoder

QUERIES = ["what is the plan for the economy", "energy costs", "jobs in america"]
WORDS = "the plan economy jobs america energy tax credit inflation price families work".split()
BUDGET = 256  # small enough that the mixed set below needs several micro-batches


def mixed_pairs(count: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    """Short, medium and far-over-512-token documents in a fixed random order."""
    rng = random.Random(seed)
    sizes = [rng.choice([1, 3, 8, 20, 60, 900]) for _ in range(count)]
    return [
        (rng.choice(QUERIES), " ".join(rng.choice(WORDS) for _ in range(size))) for size in sizes
    ]


@pytest.fixture(scope="module")
def reference_scores(tiny_model_dir: Path) -> list[float]:
    return SampleCrossEncoder(str(tiny_model_dir))(mixed_pairs())


@pytest.fixture(scope="module", params=["packed", "padded"])
def small_budget_reranker(request, tiny_model_dir: Path) -> reranker_engine.Reranker:
    """The handler's reranker with a small budget, on each forward: packed and padded."""
    settings_ = dataclasses.replace(
        reranker_settings.Settings.from_env(), packed=request.param == "packed"
    )
    reranker = reranker_loading.load_reranker(str(tiny_model_dir), settings_)
    assert (reranker.packed is not None) == settings_.packed
    reranker.batch_tokens = BUDGET
    return reranker


def test_the_mixed_set_really_exceeds_512_tokens_and_needs_several_batches(
    small_budget_reranker,
):
    encoded, batches = small_budget_reranker.plan(mixed_pairs())
    lengths = [len(item["input_ids"]) for item in encoded]
    assert max(lengths) == small_budget_reranker.max_length == 512  # truncated, not dropped
    assert len(batches) > 3


def test_scores_match_the_reference_in_input_order(small_budget_reranker, reference_scores):
    ours = small_budget_reranker.score(mixed_pairs())
    assert len(ours) == len(reference_scores)
    assert max(abs(a - b) for a, b in zip(ours, reference_scores, strict=True)) <= 1e-4


def test_default_settings_also_match_the_reference(tiny_model_dir, reference_scores):
    reranker = inference.model_fn(str(tiny_model_dir))
    ours = reranker.score(mixed_pairs())
    assert max(abs(a - b) for a, b in zip(ours, reference_scores, strict=True)) <= 1e-4


def test_shuffling_the_request_shuffles_the_scores(small_budget_reranker, reference_scores):
    pairs = mixed_pairs()
    permutation = list(range(len(pairs)))
    random.Random(1).shuffle(permutation)
    shuffled = small_budget_reranker.score([pairs[i] for i in permutation])
    for position, index in enumerate(permutation):
        assert shuffled[position] == pytest.approx(reference_scores[index], abs=1e-4)


def test_every_forward_pass_stays_within_the_budget_and_covers_each_pair_once(
    small_budget_reranker,
):
    pairs = mixed_pairs()
    shapes: list[tuple[int, int]] = []

    def record(module, args, kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))

    # The embeddings see every pass: [rows, width] padded, [1, real tokens] packed.
    embeddings = small_budget_reranker.model.base_model.embeddings
    hook = embeddings.register_forward_pre_hook(record, with_kwargs=True)
    try:
        small_budget_reranker.score(pairs)
    finally:
        hook.remove()
    encoded, batches = small_budget_reranker.plan(pairs)
    lengths = [[len(encoded[i]["input_ids"]) for i in batch] for batch in batches]
    padded = [(len(batch), max(batch)) for batch in lengths]
    if small_budget_reranker.packed:
        assert shapes == [(1, sum(batch)) for batch in lengths]  # real tokens only
    else:
        assert shapes == padded  # the model ran exactly the planned micro-batches
    assert all(rows * width <= BUDGET or rows == 1 for rows, width in padded)
    assert sorted(i for batch in batches for i in batch) == list(range(len(pairs)))


def test_the_reference_is_the_single_padded_batch(tiny_model_dir):
    """Guard the guard: the reference really is one batch padded to the longest pair."""
    reference = SampleCrossEncoder(str(tiny_model_dir))
    shapes: list[tuple[int, ...]] = []
    hook = reference.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True,
    )
    try:
        reference(mixed_pairs())
    finally:
        hook.remove()
    assert shapes == [(len(mixed_pairs()), 512)]


def plan_cost(lengths: list[int], batches: list[list[int]], packed: bool) -> float:
    overhead = reranker_engine.BATCH_OVERHEAD_TOKENS
    return sum(
        overhead
        + reranker_engine.batch_cost(
            len(batch),
            max(lengths[i] for i in batch),
            sum(lengths[i] for i in batch),
            packed,
        )
        for batch in batches
    )


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=600), max_size=300),
    budget=st.integers(min_value=1, max_value=20_000),
    packed=st.booleans(),
)
def test_plan_batches_properties(lengths, budget, packed):
    batches = reranker_engine.plan_batches(lengths, budget, packed=packed)
    flat = [index for batch in batches for index in batch]
    assert sorted(flat) == list(range(len(lengths)))  # nothing dropped or duplicated
    assert all(batch for batch in batches)
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert padded <= budget or len(batch) == 1
        assert len(batch) <= reranker_engine.MAX_BATCH_ROWS
    fits = max(lengths, default=0) * len(lengths) <= budget
    if lengths and fits and len(lengths) <= reranker_engine.MAX_BATCH_ROWS:
        assert batches == [list(range(len(lengths)))]  # what fits in one batch stays one
    else:  # cut by cost: never costlier than the always-feasible plan of one pass per pair
        singles = [[i] for i in range(len(lengths))]
        assert plan_cost(lengths, batches, packed) <= plan_cost(lengths, singles, packed) + 1e-6


@pytest.mark.parametrize("packed", [True, False])
def test_a_request_that_fits_is_never_split(packed):
    # (a)-like: 20 chunks of 79-123 tokens; splitting them measured slower than one batch.
    lengths = [79 + (i * 7) % 45 for i in range(20)]
    assert reranker_engine.plan_batches(lengths, 8192, packed=packed) == [list(range(20))]


def test_collate_pads_like_the_tokenizer(small_budget_reranker):
    tokenizer = small_budget_reranker.tokenizer
    encoded = small_budget_reranker.tokenize(mixed_pairs(8))
    ours = small_budget_reranker.collate(encoded)
    reference = tokenizer.pad(encoded, padding=True, return_tensors="pt")
    assert set(ours) == set(reference)
    for key, tensor in reference.items():
        assert torch.equal(ours[key], tensor), key
