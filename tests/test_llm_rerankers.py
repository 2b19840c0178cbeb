"""LLM rerankers and two-label heads in the handler: kinds, parity, packing, instructions.

The yes/no reference is ``bench/reference.py``'s ``ModelCardYesNoReranker``: Qwen3-Reranker's
model card computation (full LM head, left padding, one padded batch, log-softmax over
[no, yes]). Models are tiny and random (``offline_models``); their initializer range spreads
the scores, so 1e-4 separates right from wrong.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from pathlib import Path

import pytest
import torch
from handler import inference, reranker_decoder, reranker_encoder, reranker_engine, reranker_loading
from references import ModelCardYesNoReranker, SampleCrossEncoder
from sagemaker_inference.errors import GenericInferenceToolkitError

from sagemaker_reranker.examples.speech import SPEECH

PARITY = 1e-4  # fp32, against the model card's computation
PACKING = 1e-5  # fp32, packed against padded: the same arithmetic in another order
MAX_LENGTH = 512  # small enough that the 900-word document below is truncated to fit
QUERIES = ["What is the plan for the economy?", "energy costs", "jobs in america"]


def mixed_pairs(count: int = 12, seed: int = 0) -> list[tuple[str, str]]:
    """Pairs from the speech: one word to 900 words (far over MAX_LENGTH tokens)."""
    rng = random.Random(seed)
    words = SPEECH.read_text(encoding="utf-8").split()
    sizes = [1, 900] + [rng.choice([1, 5, 30, 120, 300]) for _ in range(count - 2)]
    pairs = []
    for size in sizes:
        start = rng.randrange(len(words) - size)
        pairs.append((rng.choice(QUERIES), " ".join(words[start : start + size])))
    return pairs


def load(model_dir: Path, **changes) -> reranker_engine.Reranker:
    settings = reranker_loading.Settings.from_env()
    return reranker_loading.load_reranker(str(model_dir), dataclasses.replace(settings, **changes))


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def card(tiny_qwen3_dir: Path) -> ModelCardYesNoReranker:
    return ModelCardYesNoReranker.from_dir(str(tiny_qwen3_dir), max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def card_scores(card) -> list[float]:
    return card(mixed_pairs())


@pytest.fixture(scope="module", params=["packed", "padded"])
def yes_no(request, tiny_qwen3_dir: Path) -> reranker_decoder.DecoderReranker:
    return load(tiny_qwen3_dir, max_length=MAX_LENGTH, packed=request.param == "packed")


# ---------------------------------------------------------------------------- kinds


def test_each_kind_gets_its_scorer_and_default_length(
    tiny_model_dir, tiny_two_label_dir, tiny_qwen3_dir, tiny_qwen3_seqcls_dir
):
    plain, two_label = load(tiny_model_dir), load(tiny_two_label_dir)
    causal, converted = load(tiny_qwen3_dir), load(tiny_qwen3_seqcls_dir)
    assert isinstance(plain, reranker_encoder.EncoderReranker) and plain.max_length == 512
    assert isinstance(two_label, reranker_encoder.EncoderReranker) and two_label.packed
    assert isinstance(causal, reranker_decoder.DecoderReranker) and causal.yes_no is not None
    assert isinstance(converted, reranker_decoder.DecoderReranker) and converted.yes_no is None
    assert causal.max_length == converted.max_length == 8192  # the prompted default
    assert isinstance(causal.packed, reranker_decoder.PackedDecoder)
    # The causal model's full-vocabulary head is never part of a score: one row is.
    assert causal.weight.shape == (causal.model.config.hidden_size,)


def test_max_length_setting_and_the_model_limit(tiny_qwen3_dir, monkeypatch):
    monkeypatch.setenv("RERANKER_MAX_LENGTH", "100000")
    assert inference.model_fn(str(tiny_qwen3_dir)).max_length == 8192  # the model's limit
    monkeypatch.setenv("RERANKER_MAX_LENGTH", "300")
    reranker = inference.model_fn(str(tiny_qwen3_dir))
    lengths = [len(row["input_ids"]) for row in reranker.tokenize(mixed_pairs())]
    assert max(lengths) == 300  # the prompt included
    monkeypatch.setenv("RERANKER_MAX_LENGTH", "20")
    with pytest.raises(ValueError, match="leaves no room"):
        inference.model_fn(str(tiny_qwen3_dir))


# ---------------------------------------------------------------------------- parity


def test_prompt_tokens_are_the_model_cards(yes_no, card):
    """Prefix and suffix intact on every pair, truncated or not; the body as the card cuts it."""
    pairs = mixed_pairs()
    ours = [row["input_ids"] for row in yes_no.tokenize(pairs)]
    batch = card.batch(pairs)
    theirs = [row[mask.bool()].tolist() for row, mask in zip(*batch.values(), strict=True)]
    assert ours == theirs
    assert max(len(row) for row in ours) == MAX_LENGTH  # the 900 words were truncated
    assert all(row[-len(yes_no.suffix) :] == yes_no.suffix for row in ours)


def test_yes_no_scores_match_the_model_card(yes_no, card, card_scores):
    pairs = mixed_pairs()
    ours = yes_no.score(pairs)
    assert max_diff(ours, card_scores) <= PARITY
    probabilities = [1 / (1 + math.exp(-score)) for score in ours]
    assert max_diff(probabilities, card.probabilities(pairs)) <= PARITY / 10
    assert max(card_scores) - min(card_scores) > 1  # the check has teeth: scores differ


@pytest.mark.parametrize("budget", [64, 700, 100_000])
def test_packed_equals_padded_at_every_budget(tiny_qwen3_dir, budget):
    pairs = mixed_pairs()
    packed, padded = load(tiny_qwen3_dir, packed=True), load(tiny_qwen3_dir, packed=False)
    packed.batch_tokens = padded.batch_tokens = budget
    assert packed.packed is not None and padded.packed is None
    assert max_diff(packed.score(pairs), padded.score(pairs)) <= PACKING


def test_no_pair_attends_to_another(tiny_qwen3_dir):
    """In one packed pass (shared prompt start included) each score equals the pair's alone."""
    reranker = load(tiny_qwen3_dir, max_length=MAX_LENGTH)
    pairs = mixed_pairs()
    rows = [row["input_ids"] for row in reranker.tokenize(pairs)]
    assert reranker_decoder.shared_prefix(rows) > len(reranker.prefix)  # prompt + instruction
    with torch.inference_mode():
        together = reranker.forward([{"input_ids": row} for row in rows]).tolist()
        alone = [reranker.forward([{"input_ids": row}]).item() for row in rows]
    assert max_diff(together, alone) <= PACKING


def test_shuffled_request_gives_shuffled_scores(yes_no, card_scores):
    pairs = mixed_pairs()
    order = list(range(len(pairs)))
    random.Random(1).shuffle(order)
    shuffled = yes_no.score([pairs[i] for i in order])
    assert max_diff(shuffled, [card_scores[i] for i in order]) <= PARITY


def test_converted_classifier_scores_as_the_causal_model(tiny_qwen3_seqcls_dir, card_scores):
    """The seq-cls form (head ``W[yes] − W[no]``) takes the same prompt and gives the same
    scores as the card's yes/no computation on the causal model it was made from."""
    converted = load(tiny_qwen3_seqcls_dir, max_length=MAX_LENGTH)
    assert max_diff(converted.score(mixed_pairs()), card_scores) <= PARITY


def test_two_label_head_scores_logit_1_minus_logit_0(tiny_two_label_dir):
    pairs = mixed_pairs()
    logits = SampleCrossEncoder(str(tiny_two_label_dir))(pairs)  # [l0, l1] per pair, flat
    reference = [logits[i + 1] - logits[i] for i in range(0, len(logits), 2)]
    for packed in (True, False):
        reranker = load(tiny_two_label_dir, packed=packed)
        reranker.batch_tokens = 256  # several micro-batches
        assert max_diff(reranker.score(pairs), reference) <= PARITY


# ---------------------------------------------------------------------------- instructions


def call(reranker, payload) -> list[float]:
    body = json.dumps(payload).encode()
    return json.loads(inference.transform_fn(reranker, body, "application/json", None))["scores"]


def test_the_request_instruction_changes_the_score_as_in_the_card(yes_no, card):
    pairs = mixed_pairs(6)
    instruction = "Find passages about the cost of living"
    default = call(yes_no, {"pairs": pairs})
    told = call(yes_no, {"pairs": pairs, "instruction": instruction})
    assert max_diff(default, told) > 0.1
    assert max_diff(told, card(pairs, instruction)) <= PARITY
    query, documents = pairs[0][0], [document for _, document in pairs]
    by_query = call(yes_no, {"query": query, "texts": documents, "instruction": instruction})
    assert max_diff(by_query, card([(query, d) for d in documents], instruction)) <= PARITY


def test_encoders_ignore_the_instruction(tiny_model_dir):
    reranker = inference.model_fn(str(tiny_model_dir))
    pairs = mixed_pairs(4)
    assert call(reranker, {"pairs": pairs}) == call(reranker, {"pairs": pairs, "instruction": "x"})


@pytest.mark.parametrize(
    ("instruction", "words"),
    [(5, "'instruction' must be a string"), ("x" * 4097, "over the limit of 4096")],
)
def test_a_bad_instruction_is_a_400(yes_no, instruction, words):
    with pytest.raises(GenericInferenceToolkitError) as caught:
        call(yes_no, {"pairs": [["q", "d"]], "instruction": instruction})
    assert caught.value.status_code == 400 and words in caught.value.message
    assert len(call(yes_no, {"pairs": [["q", "d"]], "instruction": "x" * 4096})) == 1


def manifest_copy(source: Path, dest: Path, **fields) -> Path:
    """``source`` with a manifest at its root holding ``fields`` (as ``package`` writes)."""
    dest.mkdir()
    for name in os.listdir(source):
        (dest / name).symlink_to(source / name)
    (dest / "reranker-manifest.json").write_text(json.dumps(fields))
    return dest


def test_instruction_from_the_manifest_and_from_the_environment(
    tiny_qwen3_dir, card, tmp_path, monkeypatch
):
    pairs = mixed_pairs(4)
    recorded = "Judge whether the passage is about energy"
    model = manifest_copy(
        tiny_qwen3_dir, tmp_path / "m", scoring="yes-no", prompt="qwen3-reranker",
        instruction=recorded,
    )  # fmt: skip
    monkeypatch.setenv("RERANKER_MAX_LENGTH", str(MAX_LENGTH))
    assert max_diff(inference.model_fn(str(model)).score(pairs), card(pairs, recorded)) <= PARITY
    monkeypatch.setenv("RERANKER_INSTRUCTION", "Find jobs")
    assert max_diff(inference.model_fn(str(model)).score(pairs), card(pairs, "Find jobs")) <= (
        PARITY
    )


def test_max_tokens_counts_the_prompt(tiny_qwen3_dir, monkeypatch):
    reranker = inference.model_fn(str(tiny_qwen3_dir))
    prompt_tokens = len(reranker.tokenize([("q", "d")])[0]["input_ids"])
    monkeypatch.setenv("RERANKER_MAX_TOKENS", str(prompt_tokens * 2 - 1))
    limited = inference.model_fn(str(tiny_qwen3_dir))
    assert len(call(limited, {"pairs": [["q", "d"]]})) == 1
    with pytest.raises(GenericInferenceToolkitError) as caught:
        call(limited, {"pairs": [["q", "d"], ["q", "d"]]})
    assert caught.value.status_code == 413 and "RERANKER_MAX_TOKENS" in caught.value.message


# ---------------------------------------------------------------------------- refusals


def test_a_tokenizer_without_single_yes_and_no_tokens_is_refused(
    tiny_qwen3_dir, tiny_model_dir, tmp_path
):
    """The tiny Qwen3 with the tiny BERT's WordPiece vocabulary (no "yes", no "no")."""
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        (model / name).symlink_to(tiny_qwen3_dir / name)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).symlink_to(tiny_model_dir / name)
    with pytest.raises(ValueError, match="no single 'yes' token"):
        inference.model_fn(str(model))


@pytest.mark.parametrize(
    ("fixture", "scoring", "words"),
    [
        ("tiny_qwen3_dir", "classifier", "RERANKER_SCORING=yes-no"),
        ("tiny_two_label_dir", "yes-no", "needs a causal LM"),
        ("tiny_model_dir", "bogus", "RERANKER_SCORING must be one of"),
    ],
)
def test_a_scoring_that_does_not_fit_the_model_is_refused(
    request, monkeypatch, fixture, scoring, words
):
    monkeypatch.setenv("RERANKER_SCORING", scoring)
    with pytest.raises(ValueError, match=words):
        inference.model_fn(str(request.getfixturevalue(fixture)))


def test_a_causal_model_scores_as_yes_no_when_the_manifest_says_so(
    tiny_qwen3_dir, tmp_path, monkeypatch
):
    model = manifest_copy(tiny_qwen3_dir, tmp_path / "m", scoring="classifier")
    with pytest.raises(ValueError, match="no classification head"):
        inference.model_fn(str(model))
    monkeypatch.setenv("RERANKER_SCORING", "yes-no")  # the setting wins over the manifest
    assert isinstance(inference.model_fn(str(model)), reranker_decoder.DecoderReranker)
