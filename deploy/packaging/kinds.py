"""What a model is, read from its files at package time: its scoring kind and its size.

Only ``config.json``, the tokenizer's vocabulary, the model card's front matter and the
safetensors headers are read (never the weights themselves), so this works without torch or
transformers and costs milliseconds for a multi-gigabyte model.

Scoring kinds (recorded in the manifest; see ``manifest.py`` for the fields):

- ``classifier``: ``*ForSequenceClassification`` with 1 label (the logit) or 2 labels
  (``logit[1] − logit[0]``). A Qwen3 classifier is a converted Qwen3-Reranker ("seq-cls"),
  whose head expects Qwen3-Reranker's prompt: it gets ``prompt`` and an instruction too.
- ``yes-no``: a causal LM answering "yes"/"no" to Qwen3-Reranker's prompt; the score is
  ``logit(yes) − logit(no)`` at the last prompt token. Detected for Qwen3-Reranker (by name,
  or a model card with ``pipeline_tag: text-ranking``); any other causal LM needs an
  explicit ``--scoring yes-no``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sagemaker_reranker.deploy.packaging.manifest import PackageError
from sagemaker_reranker.inference.reranker_contract import (
    CLASSIFIER,
    MAX_INSTRUCTION_CHARS,
    SCORING_CHOICES,
    YES_NO,
    YES_NO_TOKENS,
    Kind,
    KindError,
    decide_kind,
    is_causal,
    is_pickle_weight_file,
    is_sequence_classifier,
    is_weight_file,
    prompted_kind,
)

# Causal LMs published as yes/no rerankers, recognised by their hub id or directory name.
KNOWN_YES_NO = re.compile(r"qwen3[-_ ]?reranker", re.IGNORECASE)
# Tensors a token only looks up (embeddings) or that the handler reduces to one row (the LM
# head): left out of ``body_parameters``, which is what every token is multiplied through.
LOOKUP_TENSOR = re.compile(
    r"(^|\.)(embed_tokens|word_embeddings|position_embeddings|token_type_embeddings|"
    r"embed_positions|wte|wpe|lm_head)\.weight$"
)
# A safetensors header larger than this is not a header.
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class ModelSize:
    """The weights' size on disk and, from safetensors headers, their parameter counts."""

    weights_bytes: int
    parameters: int | None
    body_parameters: int | None

    def manifest_fields(self) -> dict[str, int | None]:
        return {
            "weights_bytes": self.weights_bytes,
            "parameters": self.parameters,
            "body_parameters": self.body_parameters,
        }


def check_scoring(requested: str, instruction: str | None) -> None:
    """What can be checked before the model is at hand (so before any download)."""
    if requested not in SCORING_CHOICES:
        raise PackageError(f"--scoring must be one of {', '.join(SCORING_CHOICES)}")
    if instruction is None:
        return
    if not 0 < len(instruction) <= MAX_INSTRUCTION_CHARS:
        raise PackageError(
            f"--instruction must be 1 to {MAX_INSTRUCTION_CHARS} characters, got {len(instruction)}"
        )


def read_json(path: Path | None) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PackageError(f"{path.name} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise PackageError(f"{path.name} does not hold a JSON object")
    return data


def card_says_text_ranking(readme: Path | None) -> bool:
    """Whether the model card's front matter has ``pipeline_tag: text-ranking``."""
    if readme is None or not readme.is_file():
        return False
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if not text.startswith("---"):
        return False
    front = text[3:].split("\n---", 1)[0]
    return any(
        line.split(":", 1)[1].strip().strip("\"'") == "text-ranking"
        for line in front.splitlines()
        if line.strip().startswith("pipeline_tag:")
    )


def vocabulary(files: Mapping[str, Path]) -> set[str] | None:
    """The tokenizer's tokens as ``convert_tokens_to_ids`` sees them, or None if unreadable."""
    tokenizer = read_json(files.get("tokenizer.json"))
    if tokenizer is not None:
        model = tokenizer.get("model") or {}
        vocab = model.get("vocab")
        tokens: set[str] = set()
        if isinstance(vocab, dict):
            tokens.update(vocab)
        elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
            tokens.update(entry[0] for entry in vocab if isinstance(entry, list) and entry)
        else:
            return None
        tokens.update(
            added["content"]
            for added in tokenizer.get("added_tokens") or []
            if isinstance(added, dict) and "content" in added
        )
        return tokens
    vocab_json = read_json(files.get("vocab.json"))
    if vocab_json is not None:
        added = read_json(files.get("added_tokens.json")) or {}
        return set(vocab_json) | set(added)
    return None


def _labels(config: Mapping) -> int:
    """``num_labels`` as transformers reads it: ``id2label``'s size, 2 when absent."""
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return len(id2label)
    return int(config.get("num_labels", 2))


def detect_kind(
    config: Mapping | None,
    name: str,
    requested: str = "auto",
    instruction: str | None = None,
    text_ranking_card: bool = False,
    tokens: set[str] | None = None,
) -> Kind:
    """The scoring kind of the model named ``name`` (hub id or directory name), by the rules
    the handler applies at load (``decide_kind``), and stricter: only a published reranker
    is scored yes-no unasked, and an instruction for a model that ignores it is refused.

    ``config`` is its config.json (None when the archive carries no weights and it was not
    read): then only ``requested`` or the name decide, or the handler does at load.
    ``tokens`` is the tokenizer's vocabulary when known, to check yes/no scoring can work.
    """
    check_scoring(requested, instruction)
    if config is None:
        kind = _without_config(name, requested, instruction)
    else:
        architectures = config.get("architectures") or []
        architecture = architectures[0] if architectures else ""
        _check_head(name, architecture, requested, text_ranking_card, tokens)
        try:
            kind = decide_kind(
                name,
                architecture,
                config.get("model_type"),
                _labels(config),
                None if requested == "auto" else requested,
                instruction=instruction,
                setting="--scoring ",
            )
        except KindError as error:
            raise PackageError(str(error)) from None
    if instruction is not None and kind.scoring is not None and kind.prompt is None:
        raise PackageError(
            "--instruction applies to prompted rerankers (yes-no, converted Qwen3 classifiers); "
            f"{name} scores plain (query, document) pairs: leave --instruction out"
        )
    return kind


def _without_config(name: str, requested: str, instruction: str | None) -> Kind:
    if requested == YES_NO or (requested == "auto" and KNOWN_YES_NO.search(name)):
        return prompted_kind(YES_NO, instruction)
    if requested == CLASSIFIER:
        return Kind(CLASSIFIER, None, None, "classifier")
    undecided = "detected by the handler when the endpoint loads the model"
    return Kind(None, None, instruction, undecided)


def _check_head(
    name: str,
    architecture: str,
    requested: str,
    text_ranking_card: bool,
    tokens: set[str] | None,
) -> None:
    """What ``package`` refuses beyond the handler's rules: a model without a scoring head, a
    causal LM not known as a reranker (unless asked), a vocabulary without "yes" or "no"."""
    if not (is_sequence_classifier(architecture) or is_causal(architecture)):
        shown = architecture or "config.json names no architecture"
        raise PackageError(
            f"{name} ({shown}) has no scoring head: a reranker is a *ForSequenceClassification "
            "model with 1 or 2 labels, or a causal LM scored by its yes/no answer (--scoring "
            "yes-no)"
        )
    if not is_causal(architecture) or requested == CLASSIFIER:
        return
    if requested == "auto" and not (KNOWN_YES_NO.search(name) or text_ranking_card):
        raise PackageError(
            f"{name} is a causal LM ({architecture}) not known as a reranker; if it answers "
            "yes/no to Qwen3-Reranker's prompt, pass --scoring yes-no"
        )
    if tokens is not None:
        missing = [token for token in YES_NO_TOKENS if token not in tokens]
        if missing:
            raise PackageError(
                f"{name}'s tokenizer has no single {' or '.join(repr(t) for t in missing)} "
                "token, which yes-no scoring reads the logits of"
            )


def safetensors_parameters(path: Path) -> tuple[int, int]:
    """(all parameters, those outside embeddings and the LM head) from a safetensors header.

    The header is the file's first ``8 + n`` bytes; a file shorter than the data the header
    describes is refused, since the endpoint could not load it either.
    """
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= MAX_HEADER_BYTES:
                raise ValueError("no safetensors header")
            header = json.loads(handle.read(length))
        total = body = end = 0
        for tensor, entry in header.items():
            if tensor == "__metadata__":
                continue
            count = math.prod(int(dim) for dim in entry["shape"])
            total += count
            if not LOOKUP_TENSOR.search(tensor):
                body += count
            end = max(end, int(entry["data_offsets"][1]))
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        raise PackageError(f"{path.name} is not a safetensors file ({error})") from None
    if path.stat().st_size < 8 + length + end:
        raise PackageError(
            f"{path.name} is truncated: its header describes {8 + length + end} bytes, the file "
            f"has {path.stat().st_size}"
        )
    return total, body


def model_size(files: Mapping[str, Path]) -> ModelSize:
    """Weights bytes and, for safetensors weights, parameter counts (headers only)."""
    weights = {name: path for name, path in files.items() if is_weight_file(name)}
    size = sum(path.stat().st_size for path in weights.values())
    safe = [path for name, path in sorted(weights.items()) if not is_pickle_weight_file(name)]
    if not safe or len(safe) != len(weights):
        return ModelSize(size, None, None)
    counts = [safetensors_parameters(path) for path in safe]
    return ModelSize(size, sum(c[0] for c in counts), sum(c[1] for c in counts))


@dataclass(frozen=True)
class ModelDetails:
    """What ``package`` records about the model beyond its files."""

    kind: Kind
    size: ModelSize

    def manifest_fields(self) -> dict[str, str | int | None]:
        return {**self.kind.manifest_fields(), **self.size.manifest_fields()}


def describe_files(
    files: Mapping[str, Path], name: str, requested: str, instruction: str | None
) -> ModelDetails:
    """Kind and size of a model whose archive files are ``files`` (name → path)."""
    config = read_json(files.get("config.json"))
    architectures = (config or {}).get("architectures") or [""]
    # Only a yes-no model's vocabulary matters; a large tokenizer.json is not parsed for nothing.
    causal = is_causal(str(architectures[0]))
    kind = detect_kind(
        config,
        name,
        requested,
        instruction,
        card_says_text_ranking(files.get("README.md")),
        vocabulary(files) if causal else None,
    )
    return ModelDetails(kind, model_size(files))


def describe_hub_model(
    model_id: str, commit: str, requested: str, instruction: str | None
) -> ModelDetails:
    """A hub model packaged without weights, from its config.json and model card at
    ``commit`` (through the shared cache). When they cannot be read, the name and
    ``requested`` decide, or the handler does at load."""
    from huggingface_hub import hf_hub_download

    found: dict[str, Path] = {}
    for filename in ("config.json", "README.md"):
        try:
            found[filename] = Path(hf_hub_download(model_id, filename, revision=commit))
        except Exception:  # offline, missing file, HTTP: fall back to what the name says
            continue
    kind = detect_kind(
        read_json(found.get("config.json")),
        model_id,
        requested,
        instruction,
        card_says_text_ranking(found.get("README.md")),
    )
    return ModelDetails(kind, ModelSize(0, None, None))
