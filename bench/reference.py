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
