"""Prompted rerankers (Qwen3-Reranker and its converted classifiers): prompt, tokens, score.

The prompt is the one Qwen3-Reranker's model card builds: a fixed system prefix, the body
``<Instruct>: …\\n<Query>: …\\n<Document>: …`` and a fixed assistant suffix. Prefix and suffix
are tokenised without special tokens and never truncated; the body is truncated
(``longest_first``) to what ``max_length`` leaves, so the last token is always the suffix's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from reranker_batching import BATCH_OVERHEAD_TOKENS, plan_batches
from reranker_decoder import PackedDecoder, head_row, padded_last_hidden, shared_prefix
from reranker_scoring import Reranker
from reranker_settings import Settings

QWEN3_RERANKER = "qwen3-reranker"
PROMPTS = (QWEN3_RERANKER,)
PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
BODY = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
DEFAULT_PROMPT_MAX_LENGTH = 8192


class PromptReranker(Reranker):
    """A decoder scoring each pair at its prompt's last token through one head row.

    ``yes_no``: the ids of "yes" and "no" (a causal LM); None for a classifier head.
    """

    def __init__(
        self,
        tokenizer,
        model,
        device: torch.device,
        settings: Settings,
        max_length: int,
        instruction: str,
        yes_no: tuple[int, int] | None,
    ) -> None:
        super().__init__(tokenizer, model, device, settings, max_length)
        self.instruction = instruction
        self.yes_no = yes_no
        self.prefix = self._ids(PREFIX)
        self.suffix = self._ids(SUFFIX)
        self.body_length = max_length - len(self.prefix) - len(self.suffix)
        if self.body_length < 1:
            raise ValueError(
                f"max_length {max_length} (RERANKER_MAX_LENGTH or the model's limit) leaves no "
                f"room after the prompt's {len(self.prefix) + len(self.suffix)} fixed tokens"
            )
        self.base = model.base_model
        self.weight, self.bias = head_row(model, yes_no)
        use_packed = settings.packed and PackedDecoder.supports(model)
        self.packed = PackedDecoder(self.base) if use_packed else None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def tokenize(
        self, pairs: Sequence[Sequence[str]], instruction: str | None = None
    ) -> list[dict]:
        """Prompt token ids per pair: prefix + body (truncated to fit) + suffix."""
        chosen = self.instruction if instruction is None else instruction
        bodies = [
            BODY.format(instruction=chosen, query=query, document=document)
            for query, document in pairs
        ]
        encoded = self.tokenizer(
            bodies,
            add_special_tokens=False,
            truncation="longest_first",
            max_length=self.body_length,
            return_attention_mask=False,
        )["input_ids"]
        return [{"input_ids": self.prefix + body + self.suffix} for body in encoded]

    def plan_batches(self, encoded: list[dict], lengths: list[int]) -> list[list[int]]:
        """Packed passes compute the prompts' common start once each: the budget counts the
        tokens after it, and each pass pays for it again as overhead."""
        if self.packed is None:
            return super().plan_batches(encoded, lengths)
        shared = shared_prefix([row["input_ids"] for row in encoded])
        own = [length - shared for length in lengths]
        overhead = BATCH_OVERHEAD_TOKENS + shared
        return plan_batches(own, self.batch_tokens, overhead, packed=True)

    def forward(self, rows: list[dict]) -> torch.Tensor:
        """``(W[yes] − W[no]) · h`` (+ bias) at each row's last token; packed where possible."""
        ids = [row["input_ids"] for row in rows]
        if self.packed is not None:
            hidden = self.packed(ids, self.device)
        else:
            hidden = padded_last_hidden(self.base, ids, self.pad_id, self.device)
        return hidden.float() @ self.weight + self.bias


def yes_no_ids(tokenizer, source: str) -> tuple[int, int]:
    """The ids of the single tokens "yes" and "no"; refuse a tokenizer without them."""
    ids = []
    for token in ("yes", "no"):
        found = tokenizer.convert_tokens_to_ids(token)
        unknown = tokenizer.unk_token_id
        if found is None or (unknown is not None and found == unknown):
            raise ValueError(
                f"{source}'s tokenizer has no single {token!r} token; yes-no scoring reads the "
                "logits of the tokens 'yes' and 'no' (a Qwen3-Reranker-style model has both)"
            )
        ids.append(found)
    return ids[0], ids[1]
