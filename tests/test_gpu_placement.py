"""Each model-server worker on its own GPU (``context.system_properties["gpu_id"]``), fp16.

The serving container starts one worker per GPU and tells each which GPU is its own. There is
no GPU here, so the tests observe where the real handler asks torch to put things: a torch
function mode records every device a tensor is created on or moved to, and runs the call on
the CPU instead; ``torch.cuda`` answers as a 4-GPU machine would. The model, the handler and
the scores are real.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from handler import inference, reranker_loading
from torch.overrides import TorchFunctionMode

GPUS = 4
REQUEST = {
    "query": "what did the president say about jobs",
    "texts": ["jobs and wages", "the weather", "infrastructure builds jobs"],
}


class DeviceRecorder(TorchFunctionMode):
    """Records every CUDA device torch is asked for, and runs each call on the CPU instead.
    (What stays on the CPU after the redirect, e.g. ``like.device``, is no request for one.)"""

    def __init__(self) -> None:
        super().__init__()
        self.devices: list[torch.device] = []

    def _cpu(self, value):
        if isinstance(value, (torch.device, str)) and _is_cuda(value):
            self.devices.append(torch.device(value))
            return torch.device("cpu")
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.device:  # naming a device is not putting anything on it
            return func(*args, **(kwargs or {}))
        args = tuple(self._cpu(value) for value in args)
        kwargs = {key: self._cpu(value) for key, value in (kwargs or {}).items()}
        return func(*args, **kwargs)


def _is_cuda(value) -> bool:
    try:
        return torch.device(value).type == "cuda"
    except (RuntimeError, TypeError):
        return False


@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> list[torch.device]:
    """``torch.cuda`` as on a 4-GPU machine; returns the devices ``set_device`` was given."""
    current: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: GPUS)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: current.append(device))
    return current


def context(gpu_id) -> SimpleNamespace:
    """What the model server hands ``model_fn``: its system properties, ``gpu_id`` among them."""
    return SimpleNamespace(system_properties={"model_dir": "/opt/ml/model", "gpu_id": gpu_id})


def score(reranker) -> list[float]:
    body = json.dumps(REQUEST).encode()
    return json.loads(inference.transform_fn(reranker, body, "application/json", None))["scores"]


@pytest.mark.parametrize("model", ["tiny_model_dir", "tiny_qwen3_dir"])
def test_each_worker_loads_and_scores_on_its_gpu_id_in_fp16(request, model, four_gpus):
    model_dir = request.getfixturevalue(model)
    recorder = DeviceRecorder()
    with recorder:
        reranker = inference.model_fn(str(model_dir), context(gpu_id=2))
        loaded = list(recorder.devices)
        scores = score(reranker)
    wanted = torch.device("cuda", 2)
    assert four_gpus == [wanted]
    assert reranker.device == wanted
    assert wanted in loaded, "the model's weights were never moved to the worker's GPU"
    # Weights, warm-up and the request's tensors: all asked for on GPU 2, never elsewhere.
    assert set(recorder.devices) == {wanted}
    assert next(reranker.model.parameters()).dtype == torch.float16
    assert len(scores) == len(REQUEST["texts"]) and all(map(math.isfinite, scores))
    fp32 = reranker_loading.load_reranker(str(model_dir), device=torch.device("cpu"))
    assert score(fp32) == pytest.approx(scores, abs=5e-2)


def test_the_worker_device_follows_gpu_id_and_refuses_one_out_of_range(four_gpus):
    assert reranker_loading.worker_device(context("3")) == torch.device("cuda", 3)
    assert reranker_loading.worker_device(None) == torch.device("cuda", 0)
    assert reranker_loading.worker_device(context(None)) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="gpu_id 4 names no GPU: 4 visible"):
        reranker_loading.worker_device(context(4))
    with pytest.raises(ValueError, match="gpu_id 'x' is not a GPU index"):
        reranker_loading.worker_device(context("x"))


def test_without_cuda_every_worker_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert reranker_loading.worker_device(context(1)) == torch.device("cpu")
    assert reranker_loading.worker_device(None) == torch.device("cpu")
