"""The baseline every benchmark cell and parity test compares against.

``SampleCrossEncoder`` computes what the sample handler on the LangChain docs' "Cross Encoder
Reranker" page computes: every pair of a request in one batch padded to its longest pair
(``padding=True, truncation=True, max_length=512``), one forward pass, the raw logits
flattened to floats. Only the loading differs: the weights come from a local directory, so
the baseline and the handler run the very same weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

SAMPLE_MAX_LENGTH = 512


class SampleCrossEncoder:
    """One padded batch per request, raw logits: the LangChain docs' sample handler."""

    def __init__(self, model_dir: str) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model = model.to(self.device).eval()

    def __call__(self, pairs: Sequence[Sequence[str]]) -> list[float]:
        features = self.tokenizer(
            [list(pair) for pair in pairs],
            padding=True,
            truncation=True,
            max_length=SAMPLE_MAX_LENGTH,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            logits = self.model(**features, return_dict=True).logits
        return logits.reshape(-1).float().tolist()


# Qwen3-Reranker's prompt, as its model card builds it (kept apart from the handler's copy,
# so that a mistake in either shows up as a parity failure).
CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
CARD_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
CARD_MAX_LENGTH = 8192


class ModelCardYesNoReranker:
    """Qwen3-Reranker's scoring exactly as its model card describes it.

    Each pair becomes ``prefix + <Instruct>/<Query>/<Document> body + suffix``; the body alone
    is truncated (``longest_first``) to what ``max_length`` leaves. All pairs go in one batch,
    left-padded so the last column is every row's last prompt token; the causal LM runs with
    its full vocabulary head; the "no" and "yes" logits of that column go through a
    log-softmax. ``probabilities`` is the card's output, ``exp(log_softmax[yes])``; calling
    the object returns ``log p(yes) − log p(no)``, the raw score the handler returns.
    """

    def __init__(self, tokenizer, model, max_length: int = CARD_MAX_LENGTH) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.model = model
        self.max_length = max_length
        self.yes = tokenizer.convert_tokens_to_ids("yes")
        self.no = tokenizer.convert_tokens_to_ids("no")
        self.prefix = tokenizer.encode(CARD_PREFIX, add_special_tokens=False)
        self.suffix = tokenizer.encode(CARD_SUFFIX, add_special_tokens=False)

    @classmethod
    def from_dir(cls, model_dir: str, max_length: int = CARD_MAX_LENGTH):
        from transformers import AutoModelForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        return cls(tokenizer, model, max_length)

    def batch(self, pairs: Sequence[Sequence[str]], instruction: str | None = None):
        """The card's tokenisation: one left-padded batch of prompts."""
        chosen = CARD_INSTRUCTION if instruction is None else instruction
        texts = [
            f"<Instruct>: {chosen}\n<Query>: {query}\n<Document>: {document}"
            for query, document in pairs
        ]
        inputs = self.tokenizer(
            texts,
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            add_special_tokens=False,
            max_length=self.max_length - len(self.prefix) - len(self.suffix),
        )
        inputs["input_ids"] = [self.prefix + ids + self.suffix for ids in inputs["input_ids"]]
        device = next(self.model.parameters()).device
        padded = self.tokenizer.pad(inputs, padding=True, return_tensors="pt")
        return padded.to(device)

    def log_probabilities(self, pairs, instruction: str | None = None) -> torch.Tensor:
        """``log_softmax([logit(no), logit(yes)])`` at the last position, one row per pair."""
        inputs = self.batch(pairs, instruction)
        with torch.inference_mode():
            logits = self.model(**inputs).logits[:, -1, :]
            no_yes = torch.stack([logits[:, self.no], logits[:, self.yes]], dim=1)
            return torch.nn.functional.log_softmax(no_yes.float(), dim=1)

    def probabilities(self, pairs, instruction: str | None = None) -> list[float]:
        return self.log_probabilities(pairs, instruction)[:, 1].exp().tolist()

    def __call__(self, pairs, instruction: str | None = None) -> list[float]:
        scores = self.log_probabilities(pairs, instruction)
        return (scores[:, 1] - scores[:, 0]).tolist()
