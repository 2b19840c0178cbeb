"""ONNX Runtime as a peer: the engine behind fastembed, flashrank and infinity on CPU.

The cross-encoder is exported with ``torch.onnx`` (the dynamo exporter, batch and sequence
dynamic) and run by ``onnxruntime`` with every graph optimisation on and ``threads`` intra-op
threads. Two ways to feed it, both with the model's own Hugging Face tokenizer (the one the
handler uses), ``max_length=512``:

- **padded**: every pair of a request in one batch padded to its longest (the sample's way);
- **sorted**: pairs tokenized unpadded, sorted by length, cut into batches of ``batch_size``
  and each padded to its own longest (sentence-transformers' and fastembed's way).

A benchmark cell takes the faster of the two, so the peer is at its best on every shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAX_LENGTH = 512
SORTED_BATCH = 32
ONNX_MODES = ("padded", "sorted")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(model_dir: Path, path: Path) -> Path:
    """Export ``model_dir``'s sequence classifier to ``path`` (once; kept next to the model)."""
    if path.is_file():
        return path
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    example = tokenizer(
        [["a query", "a document of some words"]] * 2, padding=True, return_tensors="pt"
    )
    names = [name for name in INPUTS if name in example]

    class Logits(torch.nn.Module):
        """Positional inputs in, logits out: what the exporter and the session agree on."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            return self.model(input_ids, attention_mask, token_type_ids).logits

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=MAX_LENGTH)
    shapes = {name: {0: batch, 1: sequence} for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            Logits(),
            tuple(example[name] for name in names),
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=shapes,
            dynamo=True,
            external_data=False,
        )
    program.save(str(path))
    return path


class OnnxCrossEncoder:
    """Raw logits from an ONNX Runtime session, fed ``padded`` or length-``sorted``."""

    def __init__(self, model_dir: Path, onnx_path: Path, threads: int, mode: str) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        if mode not in ONNX_MODES:
            raise ValueError(f"mode must be padded or sorted, not {mode!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.names = [item.name for item in self.session.get_inputs()]
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.mode = mode

    def __call__(self, pairs: Sequence[Sequence[str]]) -> list[float]:
        pairs = [list(pair) for pair in pairs]
        if self.mode == "padded":
            features = self.tokenizer(
                pairs, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np"
            )
            return self._run(features).tolist()
        encoded = self.tokenizer(pairs, truncation=True, max_length=MAX_LENGTH)
        order = sorted(range(len(pairs)), key=lambda i: len(encoded["input_ids"][i]))
        scores = [0.0] * len(pairs)
        for start in range(0, len(order), SORTED_BATCH):
            batch = order[start : start + SORTED_BATCH]
            width = max(len(encoded["input_ids"][i]) for i in batch)
            features = {
                name: np.array([pad(encoded[name][i], width) for i in batch], dtype=np.int64)
                for name in self.names
            }
            for index, value in zip(batch, self._run(features).tolist(), strict=True):
                scores[index] = value
        return scores

    def _run(self, features) -> np.ndarray:
        feeds = {name: np.asarray(features[name], dtype=np.int64) for name in self.names}
        (logits,) = self.session.run(None, feeds)
        return logits.reshape(-1)


def pad(values: list[int], width: int) -> list[int]:
    """Right padding with 0 (pad id of BERT vocabularies, masked out and type 0 elsewhere)."""
    return values + [0] * (width - len(values))
