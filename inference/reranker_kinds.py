"""Which kind of reranker a model is, and so how the handler scores it.

- ``classifier``: a ``*ForSequenceClassification`` model with 1 label (the score is the logit)
  or 2 labels (``logit[1] − logit[0]``);
- ``yes-no``: a causal LM answering "yes" or "no" to Qwen3-Reranker's prompt (the score is
  ``logit(yes) − logit(no)`` at the last prompt token).

A model is prompted (each pair wrapped in Qwen3-Reranker's prompt with an instruction) when
it is yes-no, or a Qwen3 classifier (a converted Qwen3-Reranker). ``package`` records the
kind in ``reranker-manifest.json`` at the archive's root; ``RERANKER_SCORING`` and
``RERANKER_INSTRUCTION`` override it; without either, the model's config decides.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from reranker_prompt import DEFAULT_INSTRUCTION, PROMPTS, QWEN3_RERANKER
from reranker_settings import MAX_INSTRUCTION_CHARS, Settings

MANIFEST = "reranker-manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
# Model types whose sequence classifiers are converted Qwen3-Rerankers, expecting its prompt.
PROMPTED_CLASSIFIER_TYPES = {"qwen3"}


@dataclass(frozen=True)
class Kind:
    scoring: str
    prompt: str | None
    instruction: str | None

    def describe(self, config) -> str:
        if self.scoring == "yes-no":
            head = "logit(yes) − logit(no)"
        else:
            head = "logit[1] − logit[0]" if config.num_labels == 2 else "the logit"
        prompt = f", {self.prompt} prompt" if self.prompt else ""
        return f"{self.scoring} ({head}{prompt})"


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
    fields = {key: payload.get(key) for key in ("scoring", "prompt", "instruction")}
    for key, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{MANIFEST}: {key!r} must be a string or null")
    return {key: value for key, value in fields.items() if value is not None}


def resolve_kind(config, manifest: dict, settings: Settings, source: str) -> Kind:
    """The kind to score ``source`` as: the setting, else the manifest, else its config."""
    architectures = getattr(config, "architectures", None) or []
    architecture = architectures[0] if architectures else config.model_type
    causal = architecture.endswith(CAUSAL_SUFFIXES)
    requested = settings.scoring if settings.scoring != "auto" else manifest.get("scoring")
    scoring = requested or ("yes-no" if causal else "classifier")
    if scoring not in ("classifier", "yes-no"):
        raise ValueError(f"{MANIFEST}: unknown scoring {scoring!r}; expected classifier or yes-no")
    if scoring == "yes-no" and architecture.endswith("ForSequenceClassification"):
        raise ValueError(
            f"{source} is a {architecture}; yes-no scoring needs a causal LM (*ForCausalLM): "
            "set RERANKER_SCORING=classifier or auto"
        )
    if scoring == "classifier":
        if causal:
            raise ValueError(
                f"{source} is a causal LM ({architecture}) with no classification head; "
                "score it by its yes/no answer: RERANKER_SCORING=yes-no"
            )
        if config.num_labels not in (1, 2):
            raise ValueError(
                f"{source} has {config.num_labels} output labels; a reranker has 1 "
                "(relevance) or 2 (not relevant, relevant)"
            )
    prompt = _prompt(scoring, manifest, config)
    instruction = None
    if prompt is not None:
        instruction = settings.instruction or manifest.get("instruction") or DEFAULT_INSTRUCTION
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise ValueError(f"{MANIFEST}: 'instruction' is over {MAX_INSTRUCTION_CHARS} chars")
    return Kind(scoring, prompt, instruction)


def _prompt(scoring: str, manifest: dict, config) -> str | None:
    if scoring == "yes-no":
        prompt = QWEN3_RERANKER
    elif manifest.get("scoring") in (None, "classifier") and "prompt" in manifest:
        prompt = manifest["prompt"]
    else:
        prompt = QWEN3_RERANKER if config.model_type in PROMPTED_CLASSIFIER_TYPES else None
    if prompt is not None and prompt not in PROMPTS:
        raise ValueError(f"{MANIFEST}: unknown prompt {prompt!r}; this handler knows {PROMPTS}")
    return prompt
