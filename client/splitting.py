"""Request planning: the input checked, and its pairs cut into requests within the limits.

A request holds at most ``max_pairs`` pairs and ``max_tokens`` estimated tokens, and its
serialised body is at most ``max_bytes``: the body is measured after serialisation (a chunk
whose body comes out too large, from multi-byte text or JSON escapes, is halved and measured
again), never guessed. Pairs stay in input order inside a request, so scores go back by position.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from operator import add

from sagemaker_reranker.client.content_handlers import Pair

Serialize = Callable[[Sequence[Pair]], bytes]

# The server truncates each pair to the model's max length, so no pair costs more than that
# many tokens however long its document. By default the longest the handler serves: the LLM
# rerankers' 8,192 (Qwen3-Reranker); 512 (bge-reranker-base) would let requests of long
# documents to an LLM reranker exceed RERANKER_MAX_TOKENS and get 413s.
TOKENS_PER_PAIR_CAP = 8192
# Characters per token, on the low side: English word pieces average ~4 characters. The
# estimate only spreads work between requests; the server's own cap (RERANKER_MAX_TOKENS,
# 262,144 by default) is twice 256 pairs x 512 tokens, the client's defaults.
CHARS_PER_TOKEN = 3
# Special tokens the tokenizer adds to a pair: [CLS] query [SEP] document [SEP].
SPECIAL_TOKENS_PER_PAIR = 3
# JSON punctuation around one pair: ["", ""], plus the separator.
PAIR_SYNTAX_BYTES = 8


@dataclass(frozen=True)
class Limits:
    """Per-request limits; every one is a hard cap."""

    max_pairs: int
    max_bytes: int
    max_tokens: int
    extra_tokens_per_pair: int = 0
    """Tokens the server adds to every pair beyond its texts (an instruction, for models
    that read one with each pair)."""
    tokens_per_pair_cap: int = TOKENS_PER_PAIR_CAP
    """The model's max length: the most tokens one pair can cost."""

    @property
    def tokens_per_pair(self) -> int:
        return SPECIAL_TOKENS_PER_PAIR + self.extra_tokens_per_pair

    def __post_init__(self) -> None:
        for name in ("max_pairs", "max_bytes", "max_tokens", "tokens_per_pair_cap"):
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
    """Cut ``pairs`` into requests within ``limits``; ``one_query`` groups pairs by query.

    Works block by block (at most ``max_pairs`` pairs), each block checked and then
    serialised while its texts are still in the CPU cache. While whole blocks fit the byte and
    token limits, a block's body is sent as it is; one that does not is cut by measured sizes,
    and later blocks shrink to what its body says fits. 256 chunk-sized pairs are ~130 KB but
    ~44,000 estimated tokens, over the default cap of 32,768: cutting every block by measured
    sizes reads each text once more (2.2-2.4 ms instead of 1.1-1.2 ms per 1,000 pairs planned;
    docs/performance.md).
    """
    requests: list[Request] = []
    for group in _groups(pairs, one_query):
        if isinstance(group, range):
            members = pairs[group.start : group.stop]
        else:
            members = [pairs[index] for index in group]
        # A body holding every pair's query and document bounds their estimated tokens; one
        # holding the query once (one_query) does not, so those are always cut by sizes.
        start, block_size = 0, limits.max_pairs
        while start < len(members):
            block = members[start : start + block_size]
            check_pairs(block, group[start])
            if not one_query:
                body = serialize(block)
                if _within(body, len(block), limits):
                    requests.append(Request(group[start : start + len(block)], body))
                    start += len(block)
                    continue
                block_size = _block_size(len(body), len(block), limits)
            count = _fitting(block, limits)
            chunk = block[:count]
            requests.extend(
                _serialized(chunk, group[start : start + count], limits.max_bytes, serialize)
            )
            start += count
    return requests


def _within(body: bytes, count: int, limits: Limits) -> bool:
    """Whether a serialised block meets the byte limit and, by an upper bound on the
    estimate of ``_fitting`` (a body of every pair's texts has at least as many bytes as they
    have characters), the token limit."""
    return (
        len(body) <= limits.max_bytes
        and len(body) // CHARS_PER_TOKEN + limits.tokens_per_pair * count <= limits.max_tokens
    )


def _block_size(body_bytes: int, count: int, limits: Limits) -> int:
    """How many pairs of the average size in a body of ``count`` pairs fit ``_within`` the
    limits, with a 3 % margin for pairs longer than that average (at least 1)."""
    per_pair = body_bytes / count
    by_bytes = limits.max_bytes / per_pair
    by_tokens = limits.max_tokens / (per_pair / CHARS_PER_TOKEN + limits.tokens_per_pair)
    return max(1, min(limits.max_pairs, int(0.97 * min(by_bytes, by_tokens))))


def as_pair_list(text_pairs: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """``text_pairs`` as a list (the planner checks each pair as it goes)."""
    if isinstance(text_pairs, (str, bytes)) or not isinstance(text_pairs, Iterable):
        raise TypeError(
            f"text_pairs must be a sequence of (query, document) pairs, "
            f"got {type(text_pairs).__name__}"
        )
    return text_pairs if type(text_pairs) is list else list(text_pairs)


def query_pairs(query: str, documents: Sequence[str]) -> list[Pair]:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if isinstance(documents, str):
        raise TypeError("documents must be a sequence of strings, not one string")
    return [(query, document) for document in documents]


def check_pairs(pairs: Sequence[object], first_index: int = 0) -> None:
    """Raise ``TypeError`` naming the first item that is not a (query, document) of strings."""
    for position, pair in enumerate(pairs):
        if (
            (type(pair) is tuple or type(pair) is list)
            and len(pair) == 2
            and type(pair[0]) is str
            and type(pair[1]) is str
        ):
            continue  # the usual case, checked without isinstance's cost
        if (
            isinstance(pair, (tuple, list))
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], str)
        ):
            continue  # subclasses of str, tuple and list serialise the same
        if isinstance(pair, (tuple, list)):
            got = "(" + ", ".join(type(item).__name__ for item in pair) + ")"
        else:
            got = type(pair).__name__
        index = first_index + position
        raise TypeError(f"pair {index} must be (query: str, document: str), got {got}")


def _groups(pairs: Sequence[Pair], one_query: bool) -> list[Sequence[int]]:
    if not one_query:
        return [range(len(pairs))]
    by_query: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        check_pairs((pair,), index)
        by_query.setdefault(pair[0], []).append(index)
    return list(by_query.values())


def _fitting(block: Sequence[Pair], limits: Limits) -> int:
    """How many pairs from the start of ``block`` fit the size and token limits (at least 1).

    Sizes are counted in characters, which is what ASCII text serialises to; multi-byte text
    and escapes come out larger, and ``_serialized`` measures and halves such chunks. Built
    from C-level passes (map, accumulate) and a bisection, not a Python loop body per pair.
    """
    lengths = list(map(len, chain.from_iterable(block)))
    pair_lengths = map(add, lengths[0::2], lengths[1::2])
    sizes = list(map(add, pair_lengths, repeat(PAIR_SYNTAX_BYTES)))
    count = bisect_right(list(accumulate(sizes)), limits.max_bytes)
    cap = limits.tokens_per_pair_cap
    if len(block) * cap > limits.max_tokens:  # else tokens cannot bind
        extra = limits.tokens_per_pair
        tokens = [min(cap, size // CHARS_PER_TOKEN + extra) for size in sizes]
        count = min(count, bisect_right(list(accumulate(tokens)), limits.max_tokens))
    return max(count, 1)  # a pair over a limit on its own goes alone


def _serialized(
    chunk: Sequence[Pair], indices: Sequence[int], max_bytes: int, serialize: Serialize
) -> Iterator[Request]:
    """Serialise a chunk; halve it while its measured body is over ``max_bytes``."""
    body = serialize(chunk)
    if len(body) <= max_bytes:
        yield Request(indices, body)
        return
    if len(indices) == 1:
        raise ValueError(
            f"pair {indices[0]} alone serialises to {len(body)} bytes, over the request limit "
            f"of {max_bytes} bytes; shorten it (the model reads only its first max-length "
            "tokens anyway)"
        )
    middle = len(indices) // 2
    yield from _serialized(chunk[:middle], indices[:middle], max_bytes, serialize)
    yield from _serialized(chunk[middle:], indices[middle:], max_bytes, serialize)
