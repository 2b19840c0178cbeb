"""Request planning: cut pairs into requests that respect the endpoint's limits.

A request holds at most ``max_pairs`` pairs and ``max_tokens`` estimated tokens, and its
serialised body is at most ``max_bytes``: the body is measured after serialisation (a chunk
whose body comes out too large, from multi-byte text or JSON escapes, is halved and measured
again), never guessed. Pairs stay in input order inside a request, so scores go back by position.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

Pair = tuple[str, str]
Serialize = Callable[[Sequence[Pair]], bytes]

# The server truncates each pair to the model's max length (512 for bge-reranker-base), so
# no pair costs more than this many tokens however long its document.
TOKENS_PER_PAIR_CAP = 512
# Characters per token, on the low side: English word pieces average ~4 characters. The
# estimate only spreads work between requests; the server's own cap (RERANKER_MAX_TOKENS,
# 262,144 by default) is far above 256 pairs x 512 tokens, the client's defaults.
CHARS_PER_TOKEN = 3
# JSON punctuation around one pair: ["", ""], plus the separator.
PAIR_SYNTAX_BYTES = 8


@dataclass(frozen=True)
class Limits:
    """Per-request limits; every one is a hard cap."""

    max_pairs: int
    max_bytes: int
    max_tokens: int

    def __post_init__(self) -> None:
        for name in ("max_pairs", "max_bytes", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Request:
    """One planned request: the input positions it scores, and its serialised body."""

    indices: Sequence[int]
    body: bytes


def plan_requests(
    pairs: Sequence[Pair], limits: Limits, serialize: Serialize, one_query: bool = False
) -> list[Request]:
    """Cut ``pairs`` into requests within ``limits``; ``one_query`` groups pairs by query."""
    requests: list[Request] = []
    for group in _groups(pairs, one_query):
        for indices in _chunks(pairs, group, limits):
            requests.extend(_serialized(pairs, indices, limits.max_bytes, serialize))
    return requests


def _groups(pairs: Sequence[Pair], one_query: bool) -> list[Sequence[int]]:
    if not one_query:
        return [range(len(pairs))]
    by_query: dict[str, list[int]] = {}
    for index, (query, _) in enumerate(pairs):
        by_query.setdefault(query, []).append(index)
    return list(by_query.values())


def _chunks(pairs: Sequence[Pair], group: Sequence[int], limits: Limits) -> Iterator[Sequence[int]]:
    """Greedy cut of ``group`` by pair count, size and estimated tokens.

    Sizes are counted in characters, which is what ASCII text serialises to; multi-byte text
    and escapes come out larger, and ``_serialized`` measures and halves such chunks. Each cut
    is found by bisecting running sums, so planning costs a few list passes, not a Python
    loop body per pair.
    """
    if isinstance(group, range):
        members = pairs[group.start : group.stop]
    else:
        members = [pairs[index] for index in group]
    sizes = [len(query) + len(document) + PAIR_SYNTAX_BYTES for query, document in members]
    size_sums = [0, *accumulate(sizes)]
    if limits.max_pairs * TOKENS_PER_PAIR_CAP <= limits.max_tokens:
        token_sums = None  # the token limit cannot bind: skip its pass
    else:
        tokens = [min(TOKENS_PER_PAIR_CAP, size // CHARS_PER_TOKEN + 3) for size in sizes]
        token_sums = [0, *accumulate(tokens)]
    start, total = 0, len(sizes)
    while start < total:
        end = min(
            total,
            start + limits.max_pairs,
            bisect_right(size_sums, size_sums[start] + limits.max_bytes) - 1,
        )
        if token_sums is not None:
            end = min(end, bisect_right(token_sums, token_sums[start] + limits.max_tokens) - 1)
        end = max(end, start + 1)  # a pair over a limit on its own goes alone
        yield group[start:end]
        start = end


def _serialized(
    pairs: Sequence[Pair], indices: Sequence[int], max_bytes: int, serialize: Serialize
) -> Iterator[Request]:
    """Serialise a chunk; halve it while its measured body is over ``max_bytes``."""
    if isinstance(indices, range):
        chunk = pairs[indices.start : indices.stop]
    else:
        chunk = [pairs[i] for i in indices]
    body = serialize(chunk)
    if len(body) <= max_bytes:
        yield Request(indices, body)
        return
    if len(indices) == 1:
        raise ValueError(
            f"pair {indices[0]} alone serialises to {len(body)} bytes, over the request limit "
            f"of {max_bytes} bytes; shorten it (the model reads only its first "
            f"{TOKENS_PER_PAIR_CAP} tokens anyway)"
        )
    middle = len(indices) // 2
    yield from _serialized(pairs, indices[:middle], max_bytes, serialize)
    yield from _serialized(pairs, indices[middle:], max_bytes, serialize)
