"""The generated models other tests rely on: deterministic, loadable, and of the intended kind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from sagemaker_reranker.examples.offline_models import build_offline_model


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_qwen3_tokenizer_has_the_prompt_tokens(tiny_qwen3_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    for token in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "yes", "no"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        assert token_id is not None and token_id != tokenizer.unk_token_id, token
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
    assert "token_type_ids" not in tokenizer("query", "document")


def test_tiny_qwen3_is_a_tied_causal_lm(tiny_qwen3_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    assert model.config.architectures == ["Qwen3ForCausalLM"]
    assert model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert (tiny_qwen3_dir / "model.safetensors").is_file()


def test_seqcls_head_is_the_yes_minus_no_row(
    tiny_qwen3_dir: Path, tiny_qwen3_seqcls_dir: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    causal = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir).eval()
    seqcls = AutoModelForSequenceClassification.from_pretrained(tiny_qwen3_seqcls_dir).eval()
    assert seqcls.config.num_labels == 1 and seqcls.config.pad_token_id is not None
    texts = ["<|im_start|>user\nWhat is the plan for the economy?<|im_end|>\n", "jobs and prices"]
    batch = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    yes, no = tokenizer.convert_tokens_to_ids(["yes", "no"])
    with torch.no_grad():
        last = causal(**batch).logits[:, -1]
        converted = seqcls(**batch).logits[:, 0]
    expected = last[:, yes] - last[:, no]
    torch.testing.assert_close(converted, expected, rtol=0, atol=1e-5)
    # The random weights spread scores widely enough for parity tests to mean something.
    assert (expected[0] - expected[1]).abs() > 0.1


def test_two_label_head(tiny_two_label_dir: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(tiny_two_label_dir)
    assert model.config.num_labels == 2
    assert model.config.architectures == ["BertForSequenceClassification"]


@pytest.mark.parametrize("kind", ["tiny-qwen3", "tiny-two-label"])
def test_builds_are_deterministic(kind: str, tmp_path: Path) -> None:
    first = build_offline_model(kind, tmp_path / "a")
    second = build_offline_model(kind, tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json"):
        assert _digest(first / name) == _digest(second / name)
    other_seed = build_offline_model(kind, tmp_path / "c", seed=1)
    assert _digest(first / "model.safetensors") != _digest(other_seed / "model.safetensors")


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown offline model"):
        build_offline_model("tiny-llama", tmp_path)
