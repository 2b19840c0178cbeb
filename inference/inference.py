"""SageMaker inference handler for a Hugging Face cross-encoder reranker.

This file becomes ``code/inference.py`` inside ``model.tar.gz``. It is self-contained: it
imports only torch, transformers, sagemaker_inference and the standard library, because the
serving container loads it alone.

Wire contract (request ``application/json``)::

    {"pairs": [[query, doc], ...]}          # the default client handler
    {"text_pairs": [[query, doc], ...]}     # the stock langchain_community handler
    {"query": q, "texts": [doc, ...]}       # TEI /rerank style

Response ``application/json``: ``{"scores": [float, ...]}``, raw logits in input order.

Settings (environment variables, read by ``model_fn``):

RERANKER_MODEL_ID, RERANKER_MODEL_REVISION
    hub model to download when ``model_dir`` holds no weights (the seed's behaviour).
RERANKER_DTYPE
    float32 | float16 | bfloat16; default fp16 on CUDA, fp32 on CPU.
RERANKER_TRUST_REMOTE_CODE
    ``1`` allows model code from the hub; off by default.
RERANKER_MAX_LENGTH
    tokens per pair after truncation (default 512, capped by the model's limit).
RERANKER_BATCH_TOKENS
    padded tokens per micro-batch (defaults below, measured).
RERANKER_PACKED
    ``1`` (default): BERT and (XLM-)RoBERTa models run on packed tokens (``PackedEncoder``);
    ``0`` runs Hugging Face's padded forward, which every other architecture uses anyway.
RERANKER_MAX_PAIRS, RERANKER_MAX_TOKENS
    per-request caps (413 above them), so one request cannot hold an instance for minutes.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from sagemaker_inference.errors import GenericInferenceToolkitError
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "BAAI/bge-reranker-base"
DEFAULT_MAX_LENGTH = 512
DEFAULT_MAX_PAIRS = 1024
# Real (unpadded) tokens per request. 256k tokens is ~2 s of bge-reranker-base on an A10G
# but minutes on a small CPU; the deploy command lowers it for CPU instance types.
DEFAULT_MAX_TOKENS = 262_144
# Padded tokens per micro-batch. On CPU the activations of a pass should stay in the last-level
# cache: a pass of T tokens writes a T x intermediate-size feed-forward activation (12.6 MB for
# MiniLM-L6, 25 MB for a base model at 2,048 tokens; this EPYC slice has a 32 MB L3). Measured
# on that 2-core AMD EPYC (Zen 3, AVX2), fp32, rounds in shuffled order, median wall time:
#   MiniLM-L6 packed, 96 chunks (bench (b)):  2048: 1.77-2.29 s, 2560: 2.13, 8192: 2.33-3.02
#   MiniLM-L6 packed, 128 mixed pairs (c):     2048: 4.07-4.45 s, 2560: 4.11, 8192: 4.79-5.01
#   bge-base packed, 32 mixed pairs (c):       2048: 7.38-7.74 s, 2560: 7.53, 8192: 8.10-8.57
#   MiniLM-L6 padded (RERANKER_PACKED=0), (a): 2048: 0.79 s, 8192: 0.86; (c): 4.60 vs 5.21
# and 1,024 was slower again (thin matrices, more passes). GPU: 32,768 is not measured here (no
# GPU was lent); larger batches keep a GPU busy, and its memory, not a cache, is the limit.
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}
# plan_batches' cost model (batch_cost), in token units. A row of width L costs L (padded) or
# its real length (packed) in projections and feed-forward (8h^2 + 4hf FLOPs per token and
# layer), plus L^2 / ATTENTION_SPAN in attention (4Lh): the ratio 2h + f is 2304 for MiniLM-L6
# and 4608 for base-size models, so 3072 errs by under 10 % of a 512-token row's cost for both.
ATTENTION_SPAN = 3072
# Fixed cost of one forward pass, in tokens: reading every weight again and thinner matrices.
# It stops the planner from cutting a request into many passes to save a little padding; the
# budget above, not this, sets the pass size on CPU. 512 keeps the seed query's 20 chunks
# (79-123 tokens) whole whenever the budget allows: their best split saves 242 padded tokens.
BATCH_OVERHEAD_TOKENS = 512
# Look-back limit of plan_batches, which bounds its work to n x 256 steps for 1024 tiny pairs.
MAX_BATCH_ROWS = 256

JSON = "application/json"
WARMUP_PAIR = ("warm-up query", "warm-up document")


@dataclass(frozen=True)
class Settings:
    """Handler settings, read once from the environment by ``model_fn``."""

    model_id: str
    revision: str | None
    dtype: str | None
    trust_remote_code: bool
    max_length: int
    batch_tokens: int | None
    max_pairs: int
    max_tokens: int
    packed: bool

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            model_id=env.get("RERANKER_MODEL_ID", DEFAULT_MODEL_ID),
            revision=env.get("RERANKER_MODEL_REVISION") or None,
            dtype=env.get("RERANKER_DTYPE") or None,
            trust_remote_code=env.get("RERANKER_TRUST_REMOTE_CODE", "0") == "1",
            max_length=_env_int("RERANKER_MAX_LENGTH", DEFAULT_MAX_LENGTH),
            batch_tokens=_env_int("RERANKER_BATCH_TOKENS", 0) or None,
            max_pairs=_env_int("RERANKER_MAX_PAIRS", DEFAULT_MAX_PAIRS),
            max_tokens=_env_int("RERANKER_MAX_TOKENS", DEFAULT_MAX_TOKENS),
            packed=env.get("RERANKER_PACKED", "1") != "0",
        )


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


# --------------------------------------------------------------------------- batching


def plan_batches(
    lengths: Sequence[int],
    budget: int,
    overhead: int = BATCH_OVERHEAD_TOKENS,
    packed: bool = False,
) -> list[list[int]]:
    """Cut pair indices into micro-batches whose padded size stays within ``budget`` tokens.

    Pairs are sorted longest first and cut into contiguous runs, each padded to its first
    (longest) pair, at the places that minimise the estimated cost (``batch_cost``) plus
    ``overhead`` per forward pass. The per-pass overhead is what keeps small uniform requests
    in one batch, where splitting only shrinks the matrix products; the budget caps memory.
    A pair longer than the budget gets a batch of its own. ``packed``: the batches run on
    ``PackedEncoder``, where padding costs attention only.
    """
    count = len(lengths)
    if not count:
        return []
    if max(lengths) * count <= budget and count <= MAX_BATCH_ROWS:
        return [list(range(count))]
    order = sorted(range(count), key=lambda i: -lengths[i])
    sizes = [lengths[i] for i in order]
    prefix = [0, *itertools.accumulate(sizes)]
    # best[end]: cheapest plan for the ``end`` longest pairs; cut[end]: where its last batch starts.
    best = [0.0] + [math.inf] * count
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        for start in range(end - 1, max(end - MAX_BATCH_ROWS, 0) - 1, -1):
            rows = end - start
            # sizes[start] grows as start moves back, so once over budget, always over.
            if rows > 1 and rows * sizes[start] > budget:
                break
            real = prefix[end] - prefix[start]
            cost = best[start] + overhead + batch_cost(rows, sizes[start], real, packed)
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches: list[list[int]] = []
    end = count
    while end:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


def batch_cost(rows: int, width: int, real: int, packed: bool) -> float:
    """Cost of a batch of ``rows`` pairs padded to ``width`` (``real`` tokens in all), in token
    units: projections and feed-forward grow with the tokens they see (padded ones too, unless
    ``packed``), attention with the square of the padded width."""
    return (real if packed else rows * width) + rows * width * width / ATTENTION_SPAN


# --------------------------------------------------------------------------- packed forward

PACKED_MODEL_TYPES = {"bert", "roberta", "xlm-roberta"}


class PackedEncoder:
    """Runs a BERT-family cross-encoder on packed (unpadded) tokens, with the model's own modules.

    Hugging Face's forward computes every padded position of a batch in every layer, and every
    position in the last layer although the classifier reads only the first. Here the pairs of
    a micro-batch are concatenated: projections and feed-forward layers see real tokens only,
    attention alone works on a padded view (keys masked), and the last layer computes queries,
    output projection and feed-forward for the first ([CLS]) row of each pair. That skips
    10/12 of the last layer's matrix work: 14 % of MiniLM-L6's FLOPs, 7 % of a 12-layer base
    model's, on top of the padding. Scores equal Hugging Face's up to float rounding.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.base = model.base_model
        self.layers = list(self.base.encoder.layer)
        self.bert = model.config.model_type == "bert"
        self.first_position = first_position(model.config)

    @staticmethod
    def supports(model) -> bool:
        """BERT and (XLM-)RoBERTa sequence classifiers with absolute positions, as loaded."""
        config = model.config
        if config.model_type not in PACKED_MODEL_TYPES or config.is_decoder:
            return False
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            return False
        base = getattr(model, "base_model", None)
        if base is None or not hasattr(base, "encoder") or not hasattr(base, "embeddings"):
            return False
        if config.model_type == "bert":
            return getattr(base, "pooler", None) is not None and isinstance(
                getattr(model, "classifier", None), torch.nn.Linear
            )
        head = getattr(model, "classifier", None)
        return hasattr(head, "dense") and hasattr(head, "out_proj")

    def __call__(self, rows: list[dict], device: torch.device) -> torch.Tensor:
        """Logits, one per row of token ids (``input_ids``, optional ``token_type_ids``)."""
        lengths = [len(row["input_ids"]) for row in rows]
        ids, types, positions = [], [], []
        for row, length in zip(rows, lengths, strict=True):
            ids.extend(row["input_ids"])
            types.extend(row.get("token_type_ids") or [0] * length)
            positions.extend(range(self.first_position, self.first_position + length))
        inputs = torch.tensor([ids, types, positions], dtype=torch.long, device=device)
        hidden = self.base.embeddings(
            input_ids=inputs[0:1], token_type_ids=inputs[1:2], position_ids=inputs[2:3]
        )[0]
        view = PaddedView(lengths, device)
        for layer in self.layers[:-1]:
            hidden = self._layer(layer, hidden, view)
        cls = self._layer(self.layers[-1], hidden, view, cls_only=True)
        return self._classify(cls[:, None, :])[:, 0]

    def _layer(self, layer, hidden, view: PaddedView, cls_only: bool = False) -> torch.Tensor:
        """One encoder layer over packed rows; ``cls_only`` outputs the first row of each pair."""
        attention = layer.attention.self
        rows = hidden[view.starts] if cls_only else hidden
        context = view.attend(
            attention.query(rows),
            attention.key(hidden),
            attention.value(hidden),
            attention.num_attention_heads,
            cls_only,
        )
        attended = layer.attention.output(context, rows)
        return layer.output(layer.intermediate(attended), attended)

    def _classify(self, sequence: torch.Tensor) -> torch.Tensor:
        if self.bert:  # BertForSequenceClassification: pooler (dense + tanh), then a linear layer
            return self.model.classifier(self.base.pooler(sequence))
        return self.model.classifier(sequence)  # RoBERTa head: reads row 0, dense, tanh, out_proj


class PaddedView:
    """Where packed rows sit in a padded ``[pairs, width]`` grid, for attention only."""

    def __init__(self, lengths: list[int], device: torch.device) -> None:
        self.pairs, self.width = len(lengths), max(lengths)
        length = torch.tensor(lengths, device=device)
        ends = torch.cumsum(length, 0)
        self.starts = ends - length
        columns = torch.arange(self.width, device=device)
        self.uniform = min(lengths) == self.width  # packed rows already form the grid
        valid = columns[None, :] < length[:, None]
        # Padding slots gather some real row; the mask hides them as keys, and their outputs
        # are dropped.
        self.gather = torch.minimum(self.starts[:, None] + columns[None, :], ends[:, None] - 1)
        self.mask = None if self.uniform else valid[:, None, None, :]
        self.keep = valid.flatten().nonzero()[:, 0]

    def attend(self, queries, keys, values, heads: int, cls_only: bool) -> torch.Tensor:
        """Scaled dot-product attention within each pair; ``queries`` are all packed rows, or
        one ([CLS]) row per pair when ``cls_only``. Returns context rows laid out as ``queries``."""
        size = keys.shape[-1]

        def split(packed: torch.Tensor, width: int) -> torch.Tensor:
            return packed.view(self.pairs, width, heads, size // heads).transpose(1, 2)

        def grid(packed: torch.Tensor) -> torch.Tensor:
            return split(packed if self.uniform else packed[self.gather], self.width)

        query_grid = split(queries, 1) if cls_only else grid(queries)
        context = torch.nn.functional.scaled_dot_product_attention(
            query_grid, grid(keys), grid(values), attn_mask=self.mask
        )
        context = context.transpose(1, 2).reshape(-1, size)
        return context if cls_only or self.uniform else context[self.keep]


# --------------------------------------------------------------------------- model


class Reranker:
    """A tokenizer and a sequence-classification model that score (query, document) pairs."""

    def __init__(self, tokenizer, model, device: torch.device, settings: Settings) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.settings = settings
        self.max_length = min(settings.max_length, model_max_length(tokenizer, model.config))
        self.batch_tokens = settings.batch_tokens or DEFAULT_BATCH_TOKENS.get(
            device.type, DEFAULT_BATCH_TOKENS["cpu"]
        )
        self.pair_overhead = tokenizer.num_special_tokens_to_add(pair=True)
        use_packed = settings.packed and PackedEncoder.supports(model)
        self.packed = PackedEncoder(model) if use_packed else None

    def tokenize(self, pairs: Sequence[Sequence[str]]) -> list[dict]:
        """Tokenize without padding; truncate the document first, keeping the query.

        ``only_second`` raises for the whole call when any single query is too long to
        leave room for its document, so pairs with such queries use ``longest_first``.
        """
        unique = list(dict.fromkeys(query for query, _ in pairs))
        ids = self.tokenizer(unique, add_special_tokens=False, truncation=False)["input_ids"]
        room = self.max_length - self.pair_overhead
        fits = {query: len(query_ids) < room for query, query_ids in zip(unique, ids, strict=True)}
        groups: dict[str, list[int]] = {"only_second": [], "longest_first": []}
        for index, (query, _) in enumerate(pairs):
            groups["only_second" if fits[query] else "longest_first"].append(index)
        encoded: list[dict] = [{}] * len(pairs)
        for strategy, indices in groups.items():
            if not indices:
                continue
            batch = self.tokenizer(
                [pairs[i][0] for i in indices],
                [pairs[i][1] for i in indices],
                truncation=strategy,
                max_length=self.max_length,
                padding=False,
            )
            for row, index in enumerate(indices):
                encoded[index] = {key: values[row] for key, values in batch.items()}
        return encoded

    def plan(
        self, pairs: Sequence[Sequence[str]], max_tokens: int | None = None
    ) -> tuple[list[dict], list[list[int]]]:
        """Tokenize ``pairs`` and cut them into micro-batches (``plan_batches``).

        A request over ``max_tokens`` real tokens is refused before any planning work.
        """
        encoded = self.tokenize(pairs)
        lengths = [len(item["input_ids"]) for item in encoded]
        total = sum(lengths)
        if max_tokens is not None and total > max_tokens:
            raise GenericInferenceToolkitError(
                413,
                f"request has {total} tokens after truncation, over the limit of {max_tokens} "
                "(RERANKER_MAX_TOKENS); send fewer or shorter pairs per request",
            )
        return encoded, plan_batches(lengths, self.batch_tokens, packed=self.packed is not None)

    def collate(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        """Pad ``rows`` to their longest into tensors: what ``tokenizer.pad`` does, without
        its per-call validation and conversion overhead (96 chunk-sized rows: 10 ms, not 84)."""
        width = max(len(row["input_ids"]) for row in rows)
        fills = {
            "input_ids": self.tokenizer.pad_token_id or 0,
            "token_type_ids": self.tokenizer.pad_token_type_id,
        }
        left = self.tokenizer.padding_side == "left"
        return {
            key: torch.tensor(
                [_pad(row[key], width, fills.get(key, 0), left) for row in rows],
                dtype=torch.long,
                device=self.device,
            )
            for key in rows[0]
        }

    def forward(self, rows: list[dict]) -> torch.Tensor:
        """One logit per tokenized row: packed where the model allows it, else padded."""
        if self.packed is not None:
            return self.packed(rows, self.device)
        return self.model(**self.collate(rows), return_dict=True).logits[:, 0]

    def score(self, pairs: Sequence[Sequence[str]], max_tokens: int | None = None) -> list[float]:
        """Raw logits for ``pairs``, in input order, computed in token-budgeted micro-batches."""
        if not pairs:
            return []
        encoded, batches = self.plan(pairs, max_tokens)
        scores: list[float] = [0.0] * len(pairs)
        with torch.inference_mode():
            for batch in batches:
                logits = self.forward([encoded[i] for i in batch])
                for index, value in zip(batch, logits.float().tolist(), strict=True):
                    scores[index] = value
        for index, value in enumerate(scores):
            if not math.isfinite(value):
                raise GenericInferenceToolkitError(
                    500, f"model produced a non-finite score ({value}) for pair {index}"
                )
        return scores


def _pad(values: list[int], width: int, fill: int, left: bool) -> list[int]:
    padding = [fill] * (width - len(values))
    return padding + values if left else values + padding


def first_position(config) -> int:
    """The first position id: RoBERTa-style models start after the padding index."""
    if config.model_type in {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}:
        return (config.pad_token_id or 0) + 1
    return 0


def model_max_length(tokenizer, config) -> int:
    """The longest input the model accepts: position embeddings and the tokenizer's limit."""
    limit = getattr(config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    limit -= first_position(config)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        limit = min(limit, tokenizer_limit)
    return limit


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


def has_weights(model_dir: str) -> bool:
    """Whether ``model_dir`` holds a model config and weights baked into the archive."""
    if not model_dir or not os.path.isfile(os.path.join(model_dir, "config.json")):
        return False
    weight_suffixes = (".safetensors", ".bin", ".pt", ".pth")
    return any(name.endswith(weight_suffixes) for name in os.listdir(model_dir))


def load_reranker(model_dir: str, settings: Settings | None = None) -> Reranker:
    """Load tokenizer and model from ``model_dir``, or from the hub when none are baked in."""
    settings = settings or Settings.from_env()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = choose_dtype(settings.dtype, device)
    if has_weights(model_dir):
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
    if config.num_labels != 1:
        raise ValueError(
            f"{source} has {config.num_labels} output labels; a reranker has exactly 1"
        )
    # transformers 5 defaults to dtype="auto"; 4.x knows only torch_dtype. Pass it explicitly.
    model = _load_model(source, dtype, {**options, "config": config})
    model.to(device).eval()
    reranker = Reranker(tokenizer, model, device, settings)
    logger.info(
        "loaded %s on %s (%s), max_length=%d, batch_tokens=%d, forward=%s",
        source,
        device,
        dtype,
        reranker.max_length,
        reranker.batch_tokens,
        "packed" if reranker.packed else "padded",
    )
    return reranker


def _load_model(source: str, dtype: torch.dtype, options: dict):
    try:
        return AutoModelForSequenceClassification.from_pretrained(source, dtype=dtype, **options)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        return AutoModelForSequenceClassification.from_pretrained(
            source, torch_dtype=dtype, **options
        )


# --------------------------------------------------------------------------- requests


def parse_request(body: bytes | str, content_type: str | None) -> list[tuple[str, str]]:
    """Validate a request body and return its (query, document) pairs."""
    media_type = (content_type or JSON).split(";")[0].strip().lower()
    if media_type != JSON:
        raise GenericInferenceToolkitError(
            415, f"unsupported content type {content_type!r}; send {JSON}"
        )
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise GenericInferenceToolkitError(
                400, f"request body is not valid UTF-8 (byte {error.start})"
            ) from None
    if not body.strip():
        raise GenericInferenceToolkitError(400, "request body is empty; send a JSON object")
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise GenericInferenceToolkitError(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise GenericInferenceToolkitError(400, "malformed JSON: nested too deeply") from None
    except ValueError as error:  # NaN / Infinity literals
        raise GenericInferenceToolkitError(400, f"malformed JSON: {error}") from None
    pairs = pairs_from_payload(payload)
    _check_unicode(pairs)
    return pairs


def _check_unicode(pairs: list[tuple[str, str]]) -> None:
    """JSON escapes can spell lone surrogates (``"\\ud800"``), which are no text: the
    tokenizer fails on them with a TypeError (a 500), so name them as the client's error."""
    for index, pair in enumerate(pairs):
        for position, text in enumerate(pair):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                code = ord(text[error.start])
                raise GenericInferenceToolkitError(
                    400,
                    f"pair {index} {('query', 'document')[position]} holds an unpaired surrogate "
                    f"\\u{code:04x} at character {error.start}; send valid Unicode",
                ) from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


SHAPES = "{'pairs': [[query, doc], ...]}, {'text_pairs': [[query, doc], ...]} or {'query': q, 'texts': [doc, ...]}"  # noqa: E501


def pairs_from_payload(payload: object) -> list[tuple[str, str]]:
    """Accept the three request shapes of the wire contract; name the first problem found."""
    if not isinstance(payload, dict):
        raise GenericInferenceToolkitError(
            400, f"expected a JSON object, got {_type_name(payload)}; send {SHAPES}"
        )
    keys = set(payload)
    if keys == {"pairs"} or keys == {"text_pairs"}:
        (key,) = keys
        return _pairs(payload[key], key)
    if keys == {"query", "texts"}:
        query, texts = payload["query"], payload["texts"]
        if not isinstance(query, str):
            raise GenericInferenceToolkitError(
                400, f"'query' must be a string, got {_type_name(query)}"
            )
        if not isinstance(texts, list):
            raise GenericInferenceToolkitError(
                400, f"'texts' must be a list of strings, got {_type_name(texts)}"
            )
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise GenericInferenceToolkitError(
                    400, f"texts[{index}] must be a string, got {_type_name(text)}"
                )
        return [(query, text) for text in texts]
    known = {"pairs", "text_pairs", "query", "texts"}
    unknown = sorted(keys - known)
    problem = f"unknown key(s) {unknown}" if unknown else f"keys {sorted(keys)} do not fit"
    raise GenericInferenceToolkitError(400, f"{problem}; send {SHAPES}")


def _pairs(items: object, key: str) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        raise GenericInferenceToolkitError(
            400, f"'{key}' must be a list of [query, document] pairs, got {_type_name(items)}"
        )
    pairs = []
    for index, item in enumerate(items):
        if not isinstance(item, list) or len(item) != 2:
            size = f"{len(item)} items" if isinstance(item, list) else _type_name(item)
            raise GenericInferenceToolkitError(
                400, f"{key}[{index}] must be [query, document] (2 strings), got {size}"
            )
        for position, text in enumerate(item):
            if not isinstance(text, str):
                raise GenericInferenceToolkitError(
                    400, f"{key}[{index}][{position}] must be a string, got {_type_name(text)}"
                )
        pairs.append((item[0], item[1]))
    return pairs


def _type_name(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def check_accept(accept: str | None) -> None:
    """Only JSON responses exist; ``*/*`` and no preference mean JSON."""
    for option in (accept or JSON).split(","):
        media_type = option.split(";")[0].strip().lower()
        if media_type in {JSON, "*/*", "application/*", ""}:
            return
    raise GenericInferenceToolkitError(406, f"unsupported accept {accept!r}; accept {JSON}")


# --------------------------------------------------------------------------- SageMaker hooks


def model_fn(model_dir: str, context=None) -> Reranker:
    """Load the reranker and run one warm-up pass before the endpoint reports healthy."""
    reranker = load_reranker(model_dir)
    reranker.score([WARMUP_PAIR])
    return reranker


def transform_fn(reranker: Reranker, input_data, content_type, accept, context=None) -> bytes:
    """Score one request; every client error is a ``GenericInferenceToolkitError``.

    Returns the JSON body alone, not ``(body, content_type)``: the Hugging Face container's
    handler service hands the return value to the model server as is, which rejects a tuple
    ("Unsupported model output data type", 503 on every call); ``sagemaker_inference`` takes
    either and answers with the request's accept (``application/json`` when none).
    """
    check_accept(accept)
    pairs = parse_request(input_data, content_type)
    limit = reranker.settings.max_pairs
    if len(pairs) > limit:
        raise GenericInferenceToolkitError(
            413,
            f"request has {len(pairs)} pairs, over the limit of {limit} (RERANKER_MAX_PAIRS); "
            "split it into smaller requests",
        )
    scores = reranker.score(pairs, max_tokens=reranker.settings.max_tokens)
    logger.debug("scored %d pairs", len(pairs))
    echo_custom_attributes(context)
    return json.dumps({"scores": scores}).encode("utf-8")


CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


def echo_custom_attributes(context) -> None:
    """Send the caller's ``CustomAttributes`` back (e.g. a trace id): the runtime returns
    only what the container sets, and this handler has nothing of its own to add."""
    processors = getattr(context, "request_processor", None)
    if not processors:
        return
    for key, value in processors[0].get_request_properties().items():
        if key.lower() == CUSTOM_ATTRIBUTES.lower():
            context.set_response_header(0, CUSTOM_ATTRIBUTES, value)
