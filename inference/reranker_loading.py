"""Loading: where the weights come from, which dtype, what is refused before reading any."""

from __future__ import annotations

import logging
import os
import platform

import torch
from reranker_kinds import read_manifest, resolve_kind
from reranker_prompt import DEFAULT_PROMPT_MAX_LENGTH, PromptReranker, yes_no_ids
from reranker_scoring import EncoderReranker, Reranker, model_max_length
from reranker_settings import Settings
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

logger = logging.getLogger(__name__)

SAFE_WEIGHTS = (".safetensors",)
# Pickle files run code when loaded: read only with RERANKER_ALLOW_PICKLE=1.
PICKLE_WEIGHTS = (".bin", ".pt", ".pth")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX512-BF16 or AMX)."""
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_dtype(requested: str | None, device: torch.device) -> torch.dtype:
    """fp16 on CUDA, fp32 on CPU; an explicit request wins unless the CPU would crawl."""
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    if requested:
        name = aliases.get(requested.lower(), requested.lower())
        if name not in names:
            raise ValueError(f"RERANKER_DTYPE must be one of {sorted(names)}, got {requested!r}")
        if device.type == "cpu" and name == "bfloat16" and not cpu_has_native_bf16():
            logger.warning(
                "RERANKER_DTYPE=bfloat16 ignored: this CPU has no native bf16 "
                "(avx512_bf16/amx_bf16), where bf16 runs many times slower; using float32"
            )
            return torch.float32
        if device.type == "cpu" and name == "float16":
            logger.warning("RERANKER_DTYPE=float16 is slow on CPU; using float32")
            return torch.float32
        return names[name]
    return torch.float16 if device.type == "cuda" else torch.float32


def weight_files(model_dir: str) -> list[str]:
    """The weight files baked into ``model_dir`` (none without a ``config.json``)."""
    if not model_dir or not os.path.isfile(os.path.join(model_dir, "config.json")):
        return []
    suffixes = SAFE_WEIGHTS + PICKLE_WEIGHTS
    return sorted(name for name in os.listdir(model_dir) if name.endswith(suffixes))


def check_weights(model_dir: str, files: list[str], allow_pickle: bool) -> None:
    """Refuse, before reading any of them, pickle weights that were not explicitly allowed."""
    if allow_pickle or any(name.endswith(SAFE_WEIGHTS) for name in files):
        return
    raise ValueError(
        f"{model_dir} holds only pickle weights ({', '.join(files)}), which can run code when "
        "loaded; convert them to safetensors, or set RERANKER_ALLOW_PICKLE=1 to trust them"
    )


def load_reranker(model_dir: str, settings: Settings | None = None) -> Reranker:
    """Load tokenizer and model from ``model_dir``, or from the hub when none are baked in,
    as the scorer their kind needs (``reranker_kinds``)."""
    settings = settings or Settings.from_env()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = choose_dtype(settings.dtype, device)
    files = weight_files(model_dir)
    if files:
        check_weights(model_dir, files, settings.allow_pickle)
        source, revision = model_dir, None
    else:
        source, revision = settings.model_id, settings.revision
        logger.info("no weights in %s; loading %s from the hub", model_dir, source)
    options = {"revision": revision, "trust_remote_code": settings.trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
    except OSError as error:
        where = f"{source}@{revision}" if revision else source
        raise OSError(f"cannot load the tokenizer of {where}: {error}") from error
    if not tokenizer.is_fast:
        raise ValueError(f"{source} has no fast tokenizer (tokenizer.json); one is required")
    config = AutoConfig.from_pretrained(source, **options)
    kind = resolve_kind(config, read_manifest(model_dir), settings, source)
    yes_no = yes_no_ids(tokenizer, source) if kind.scoring == "yes-no" else None
    # None lets transformers fall back to pickle weights, which only RERANKER_ALLOW_PICKLE permits.
    safetensors = None if settings.allow_pickle else True
    auto = AutoModelForCausalLM if kind.scoring == "yes-no" else AutoModelForSequenceClassification
    model = _load_model(auto, source, dtype, {**options, "config": config}, safetensors)
    model.to(device).eval()
    if kind.prompt is None:
        reranker = EncoderReranker(tokenizer, model, device, settings)
    else:
        limit = model_max_length(tokenizer, config)
        wanted = settings.max_length or DEFAULT_PROMPT_MAX_LENGTH
        reranker = PromptReranker(
            tokenizer, model, device, settings, min(wanted, limit), kind.instruction, yes_no
        )
    logger.info(
        "loaded %s on %s (%s): %s, max_length=%d, batch_tokens=%d, forward=%s",
        source,
        device,
        dtype,
        kind.describe(config),
        reranker.max_length,
        reranker.batch_tokens,
        "packed" if reranker.packed else "padded",
    )
    return reranker


def _load_model(auto, source: str, dtype: torch.dtype, options: dict, safetensors: bool | None):
    options = {**options, "use_safetensors": safetensors}
    try:
        return auto.from_pretrained(source, dtype=dtype, **options)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        return auto.from_pretrained(source, torch_dtype=dtype, **options)
