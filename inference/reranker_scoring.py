"""Scoring a request: tokenize once, plan token-budgeted micro-batches, restore input order;
``EncoderReranker`` for (query, document) pairs through a sequence classifier (encoders)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from reranker_batching import collate, plan_batches
from reranker_encoder import PackedEncoder, first_position, label_score
from reranker_settings import DEFAULT_BATCH_TOKENS, DEFAULT_MAX_LENGTH, Settings
from sagemaker_inference.errors import GenericInferenceToolkitError


class Reranker:
    """What every reranker does with a request: tokenize once, plan token-budgeted
    micro-batches, score them, put the scores back in input order. A subclass says how to
    tokenize a pair (``tokenize``) and score a micro-batch (``forward``)."""

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
            raise GenericInferenceToolkitError(
                413,
                f"request has {total} tokens after truncation, over the limit of {max_tokens} "
                "(RERANKER_MAX_TOKENS); send fewer or shorter pairs per request",
            )
        return encoded, self.plan_batches(encoded, lengths)

    def plan_batches(self, encoded: list[dict], lengths: list[int]) -> list[list[int]]:
        return plan_batches(lengths, self.batch_tokens, packed=self.packed is not None)

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
                raise GenericInferenceToolkitError(
                    500, f"model produced a non-finite score ({value}) for pair {index}"
                )
        return scores


class EncoderReranker(Reranker):
    """A tokenizer and a sequence-classification model that score (query, document) pairs:
    the logit of a one-label head, ``logit[1] − logit[0]`` of a two-label one."""

    def __init__(
        self,
        tokenizer,
        model,
        device: torch.device,
        settings: Settings,
        max_length: int | None = None,
    ) -> None:
        limit = model_max_length(tokenizer, model.config)
        wanted = max_length or settings.max_length or DEFAULT_MAX_LENGTH
        super().__init__(tokenizer, model, device, settings, min(wanted, limit))
        self.pair_overhead = tokenizer.num_special_tokens_to_add(pair=True)
        use_packed = settings.packed and PackedEncoder.supports(model)
        self.packed = PackedEncoder(model) if use_packed else None

    def tokenize(
        self, pairs: Sequence[Sequence[str]], instruction: str | None = None
    ) -> list[dict]:
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

    def collate(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        """``rows`` padded to their longest, as tensors on the model's device."""
        fills = {
            "input_ids": self.tokenizer.pad_token_id or 0,
            "token_type_ids": self.tokenizer.pad_token_type_id,
        }
        return collate(rows, fills, self.tokenizer.padding_side == "left", self.device)

    def forward(self, rows: list[dict]) -> torch.Tensor:
        """One score per tokenized row: packed where the model allows it, else padded."""
        if self.packed is not None:
            return self.packed(rows, self.device)
        return label_score(self.model(**self.collate(rows), return_dict=True).logits)


def model_max_length(tokenizer, config) -> int:
    """The longest input the model accepts: position embeddings and the tokenizer's limit."""
    limit = getattr(config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    limit -= first_position(config)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        limit = min(limit, tokenizer_limit)
    return limit
