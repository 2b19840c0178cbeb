"""The seed handler's computation, kept verbatim as the baseline to beat.

Copied from the seed notebook's ``inference.py`` (``CrossEncoder.__call__``): one padded
batch, ``padding=True, truncation=True, max_length=512``, ``logits.view(-1).float()``.
Only the loading differs: weights come from a local directory instead of the hub, so the
seed, sentence-transformers and our handler time the very same weights.
"""

from __future__ import annotations

import logging
from typing import List  # noqa: UP035  (verbatim)

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


class SeedCrossEncoder:
    def __init__(self, model_dir: str) -> None:
        self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        logging.info(f"Using device: {self.device}")
        model_name = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(model_name)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_name)
        self.model = self.model.to(self.device)

    def __call__(self, pairs: List[List[str]]) -> List[float]:  # noqa: UP006  (verbatim)
        with torch.inference_mode():
            inputs = self.tokenizer(
                pairs,
                padding=True,
                truncation=True,
                return_tensors="pt",
                max_length=512,
            )
            inputs = inputs.to(self.device)
            scores = (
                self.model(**inputs, return_dict=True)
                .logits.view(
                    -1,
                )
                .float()
            )

        return scores.detach().cpu().tolist()
