"""The packed forwards (``PackedEncoder``, ``PackedDecoder``) against Hugging Face's own.

Real models from generated configs (BERT from the tiny test model, a small XLM-RoBERTa built
here; small Llama, Qwen2 and Qwen3 decoders), rows of mixed length including a full-length
one, a batch of equal lengths (no mask), a single pair and, for decoders, rows sharing their
start (computed once). Hugging Face's forward is the reference: same weights, same inputs.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch
from handler import reranker_decoder, reranker_encoder, reranker_loading, reranker_packed_decoder
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    LlamaConfig,
    Qwen2Config,
    Qwen3Config,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

TOLERANCE = 1e-5  # fp32; the handler's promise to users is 1e-4 against one padded batch


def small_xlm_roberta() -> XLMRobertaForSequenceClassification:
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=130,  # 128 usable positions after the padding index
        num_labels=1,
    )
    return XLMRobertaForSequenceClassification(config).eval()


def random_rows(lengths: list[int], vocab: int, pair_types: bool) -> list[dict]:
    """Token ids that avoid the special ids 0-2 (pad is 0 for BERT, 1 for XLM-R)."""
    rng = random.Random(0)
    rows = []
    for length in lengths:
        row = {"input_ids": [rng.randrange(3, vocab) for _ in range(length)]}
        if pair_types:
            first = length // 3
            row["token_type_ids"] = [0] * first + [1] * (length - first)
        rows.append(row)
    return rows


def padded_logits(model, rows: list[dict]) -> torch.Tensor:
    """Hugging Face's forward on right-padded rows with an attention mask."""
    width = max(len(row["input_ids"]) for row in rows)
    pad = model.config.pad_token_id or 0

    def grid(key: str, fill: int) -> torch.Tensor:
        return torch.tensor([row[key] + [fill] * (width - len(row[key])) for row in rows])

    features = {
        "input_ids": grid("input_ids", pad),
        "attention_mask": torch.tensor(
            [[1] * len(row["input_ids"]) + [0] * (width - len(row["input_ids"])) for row in rows]
        ),
    }
    if "token_type_ids" in rows[0]:
        features["token_type_ids"] = grid("token_type_ids", 0)
    return model(**features).logits[:, 0]


@pytest.fixture(scope="module")
def bert(tiny_model_dir: Path):
    return AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir)).eval()


BATCHES = {
    "mixed": [37, 5, 128, 64, 1, 90, 3],
    "equal": [40] * 6,
    "single": [77],
    "full-length": [128, 128, 2],
}


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("kind", ["bert", "xlm-roberta"])
def test_packed_logits_equal_the_padded_forward(kind, batch, bert):
    model = bert if kind == "bert" else small_xlm_roberta()
    assert reranker_encoder.PackedEncoder.supports(model)
    rows = random_rows(BATCHES[batch], model.config.vocab_size, pair_types=kind == "bert")
    with torch.inference_mode():
        reference = padded_logits(model, rows)
        packed = reranker_encoder.PackedEncoder(model)(rows, torch.device("cpu"))
    assert packed.shape == reference.shape == (len(rows),)
    assert torch.allclose(packed, reference, atol=TOLERANCE, rtol=0), (packed, reference)
    # Each row is scored on its own tokens: its logit does not depend on its neighbours.
    with torch.inference_mode():
        alone = reranker_encoder.PackedEncoder(model)(rows[-1:], torch.device("cpu"))
    assert abs(float(alone[0]) - float(packed[-1])) <= TOLERANCE


def test_models_outside_the_packed_family_keep_the_padded_forward():
    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    relative = BertConfig(
        vocab_size=300,
        num_hidden_layers=1,
        num_labels=1,
        position_embedding_type="relative_key",
        **small,
    )
    distil = DistilBertConfig(vocab_size=300, n_layers=1, dim=32, n_heads=2, hidden_dim=64)
    distil.num_labels = 1
    for model in (
        BertForSequenceClassification(relative),
        DistilBertForSequenceClassification(distil),
    ):
        assert not reranker_encoder.PackedEncoder.supports(model), type(model).__name__


def test_reranker_packed_and_padded_forwards_agree(tiny_model_dir: Path, monkeypatch):
    pairs = [("energy costs", "the plan " * n) for n in (1, 30, 400, 7, 7)]
    monkeypatch.setenv("RERANKER_PACKED", "0")
    padded = reranker_loading.load_reranker(str(tiny_model_dir))
    assert padded.packed is None and not padded.settings.packed
    packed = reranker_loading.load_reranker(
        str(tiny_model_dir), dataclasses.replace(padded.settings, packed=True)
    )
    assert packed.packed is not None
    for a, b in zip(packed.score(pairs), padded.score(pairs), strict=True):
        assert a == pytest.approx(b, abs=TOLERANCE)


DECODER_WIDTHS = {
    "vocab_size": 300,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "initializer_range": 0.2,
}
DECODERS = {
    "llama": lambda: LlamaConfig(**DECODER_WIDTHS),
    "qwen2": lambda: Qwen2Config(**DECODER_WIDTHS),
    "qwen3": lambda: Qwen3Config(head_dim=16, **DECODER_WIDTHS),
}
SHARED_START = [7, 8, 9, 10, 11, 12]


def decoder_rows(batch: str) -> list[list[int]]:
    if batch == "shared-start":  # one common start, then rows of their own lengths
        return [SHARED_START + row["input_ids"] for row in random_rows([30, 1, 9], 300, False)]
    if batch == "identical":  # everything shared but the last token
        return [SHARED_START * 3] * 3
    return [row["input_ids"] for row in random_rows(BATCHES[batch], 300, False)]


@pytest.mark.parametrize("batch", [*sorted(BATCHES), "shared-start", "identical"])
@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_packed_decoder_equals_hugging_face_row_by_row(kind, batch):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(DECODERS[kind]()).eval()
    assert reranker_decoder.PackedDecoder.supports(model)
    rows = decoder_rows(batch)
    base = model.base_model
    with torch.inference_mode():
        packed = reranker_decoder.PackedDecoder(base)(rows, torch.device("cpu"))
        alone = torch.stack(
            [base(input_ids=torch.tensor([row])).last_hidden_state[0, -1] for row in rows]
        )
        padded = reranker_decoder.padded_last_hidden(base, rows, 0, torch.device("cpu"))
    assert packed.shape == alone.shape == (len(rows), model.config.hidden_size)
    assert torch.allclose(packed, alone, atol=TOLERANCE, rtol=0), (packed - alone).abs().max()
    assert torch.allclose(padded, alone, atol=TOLERANCE, rtol=0), (padded - alone).abs().max()


def test_fused_projections_are_the_models_own_weights():
    """Fusing keeps one copy: the modules' weights become views of the fused matrices."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(DECODERS["qwen2"]()).eval()  # q/k/v with bias
    before = {name: value.clone() for name, value in model.state_dict().items()}
    packed = reranker_decoder.PackedDecoder(model.base_model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)

    def storage(tensor: torch.Tensor) -> int:
        return tensor.untyped_storage().data_ptr()

    for layer, fused in zip(model.base_model.layers, packed.fused, strict=True):
        attention, mlp = layer.self_attn, layer.mlp
        for projection in (attention.q_proj, attention.k_proj, attention.v_proj):
            assert storage(projection.weight) == storage(fused.qkv_weight)
            assert storage(projection.bias) == storage(fused.qkv_bias)
        for projection in (mlp.gate_proj, mlp.up_proj):
            assert storage(projection.weight) == storage(fused.gate_up_weight)


def test_decoders_with_sliding_windows_keep_the_padded_forward():
    config = Qwen2Config(use_sliding_window=True, sliding_window=16, **DECODER_WIDTHS)
    model = AutoModelForCausalLM.from_config(config)
    assert not reranker_decoder.PackedDecoder.supports(model)


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_a_kept_start_serves_the_next_pass_as_hugging_face_would(kind, monkeypatch):
    """Pass 1 records its common start; pass 2 (more rows, and then one row alone) starting
    the same reuses it instead of computing it; a pass starting otherwise records afresh;
    a start too large to keep is computed in every pass. Each against Hugging Face."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(DECODERS[kind]()).eval()
    base = model.base_model
    decoder = reranker_decoder.PackedDecoder(base)
    cpu = torch.device("cpu")
    own = [row["input_ids"] for row in random_rows([30, 1, 9, 17], 300, False)]
    first, second = [SHARED_START + row for row in own[:2]], [SHARED_START + row for row in own[2:]]
    other = [[5, *SHARED_START, *row] for row in own[:2]]

    def reference(rows):
        return torch.stack(
            [base(input_ids=torch.tensor([row])).last_hidden_state[0, -1] for row in rows]
        )

    def check(rows):
        with torch.inference_mode():
            packed, alone = decoder(rows, cpu), reference(rows)
        assert torch.allclose(packed, alone, atol=TOLERANCE, rtol=0), (packed - alone).abs().max()

    check(first)
    kept = decoder.kept
    assert kept is not None and kept.ids == tuple(SHARED_START)
    assert len(kept.keys) == len(kept.values) == model.config.num_hidden_layers
    assert kept.keys[0].shape[0] == len(SHARED_START)
    passes = []  # (shared, whether this pass computed it) per pass

    class Recorded(reranker_packed_decoder.PackedLayout):
        def __init__(self, rows, shared, device, computed=True):
            passes.append((shared, computed))
            super().__init__(rows, shared, device, computed)

    monkeypatch.setattr(reranker_packed_decoder, "PackedLayout", Recorded)
    check(second)
    check(second[:1])  # one row alone shares nothing, yet starts with the kept start
    assert passes == [(len(SHARED_START), False)] * 2 and decoder.kept is kept
    check(other)
    assert passes[-1] == (len(SHARED_START) + 1, True) and decoder.kept.ids == (5, *SHARED_START)
    monkeypatch.setattr(reranker_packed_decoder, "PREFIX_STATES_BYTES", 16)
    check(first)
    check(second)
    assert passes[-2:] == [(len(SHARED_START), True)] * 2
    assert decoder.kept.ids == (5, *SHARED_START)  # nothing new kept
