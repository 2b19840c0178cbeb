"""The handler on a CUDA GPU in fp16, its default there (``make gpu-check``).

For encoders (BERT one- and two-label, MiniLM) and the LLM rerankers (yes/no Qwen3 and its
converted classifier): the packed forward against the padded one within fp16 tolerance, and
the same top 3 as fp32 on the same device; and each visible GPU as a model-server worker's
own (``gpu_id``): the model lands on it and scores as on the first. Without CUDA these tests
skip, unless
``RERANKER_GPU_CHECK_DEVICE=cpu`` asks for the check's CPU path (everything in fp32 there),
which ``make gpu-check`` runs on a machine without a GPU so that the check itself stays tested.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from handler import inference, reranker_loading

from sagemaker_reranker.examples.offline_models import build_offline_model
from sagemaker_reranker.examples.speech import EXAMPLE_QUERY, speech_chunks

DEVICE = os.environ.get("RERANKER_GPU_CHECK_DEVICE") or (
    "cuda" if torch.cuda.is_available() else None
)
pytestmark = pytest.mark.skipif(
    DEVICE is None, reason="no CUDA device; make gpu-check runs these on a GPU"
)
# fp16 keeps 11 significant bits: scores of a few units move by up to ~1e-2 between two
# summation orders; in fp32 (the CPU path) both forwards agree far closer.
TOLERANCE = 5e-2 if DEVICE == "cuda" else 1e-4
MODELS = ["tiny", "tiny-two-label", "minilm", "tiny-qwen3", "tiny-qwen3-seqcls"]


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    """The example query against 20 chunks of the speech, plus a long and an empty document."""
    chunks = speech_chunks()
    return [(EXAMPLE_QUERY, chunk) for chunk in chunks[:20]] + [
        (EXAMPLE_QUERY, " ".join(chunks[20:40])),
        (EXAMPLE_QUERY, ""),
    ]


@pytest.fixture(scope="module", params=MODELS)
def model_dir(request, tmp_path_factory) -> Path:
    return build_offline_model(request.param, tmp_path_factory.mktemp(request.param))


def load(model_dir: Path, dtype: str, packed: bool):
    settings = dataclasses.replace(
        reranker_loading.Settings.from_env(), dtype=dtype, packed=packed, max_length=1024
    )
    return reranker_loading.load_reranker(str(model_dir), settings)


def top(scores: list[float], count: int = 3) -> list[int]:
    return sorted(range(len(scores)), key=lambda index: -scores[index])[:count]


def test_half_precision_packed_equals_padded_and_keeps_the_top_3(model_dir, pairs):
    packed = load(model_dir, "float16", packed=True)
    assert packed.device.type == DEVICE
    expected_dtype = torch.float16 if DEVICE == "cuda" else torch.float32
    assert next(packed.model.parameters()).dtype == expected_dtype
    padded = load(model_dir, "float16", packed=False)
    full = load(model_dir, "float32", packed=True).score(pairs)
    fast, slow = packed.score(pairs), padded.score(pairs)
    assert max(abs(a - b) for a, b in zip(fast, slow, strict=True)) <= TOLERANCE
    assert max(abs(a - b) for a, b in zip(fast, full, strict=True)) <= 2 * TOLERANCE
    ranked = sorted(full, reverse=True)
    if ranked[2] - ranked[3] > 4 * TOLERANCE:  # a near-tie may swap in fp16 and be right
        assert set(top(fast)) == set(top(full))
    assert top(fast, 1) == top(full, 1) or ranked[0] - ranked[1] <= 4 * TOLERANCE


def test_each_visible_gpu_serves_its_own_worker(tiny_qwen3_dir, pairs):
    """What the container does on a multi-GPU instance: one worker per GPU, each told its
    ``gpu_id``. Each copy must sit on its GPU, in fp16, and score as the first one does."""
    gpus = torch.cuda.device_count() if DEVICE == "cuda" else 0
    body = json.dumps({"pairs": pairs}).encode()
    scores = []
    for gpu_id in range(max(gpus, 1)):
        context = SimpleNamespace(system_properties={"gpu_id": gpu_id})
        reranker = inference.model_fn(str(tiny_qwen3_dir), context)
        wanted = torch.device("cuda", gpu_id) if gpus else torch.device("cpu")
        assert reranker.device == wanted
        assert {parameter.device for parameter in reranker.model.parameters()} == {wanted}
        result = inference.transform_fn(reranker, body, "application/json", "application/json")
        scores.append(json.loads(result)["scores"])
        del reranker
    for other in scores[1:]:
        assert max(abs(a - b) for a, b in zip(other, scores[0], strict=True)) <= TOLERANCE
