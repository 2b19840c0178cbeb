"""Micro-batch planning: cut a request's tokenized pairs into passes by a token budget."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

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
