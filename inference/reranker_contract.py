"""The contract every part of sagemaker-reranker shares: the one definition of each fact.

The handler imports it flatly (``from reranker_contract import JSON``), as it ships in
``code/`` beside ``inference.py``; packaging, local mode and the client import it from the
installed package (``sagemaker_reranker.inference.reranker_contract``). Standard library
only, so importing it never pulls in torch. No other file restates these values.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath

# --- The wire: content types, headers, the platform's limits -------------------------------
JSON = "application/json"
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_COMPONENT = "X-Amzn-SageMaker-Inference-Component"
MAX_CUSTOM_ATTRIBUTES = 1024  # characters InvokeEndpoint accepts in CustomAttributes
MAX_BODY_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's real-time payload limit
INVOCATION_TIMEOUT = 60.0  # seconds a container has to answer on AWS
# The runtime's refusal while an inference component has no copy (scaled to zero, its first
# copy still starting): a 400 ValidationError whose message begins with NO_CAPACITY_PREFIX
# (AWS's "Scale an endpoint to zero instances" announcement quotes the whole text).
NO_CAPACITY_PREFIX = "Inference Component has no capacity"
NO_CAPACITY = (
    f"{NO_CAPACITY_PREFIX} to process this request. ApplicationAutoScaling may be in-progress "
    "(if configured) or try to increase the capacity by invoking "
    "UpdateInferenceComponentRuntimeConfig API."
)

# --- Requests ----------------------------------------------------------------------------
PAIR_KEYS = ("pairs", "text_pairs")  # {"pairs": [[q, d], ...]}, the stock LangChain handler's
QUERY_KEY, TEXTS_KEY = "query", "texts"  # {"query": q, "texts": [d, ...]}, TEI's /rerank
INSTRUCTION_KEY = "instruction"  # optional beside any shape, for prompted rerankers
MAX_INSTRUCTION_CHARS = 4096
SCORES_KEY = "scores"  # the answer: {"scores": [float, ...]} in input order
SHAPES = (
    "{'pairs': [[query, doc], ...]}, {'text_pairs': [[query, doc], ...]} or "
    "{'query': q, 'texts': [doc, ...]}, each with an optional 'instruction': str"
)
# The rerank API Cohere, Jina, Voyage, vLLM and infinity share (reranker_rerank_api.py):
# {"query": q, "documents": [str or {"text": str}], ...} -> {"results": [...]} best first.
DOCUMENTS_KEY, TEXT_KEY = "documents", "text"
TOP_N_KEY, RETURN_DOCUMENTS_KEY = "top_n", "return_documents"
MAX_TOKENS_PER_DOC_KEY, RANK_FIELDS_KEY = "max_tokens_per_doc", "rank_fields"
RERANK_KEYS = (
    QUERY_KEY,
    DOCUMENTS_KEY,
    TOP_N_KEY,
    RETURN_DOCUMENTS_KEY,
    MAX_TOKENS_PER_DOC_KEY,
    INSTRUCTION_KEY,
)
# Keys clients of the shape send that mean nothing to one endpoint serving one model:
# ``model`` (the APIs name one), the Cohere SDK's ``api_version``, v2's ``priority`` (a queue
# place on Cohere's service), v1's ``max_chunks_per_doc`` (documents are truncated, not
# chunked) and ``rank_fields`` (only ['text'] is accepted).
TOLERATED_KEYS = ("model", "api_version", "priority", "max_chunks_per_doc", RANK_FIELDS_KEY)
RESULTS_KEY, RAW_SCORE_KEY = "results", "raw_score"
RERANK_PATHS = ("/v1/rerank", "/v2/rerank")  # local mode's base-URL routes for the shape

# --- The archive -------------------------------------------------------------------------
MANIFEST = "reranker-manifest.json"  # at the archive's root, its first entry
MAX_MANIFEST_BYTES = 1 << 20  # a real manifest is a few KiB
HANDLER_DIR = "code"
HANDLER = "inference.py"  # SAGEMAKER_PROGRAM
SAFE_WEIGHT_PATTERNS = ("*.safetensors",)
# Pickle weights can run code when loaded; the handler reads them only when allowed.
PICKLE_WEIGHT_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json", "*.pt", "*.pth")
WEIGHT_PATTERNS = SAFE_WEIGHT_PATTERNS + PICKLE_WEIGHT_PATTERNS


def is_weight_file(name: str) -> bool:
    """A weight file the handler would load, by its path inside the model folder (the
    handler's own ``code/`` aside): what ``package`` counts, the checks verify and the handler
    loads."""
    path = PurePosixPath(name)
    return path.parts[:1] != (HANDLER_DIR,) and any(path.match(p) for p in WEIGHT_PATTERNS)


def is_pickle_weight_file(name: str) -> bool:
    """A weight file in a format that can run code when loaded."""
    return is_weight_file(name) and any(
        PurePosixPath(name).match(p) for p in PICKLE_WEIGHT_PATTERNS
    )


# --- Model kinds -------------------------------------------------------------------------
CLASSIFIER, YES_NO = "classifier", "yes-no"
SCORING_KINDS = (CLASSIFIER, YES_NO)
SCORING_CHOICES = ("auto", *SCORING_KINDS)
QWEN3_RERANKER = "qwen3-reranker"
YES_NO_TOKENS = ("yes", "no")  # single tokens whose logits yes-no scoring reads
PROMPTS = (QWEN3_RERANKER,)
# Qwen3-Reranker's model card default.
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
# Model types whose sequence classifiers are converted Qwen3-Rerankers, expecting its prompt.
PROMPTED_CLASSIFIER_TYPES = frozenset({"qwen3"})


def is_causal(architecture: str) -> bool:
    """A causal LM (scored by its yes/no answer), by its architecture's class name."""
    return architecture.endswith(CAUSAL_SUFFIXES)


def is_sequence_classifier(architecture: str) -> bool:
    """A model with a classification head (scored as a classifier), by its class name."""
    return architecture.endswith("ForSequenceClassification")


# The manifest's fields saying how to score: ``package`` writes them, the handler reads them.
KIND_FIELDS = ("scoring", "prompt", "instruction")


class KindError(ValueError):
    """A scoring the model cannot do, or a manifest naming one this handler does not know."""


@dataclass(frozen=True)
class Kind:
    """How the handler scores a model (``scoring`` None: not known before the handler loads
    it), and the phrase ``package`` prints and the handler logs."""

    scoring: str | None
    prompt: str | None
    instruction: str | None
    description: str

    def manifest_fields(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in KIND_FIELDS}


def prompted_kind(scoring: str, instruction: str | None, head: str = "") -> Kind:
    """A kind that wraps each pair in Qwen3-Reranker's prompt (the default instruction unless
    one is given): yes-no, or a classifier whose ``head`` the description names."""
    if instruction is not None and len(instruction) > MAX_INSTRUCTION_CHARS:
        raise KindError(f"{MANIFEST}: 'instruction' is over {MAX_INSTRUCTION_CHARS} chars")
    if scoring == YES_NO:
        description = "yes-no (logit(yes) − logit(no))"
    else:
        description = f"classifier ({head}, Qwen3-Reranker prompt)"
    return Kind(scoring, QWEN3_RERANKER, instruction or DEFAULT_INSTRUCTION, description)


def decide_kind(
    name: str,
    architecture: str,
    model_type: str | None,
    num_labels: int,
    requested: str | None = None,
    prompt: str | None = None,
    instruction: str | None = None,
    setting: str = "RERANKER_SCORING=",
) -> Kind:
    """How to score the model ``name``, from plain values: the rules ``package`` records and
    the handler applies at load.

    ``requested``: the scoring asked for (None: a causal LM is yes-no, anything else a
    classifier); ``prompt``: a classifier's recorded prompt (None: by its ``model_type``);
    ``instruction``: the default one of a prompted kind (None: the model card's);
    ``setting``: how the caller spells the scoring choice in a refusal (``--scoring ``).
    """
    causal = is_causal(architecture)
    scoring = requested or (YES_NO if causal else CLASSIFIER)
    if scoring not in SCORING_KINDS:
        raise KindError(f"{MANIFEST}: unknown scoring {scoring!r}; expected classifier or yes-no")
    if scoring == YES_NO:
        if is_sequence_classifier(architecture):
            raise KindError(
                f"{name} is a {architecture}; {setting}yes-no needs a causal LM (*ForCausalLM): "
                f"use {setting}classifier or auto"
            )
        return prompted_kind(YES_NO, instruction)
    if causal:
        raise KindError(
            f"{name} is a causal LM ({architecture}) with no classification head; score it by "
            f"its yes/no answer: {setting}yes-no"
        )
    if num_labels not in (1, 2):
        raise KindError(
            f"{name} has {num_labels} output labels (a {num_labels}-label classification head); "
            "a reranker has 1 label (relevance) or 2 (not relevant, relevant)"
        )
    head = "one-logit head: the logit" if num_labels == 1 else "two-label head: logit[1] − logit[0]"
    if prompt is None and model_type in PROMPTED_CLASSIFIER_TYPES:
        prompt = QWEN3_RERANKER
    if prompt is None:
        return Kind(CLASSIFIER, None, None, f"classifier ({head})")
    if prompt not in PROMPTS:
        raise KindError(f"{MANIFEST}: unknown prompt {prompt!r}; this handler knows {PROMPTS}")
    return prompted_kind(CLASSIFIER, instruction, head)


# --- Who calls ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def user_agent() -> str:
    """``sagemaker-reranker/<version>``: named in every request, as AWS asks tools to do."""
    try:
        version = importlib.metadata.version("sagemaker-reranker")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"sagemaker-reranker/{version}"
