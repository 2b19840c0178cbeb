"""SageMaker inference handler for a Hugging Face reranker: ``code/inference.py`` in model.tar.gz.

The serving toolkit calls ``model_fn`` once per worker and ``transform_fn`` per request; this
file is the place to customise either. The engine sits beside it in ``code/`` and is imported
flatly, as the toolkit puts ``code/`` on the import path:

- ``reranker_contract.py``: the facts every part of the project shares (content types,
  request shapes and limits, the manifest, what a weight file is, the model-kind rules);
- ``reranker_request.py``: the JSON shapes below, and the errors a request can meet;
- ``reranker_loading.py``: weights (safetensors only unless allowed), the model's kind
  (classifier or yes-no, prompted or not), dtype, device;
- ``reranker_engine.py``: what every family shares: tokenize once, token-budgeted
  micro-batches (the batch planner), input order;
- ``reranker_encoder.py``: cross-encoders' (query, document) pairs and their packed forward;
- ``reranker_decoder.py``: Qwen3-Reranker's prompt and the one head row LLM rerankers need;
- ``reranker_packed_decoder.py``: the packed forward of Llama-family decoders;
- ``reranker_settings.py``: the environment variables below and their defaults.

Only torch, transformers, sagemaker_inference and the standard library are imported.

Wire contract (request ``application/json``)::

    {"pairs": [[query, doc], ...]}          # the default client handler
    {"text_pairs": [[query, doc], ...]}     # the stock langchain_community handler
    {"query": q, "texts": [doc, ...]}       # TEI /rerank style

each with an optional ``"instruction": str`` (at most 4,096 characters) that prompted
rerankers put in their prompt and encoders ignore.

Response ``application/json``: ``{"scores": [float, ...]}``, one raw score per pair in input
order: the logit (one label), ``logit[1] − logit[0]`` (two labels) or ``logit(yes) −
logit(no)`` (yes-no LLM rerankers); ``sigmoid`` of each is a probability.

The rerank API of Cohere, Jina, Voyage and vLLM (``reranker_rerank_api.py``) is spoken too::

    {"query": q, "documents": [str or {"text": str}, ...],
     "top_n": int, "return_documents": bool, "max_tokens_per_doc": int}

answered ``{"results": [{"index", "relevance_score", "raw_score", "document"}, ...]}`` best
first: ``raw_score`` is the score above, ``relevance_score`` its sigmoid, ``document``
(``{"text"}``) only when asked for; ``max_tokens_per_doc`` cuts each document to that many
tokens. The Cohere SDK's ``api_version`` and the like are ignored, other keys refused.

Settings (environment variables, read by ``model_fn``):

RERANKER_MODEL_ID, RERANKER_MODEL_REVISION
    hub model to download when ``model_dir`` holds no weights.
RERANKER_SCORING
    auto (default: the archive's manifest, else the model's config) | classifier | yes-no.
RERANKER_INSTRUCTION
    default instruction of prompted rerankers (else the manifest's, else the model card's).
RERANKER_DTYPE
    float32 | float16 | bfloat16; default fp16 on CUDA, fp32 on CPU.
RERANKER_TRUST_REMOTE_CODE
    ``1`` allows model code from the hub; off by default.
RERANKER_ALLOW_PICKLE
    ``1`` allows pickle weights (``pytorch_model.bin``), which can run code when loaded;
    off by default: only safetensors are read.
RERANKER_MAX_LENGTH
    tokens per pair after truncation, prompt included (default 512 for encoders, 8,192 for
    prompted rerankers; capped by the model's limit).
RERANKER_BATCH_TOKENS
    padded tokens per micro-batch (default 2,048 on CPU, 32,768 on GPU).
RERANKER_PACKED
    ``1`` (default): BERT, (XLM-)RoBERTa, Llama and Qwen2/3 models run on packed tokens;
    ``0`` runs Hugging Face's padded forward, which every other architecture uses anyway.
RERANKER_MAX_PAIRS, RERANKER_MAX_TOKENS
    per-request caps (413 above them; tokens count the prompt), so one request cannot hold
    an instance for minutes.
"""

from __future__ import annotations

import logging

from reranker_contract import CUSTOM_ATTRIBUTES
from reranker_engine import Reranker
from reranker_loading import load_reranker, worker_device
from reranker_request import (
    BadRequest,
    NotAcceptable,
    RequestTooLarge,
    ScoringFailed,
    UnsupportedMediaType,
    check_accept,
)
from reranker_rerank_api import read_request, render, truncate_documents
from sagemaker_inference.errors import GenericInferenceToolkitError

logger = logging.getLogger(__name__)

WARMUP_PAIR = ("warm-up query", "warm-up document")
# The response status of each error the engine raises; the toolkit answers with it.
STATUSES = {
    BadRequest: 400,
    NotAcceptable: 406,
    RequestTooLarge: 413,
    UnsupportedMediaType: 415,
    ScoringFailed: 500,
}


def model_fn(model_dir: str, context=None) -> Reranker:
    """Load the reranker on this worker's device (its GPU, from ``context``) and run one
    warm-up pass before the endpoint reports healthy."""
    reranker = load_reranker(model_dir, device=worker_device(context))
    reranker.score([WARMUP_PAIR])
    return reranker


def transform_fn(reranker: Reranker, input_data, content_type, accept, context=None) -> bytes:
    """Score one request; every client error is a ``GenericInferenceToolkitError``.

    Returns the JSON body alone, not ``(body, content_type)``: the Hugging Face container's
    handler service hands the return value to the model server as is, which rejects a tuple
    ("Unsupported model output data type", 503 on every call); ``sagemaker_inference`` takes
    either and answers with the request's accept (``application/json`` when none).
    """
    try:
        check_accept(accept)
        request = read_request(input_data, content_type)
        pairs = request.pairs
        if request.rerank and request.rerank.max_tokens_per_doc:
            pairs = truncate_documents(reranker.tokenizer, pairs, request.rerank.max_tokens_per_doc)
        scores = reranker.score_request(pairs, request.instruction)
    except tuple(STATUSES) as error:
        raise GenericInferenceToolkitError(STATUSES[type(error)], error.message) from None
    logger.debug("scored %d pairs", len(pairs))
    echo_custom_attributes(context)
    return render(request, scores)


def echo_custom_attributes(context) -> None:
    """Send the caller's ``CustomAttributes`` back (e.g. a trace id): the runtime returns
    only what the container sets, and this handler has nothing of its own to add."""
    processors = getattr(context, "request_processor", None)
    if not processors:
        return
    for key, value in processors[0].get_request_properties().items():
        if key.lower() == CUSTOM_ATTRIBUTES.lower():
            context.set_response_header(0, CUSTOM_ATTRIBUTES, value)
