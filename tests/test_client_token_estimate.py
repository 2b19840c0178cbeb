"""The client's per-pair token estimate reaches an LLM reranker's max length (8,192), so a
request of long documents stays within the endpoint's RERANKER_MAX_TOKENS (issue 24, item 9)."""

from __future__ import annotations

from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
from sagemaker_reranker.client.content_handlers import PairsHandler
from sagemaker_reranker.client.splitting import CHARS_PER_TOKEN, Limits, plan_requests
from sagemaker_reranker.examples.speech import speech_chunks

MAX_TOKENS = 32_768  # what deploy gives CPU instances, and the client's default


def long_pairs(count: int, chars: int) -> list[tuple[str, str]]:
    text = " ".join(speech_chunks())
    assert len(text) >= chars
    return [("what is the plan?", text[index : index + chars]) for index in range(count)]


def tokens(pair: tuple[str, str], max_length: int) -> int:
    """What the server counts for a pair, at this estimate's rate: truncated at max_length."""
    return min(max_length, (len(pair[0]) + len(pair[1])) // CHARS_PER_TOKEN + 3)


def test_requests_to_an_llm_reranker_stay_within_its_token_cap() -> None:
    pairs = long_pairs(12, 15_000)  # ~5,000 tokens each: over 512, under 8,192
    model = SagemakerEndpointCrossEncoder(endpoint_name="llm", endpoint_url="http://127.0.0.1:9")
    assert model.max_tokens_per_pair == 8192
    _, requests = model._prepare(pairs, None)
    assert len(requests) > 1
    for request in requests:
        counted = sum(tokens(pairs[index], 8192) for index in request.indices)
        assert counted <= MAX_TOKENS, f"{counted} tokens: the endpoint answers 413"


def test_a_512_token_model_packs_long_documents_fuller_when_told() -> None:
    pairs = long_pairs(12, 15_000)
    serialize = PairsHandler().transform_input
    for max_length in (512, 8192):
        limits = Limits(256, 5 * 1024 * 1024, MAX_TOKENS, tokens_per_pair_cap=max_length)
        requests = plan_requests(pairs, limits, serialize)
        for request in requests:
            assert sum(tokens(pairs[i], max_length) for i in request.indices) <= MAX_TOKENS
        if max_length == 512:
            assert len(requests) == 1  # 12 x 512 tokens: one request, as the server counts
