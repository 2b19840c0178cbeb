"""The engine every reranker family shares: tokenize once, plan token-budgeted micro-batches,
score them, put the scores back in input order. ``reranker_encoder`` and ``reranker_decoder``
say how a family tokenizes a pair and scores a micro-batch."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from reranker_request import RequestTooLarge, ScoringFailed
from reranker_settings import DEFAULT_BATCH_TOKENS, DEFAULT_MAX_LENGTH, Settings

# batch_cost's model, in token units. A row of width L costs L (padded) or its real length
# (packed) in projections and feed-forward (8h^2 + 4hf FLOPs per token and layer), plus
# L^2 / ATTENTION_SPAN in attention (4Lh): 2h + f is 2304 for MiniLM-L6 and 4608 for
# base-size models, so 3072 errs by under 10 % of a 512-token row's cost for both.
ATTENTION_SPAN = 3072
# Fixed cost of one forward pass, in tokens (reading every weight again, thinner matrices):
# it keeps a small uniform request in one pass, e.g. 20 chunks of 79-123 tokens, whose best
# split would save only 242 padded tokens (docs/performance.md).
BATCH_OVERHEAD_TOKENS = 512
# Look-back limit of plan_batches, which bounds its work to n x 256 steps for 1024 tiny pairs.
MAX_BATCH_ROWS = 256


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
    packed tokens, where padding costs attention only.
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


def collate(
    rows: list[dict], fills: dict[str, int], left: bool, device: torch.device
) -> dict[str, torch.Tensor]:
    """Pad ``rows`` to their longest into tensors (``fills``: the pad value per key, else 0):
    what ``tokenizer.pad`` does, without its per-call validation and conversion overhead
    (96 chunk-sized rows: 10 ms, not 84)."""
    width = max(len(row["input_ids"]) for row in rows)
    return {
        key: torch.tensor(
            [pad(row[key], width, fills.get(key, 0), left) for row in rows],
            dtype=torch.long,
            device=device,
        )
        for key in rows[0]
    }


def pad(values: list[int], width: int, fill: int, left: bool) -> list[int]:
    padding = [fill] * (width - len(values))
    return padding + values if left else values + padding


class Reranker:
    """What every reranker does with a request: tokenize once, plan token-budgeted
    micro-batches, score them, put the scores back in input order. A family says how to load
    (``load``), tokenize a pair (``tokenize``) and score a micro-batch (``forward``)."""

    packed: object | None = None

    def __init__(
        self, tokenizer, model, device: torch.device, settings: Settings, max_length: int
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.settings = settings
        self.max_length = max_length
        self.batch_tokens = settings.batch_tokens or DEFAULT_BATCH_TOKENS.get(
            device.type, DEFAULT_BATCH_TOKENS["cpu"]
        )

    @classmethod
    def load(cls, tokenizer, config, kind, source: str, settings: Settings, device, read_model):
        """The family's reranker for a model of ``kind`` (``reranker_contract.Kind``);
        ``read_model(causal)`` reads its weights, as a causal LM or a sequence classifier."""
        raise NotImplementedError

    def tokenize(
        self, pairs: Sequence[Sequence[str]], instruction: str | None = None
    ) -> list[dict]:
        raise NotImplementedError

    def forward(self, rows: list[dict]) -> torch.Tensor:
        raise NotImplementedError

    def plan(
        self,
        pairs: Sequence[Sequence[str]],
        max_tokens: int | None = None,
        instruction: str | None = None,
    ) -> tuple[list[dict], list[list[int]]]:
        """Tokenize ``pairs`` and cut them into micro-batches (``plan_batches``).

        A request over ``max_tokens`` real tokens is refused before any planning work.
        """
        encoded = self.tokenize(pairs, instruction)
        lengths = [len(item["input_ids"]) for item in encoded]
        total = sum(lengths)
        if max_tokens is not None and total > max_tokens:
            raise RequestTooLarge(
                f"request has {total} tokens after truncation, over the limit of {max_tokens} "
                "(RERANKER_MAX_TOKENS); send fewer or shorter pairs per request",
            )
        return encoded, self.plan_batches(encoded, lengths)

    def plan_batches(self, encoded: list[dict], lengths: list[int]) -> list[list[int]]:
        return plan_batches(lengths, self.batch_tokens, packed=self.packed is not None)

    def score_request(
        self, pairs: Sequence[Sequence[str]], instruction: str | None = None
    ) -> list[float]:
        """``score`` within the request limits (RERANKER_MAX_PAIRS, RERANKER_MAX_TOKENS)."""
        limit = self.settings.max_pairs
        if len(pairs) > limit:
            raise RequestTooLarge(
                f"request has {len(pairs)} pairs, over the limit of {limit} (RERANKER_MAX_PAIRS); "
                "split it into smaller requests"
            )
        return self.score(pairs, self.settings.max_tokens, instruction)

    def score(
        self,
        pairs: Sequence[Sequence[str]],
        max_tokens: int | None = None,
        instruction: str | None = None,
    ) -> list[float]:
        """Raw scores for ``pairs``, in input order, computed in token-budgeted micro-batches."""
        if not pairs:
            return []
        encoded, batches = self.plan(pairs, max_tokens, instruction)
        scores: list[float] = [0.0] * len(pairs)
        with torch.inference_mode():
            for batch in batches:
                values = self.forward([encoded[i] for i in batch])
                for index, value in zip(batch, values.float().tolist(), strict=True):
                    scores[index] = value
        for index, value in enumerate(scores):
            if not math.isfinite(value):
                raise ScoringFailed(f"model produced a non-finite score ({value}) for pair {index}")
        return scores


def model_max_length(tokenizer, config) -> int:
    """The longest input the model accepts: position embeddings and the tokenizer's limit."""
    limit = getattr(config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    limit -= first_position(config)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        limit = min(limit, tokenizer_limit)
    return limit


def first_position(config) -> int:
    """The first position id: RoBERTa-style models start after the padding index."""
    if config.model_type in {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}:
        return (config.pad_token_id or 0) + 1
    return 0
