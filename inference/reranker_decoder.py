"""Decoder rerankers: Qwen3-Reranker's prompt, then one head row at the last prompt token.

The prompt is the one Qwen3-Reranker's model card builds: a fixed system prefix, the body
``<Instruct>: …\\n<Query>: …\\n<Document>: …`` and a fixed assistant suffix. Prefix and suffix
are tokenised without special tokens and never truncated; the body is truncated
(``longest_first``) to what ``max_length`` leaves, so the last token is always the suffix's.

A yes/no reranker's score is ``logit(yes) − logit(no)`` at the last prompt token, which is
``(W[yes] − W[no]) · h`` (+ the bias difference): one row of the vocabulary-wide head, applied
to one position per pair. A plain forward computes the whole head (151,669 rows for Qwen3)
at every position; here it is never computed. A converted classifier ("seq-cls") carries
that row as its head already. Llama-family decoders run on packed tokens
(``reranker_packed_decoder``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from reranker_contract import YES_NO, YES_NO_TOKENS
from reranker_engine import BATCH_OVERHEAD_TOKENS, Reranker, collate, model_max_length, plan_batches
from reranker_packed_decoder import PackedDecoder, shared_prefix
from reranker_settings import DEFAULT_PROMPT_MAX_LENGTH, Settings

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
BODY = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


class DecoderReranker(Reranker):
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

    @classmethod
    def load(cls, tokenizer, config, kind, source: str, settings: Settings, device, read_model):
        """A prompted reranker: a causal LM's yes/no answer (refused before its weights are
        read when the tokenizer lacks either word), or a converted classifier's one head row."""
        yes_no = yes_no_ids(tokenizer, source) if kind.scoring == YES_NO else None
        model = read_model(yes_no is not None)
        wanted = settings.max_length or DEFAULT_PROMPT_MAX_LENGTH
        max_length = min(wanted, model_max_length(tokenizer, config))
        return cls(tokenizer, model, device, settings, max_length, kind.instruction, yes_no)

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
    for token in YES_NO_TOKENS:
        found = tokenizer.convert_tokens_to_ids(token)
        unknown = tokenizer.unk_token_id
        if found is None or (unknown is not None and found == unknown):
            raise ValueError(
                f"{source}'s tokenizer has no single {token!r} token; yes-no scoring reads the "
                "logits of the tokens 'yes' and 'no' (a Qwen3-Reranker-style model has both)"
            )
        ids.append(found)
    return ids[0], ids[1]


def head_row(model, yes_no: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the one row the score needs, in fp32 on the model's device.

    ``yes_no``: token ids of "yes" and "no" in the LM head (``W[yes] − W[no]``); None for a
    classifier head, whose one label is the row and whose two labels give ``W[1] − W[0]``.
    """
    if yes_no is not None:
        head = model.get_output_embeddings()
        rows = list(yes_no)
    else:
        head = getattr(model, "score", None) or model.classifier
        rows = [0] if head.weight.shape[0] == 1 else [1, 0]
    weight = head.weight[rows].float()
    bias = head.bias[rows].float() if getattr(head, "bias", None) is not None else None
    if len(rows) == 2:
        weight = weight[0] - weight[1]
        bias = None if bias is None else bias[0] - bias[1]
    else:
        weight, bias = weight[0], None if bias is None else bias[0]
    if bias is None:
        bias = torch.zeros((), device=weight.device)
    return weight.detach().clone(), bias.detach().clone()


def padded_last_hidden(base, rows: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """The base model's forward on right-padded rows; the final hidden state of each row's
    last real token. Any decoder architecture transformers knows runs this way."""
    features = collate(
        [{"input_ids": row, "attention_mask": [1] * len(row)} for row in rows],
        {"input_ids": pad_id},
        left=False,
        device=device,
    )
    hidden = base(**features, use_cache=False).last_hidden_state
    last = torch.tensor([len(row) - 1 for row in rows], device=device)
    return hidden[torch.arange(len(rows), device=device), last]
