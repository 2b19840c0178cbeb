"""Loading: where the weights come from, how the model scores, which dtype, what is refused
before reading any.

A model is scored as a ``classifier`` (``*ForSequenceClassification``, 1 or 2 labels) or by
its ``yes-no`` answer to Qwen3-Reranker's prompt (a causal LM); a Qwen3 classifier is a
converted Qwen3-Reranker and gets the prompt too. ``package`` records the kind in the
archive's manifest; ``RERANKER_SCORING`` and ``RERANKER_INSTRUCTION`` override it; without
either, the model's config decides, by the rules of ``reranker_contract.decide_kind``.
"""

from __future__ import annotations

import json
import logging
import os
import platform

import torch
from reranker_contract import (
    CLASSIFIER,
    KIND_FIELDS,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    Kind,
    decide_kind,
    is_pickle_weight_file,
    is_weight_file,
)
from reranker_decoder import DecoderReranker
from reranker_encoder import EncoderReranker
from reranker_engine import Reranker
from reranker_settings import Settings
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

logger = logging.getLogger(__name__)


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


def worker_device(context=None) -> torch.device:
    """The device of this model-server worker: the GPU the server gave it, else the CPU.

    The serving container starts one worker per GPU and names each worker's GPU in
    ``context.system_properties["gpu_id"]``; without it every worker would load onto GPU 0,
    leaving the others idle or running that one out of memory. Without a context (local
    use, tests) a CUDA machine runs on GPU 0.
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    properties = getattr(context, "system_properties", None) or {}
    gpu_id = properties.get("gpu_id")
    try:
        index = 0 if gpu_id is None else int(gpu_id)
    except (TypeError, ValueError):
        raise ValueError(f"the model server's gpu_id {gpu_id!r} is not a GPU index") from None
    visible = torch.cuda.device_count()
    if not 0 <= index < visible:
        raise ValueError(f"the model server's gpu_id {index} names no GPU: {visible} visible")
    return torch.device("cuda", index)


def weight_files(model_dir: str) -> list[str]:
    """The weight files baked into ``model_dir`` (none without a ``config.json``)."""
    if not model_dir or not os.path.isfile(os.path.join(model_dir, "config.json")):
        return []
    return sorted(name for name in os.listdir(model_dir) if is_weight_file(name))


def check_weights(model_dir: str, files: list[str], allow_pickle: bool) -> None:
    """Refuse, before reading any of them, pickle weights that were not explicitly allowed."""
    if allow_pickle or not all(is_pickle_weight_file(name) for name in files):
        return
    raise ValueError(
        f"{model_dir} holds only pickle weights ({', '.join(files)}), which can run code when "
        "loaded; convert them to safetensors, or set RERANKER_ALLOW_PICKLE=1 to trust them"
    )


def read_manifest(model_dir: str) -> dict:
    """The scoring fields of ``model_dir``'s manifest ({} when there is none)."""
    path = os.path.join(model_dir or "", MANIFEST)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, "rb") as handle:
            payload = json.loads(handle.read(MAX_MANIFEST_BYTES + 1))
    except (OSError, ValueError, RecursionError) as error:
        raise ValueError(f"{MANIFEST} in {model_dir} is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{MANIFEST} in {model_dir} is not a JSON object")
    fields = {key: payload.get(key) for key in KIND_FIELDS}
    for key, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{MANIFEST}: {key!r} must be a string or null")
    return {key: value for key, value in fields.items() if value is not None}


def resolve_kind(config, manifest: dict, settings: Settings, source: str) -> Kind:
    """The kind to score ``source`` as: the setting, else the manifest, else its config. A
    recorded prompt applies to the classifier it was recorded for, not to a yes-no override."""
    architectures = getattr(config, "architectures", None) or []
    architecture = architectures[0] if architectures else config.model_type
    requested = settings.scoring if settings.scoring != "auto" else manifest.get("scoring")
    recorded = manifest.get("prompt") if manifest.get("scoring") in (None, CLASSIFIER) else None
    instruction = settings.instruction or manifest.get("instruction")
    return decide_kind(
        source, architecture, config.model_type, config.num_labels, requested, recorded, instruction
    )


def load_reranker(
    model_dir: str, settings: Settings | None = None, device: torch.device | None = None
) -> Reranker:
    """Load tokenizer and model from ``model_dir``, or from the hub when none are baked in,
    as the reranker of their kind's family (encoder or decoder), on ``device`` (default:
    ``worker_device()``)."""
    settings = settings or Settings.from_env()
    device = device or worker_device()
    if device.type == "cuda":
        # Kernels and buffers that name no device go to the current one: make it this one.
        torch.cuda.set_device(device)
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
    # None lets transformers fall back to pickle weights, which only RERANKER_ALLOW_PICKLE permits.
    safetensors = None if settings.allow_pickle else True

    def read_model(causal: bool):
        auto = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
        model = _load_model(auto, source, dtype, {**options, "config": config}, safetensors)
        return model.to(device).eval()

    family = EncoderReranker if kind.prompt is None else DecoderReranker
    reranker = family.load(tokenizer, config, kind, source, settings, device, read_model)
    logger.info(
        "loaded %s on %s (%s): %s, max_length=%d, batch_tokens=%d, forward=%s",
        source,
        device,
        dtype,
        kind.description,
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
