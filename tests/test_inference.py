"""The handler's contract: request shapes, order, empty input, errors, settings, loading."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from handler import inference, reranker_loading, reranker_request
from sagemaker_inference.errors import GenericInferenceToolkitError
from transformers import AutoModelForSequenceClassification

from sagemaker_reranker.deploy.packaging.extract import extract_archive

QUERY = "what is the plan for the economy"
DOCS = [
    "the plan is to make more in america",
    "energy costs for families",
    "a",
    "inflation " * 700,  # far over 512 tokens: truncated, query kept
    "",
    "jobs jobs jobs and infrastructure",
]


def call(reranker, payload, content_type="application/json", accept="application/json"):
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload).encode()
    response = inference.transform_fn(reranker, body, content_type, accept)
    assert isinstance(response, bytes)  # a tuple breaks the HF container (see transform_fn)
    return json.loads(response)["scores"]


def test_the_three_shapes_give_the_same_scores_in_input_order(reranker):
    pairs = [[QUERY, doc] for doc in DOCS]
    by_pairs = call(reranker, {"pairs": pairs})
    by_text_pairs = call(reranker, {"text_pairs": pairs})
    by_query = call(reranker, {"query": QUERY, "texts": DOCS})
    assert len(by_pairs) == len(DOCS)
    assert by_pairs == by_text_pairs == by_query
    one_by_one = [call(reranker, {"pairs": [pair]})[0] for pair in pairs]
    assert by_pairs == pytest.approx(one_by_one, abs=1e-5)
    reversed_scores = call(reranker, {"pairs": pairs[::-1]})
    assert reversed_scores[::-1] == pytest.approx(by_pairs, abs=1e-5)


def test_body_as_str_bytes_and_charset(reranker):
    payload = json.dumps({"pairs": [[QUERY, DOCS[0]]]})
    as_bytes = call(reranker, payload.encode())
    as_str = call(reranker, payload)
    with_charset = call(reranker, payload.encode(), "application/json; charset=utf-8")
    assert as_bytes == as_str == with_charset


@pytest.mark.parametrize(
    "payload", [{"pairs": []}, {"text_pairs": []}, {"query": "q", "texts": []}]
)
def test_empty_input_gives_empty_scores(reranker, payload):
    assert call(reranker, payload) == []


@pytest.mark.parametrize(
    "accept", [None, "", "*/*", "application/json", "text/csv, application/json"]
)
def test_accept_variants_that_mean_json(reranker, accept):
    assert len(call(reranker, {"pairs": [[QUERY, "x"]]}, accept=accept)) == 1


def test_query_longer_than_max_length_falls_back_to_longest_first(reranker):
    long_query = "economy " * 600
    scores = call(reranker, {"pairs": [[long_query, "short doc"], [QUERY, "short doc"]]})
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)


BAD_INPUTS = [
    # (body, content_type, accept, status, words the message must contain)
    (b"{not json", "application/json", None, 400, "malformed JSON"),
    (b"\xff\xfe{}", "application/json", None, 400, "UTF-8"),
    (b"", "application/json", None, 400, "empty"),
    (b"   ", "application/json", None, 400, "empty"),
    (b"[]", "application/json", None, 400, "JSON object"),
    (b'"pairs"', "application/json", None, 400, "JSON object"),
    (b"{}", "application/json", None, 400, "send"),
    (b'{"pair": [["q", "d"]]}', "application/json", None, 400, "unknown key"),
    (b'{"pairs": [["q", "d"]], "extra": 1}', "application/json", None, 400, "'extra'"),
    (b'{"pairs": "q d"}', "application/json", None, 400, "'pairs' must be a list"),
    (b'{"pairs": [["q"]]}', "application/json", None, 400, "pairs[0]"),
    (b'{"pairs": [["q", "d"], ["q", "d", "e"]]}', "application/json", None, 400, "pairs[1]"),
    (b'{"pairs": [["q", null]]}', "application/json", None, 400, "pairs[0][1] must be a string"),
    (b'{"text_pairs": [[1, "d"]]}', "application/json", None, 400, "text_pairs[0][0]"),
    (b'{"pairs": [["q", {"a": 1}]]}', "application/json", None, 400, "pairs[0][1]"),
    (b'{"pairs": [["q", NaN]]}', "application/json", None, 400, "NaN"),
    (b'{"pairs": [["q", Infinity]]}', "application/json", None, 400, "Infinity"),
    (b'{"query": 5, "texts": ["d"]}', "application/json", None, 400, "'query' must be a string"),
    (b'{"query": "q", "texts": "d"}', "application/json", None, 400, "'texts' must be a list"),
    (b'{"query": "q", "texts": ["d", null]}', "application/json", None, 400, "texts[1]"),
    (b'{"query": "q"}', "application/json", None, 400, "do not fit"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", None, 400, "malformed JSON"),
    (b'{"pairs": []}', "text/csv", None, 415, "content type"),
    (b'{"pairs": []}', "application/x-npy", None, 415, "content type"),
    (b'{"pairs": []}', "application/json", "text/csv", 406, "accept"),
]


@pytest.mark.parametrize(("body", "content_type", "accept", "status", "words"), BAD_INPUTS)
def test_bad_input_is_rejected_with_a_named_problem(
    reranker, body, content_type, accept, status, words
):
    with pytest.raises(GenericInferenceToolkitError) as caught:
        inference.transform_fn(reranker, body, content_type, accept)
    assert caught.value.status_code == status
    assert words in caught.value.message
    assert "Traceback" not in caught.value.message
    # The worker survives: the next valid call succeeds.
    assert len(call(reranker, {"pairs": [[QUERY, "d"]]})) == 1


def test_every_engine_error_has_its_status():
    """A RerankerError class missing from inference.STATUSES would escape transform_fn as an
    unnamed 500 with a traceback."""
    classes = set(reranker_request.RerankerError.__subclasses__())
    assert set(inference.STATUSES) == classes


def test_a_non_finite_score_is_a_500(tiny_model_dir):
    """Weights that overflow (here: a NaN in the head) give no score to return."""
    broken = inference.model_fn(str(tiny_model_dir))
    with torch.no_grad():
        broken.model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(GenericInferenceToolkitError) as caught:
        call(broken, {"pairs": [[QUERY, "d"]]})
    assert caught.value.status_code == 500 and "non-finite score" in caught.value.message


def test_limits_on_pairs_and_tokens(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("RERANKER_MAX_PAIRS", "3")
    monkeypatch.setenv("RERANKER_MAX_TOKENS", "200")
    limited = inference.model_fn(str(tiny_model_dir))
    with pytest.raises(GenericInferenceToolkitError) as too_many:
        call(limited, {"query": "q", "texts": ["d"] * 4})
    assert too_many.value.status_code == 413 and "RERANKER_MAX_PAIRS" in too_many.value.message
    with pytest.raises(GenericInferenceToolkitError) as too_long:
        call(limited, {"query": "q", "texts": ["economy " * 300]})
    assert too_long.value.status_code == 413 and "RERANKER_MAX_TOKENS" in too_long.value.message
    assert len(call(limited, {"query": "q", "texts": ["d"] * 3})) == 3


def test_max_length_setting_is_capped_by_the_model(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("RERANKER_MAX_LENGTH", "4096")
    assert inference.model_fn(str(tiny_model_dir)).max_length == 512
    monkeypatch.setenv("RERANKER_MAX_LENGTH", "64")
    assert inference.model_fn(str(tiny_model_dir)).max_length == 64


@pytest.mark.parametrize("name", ["RERANKER_MAX_PAIRS", "RERANKER_BATCH_TOKENS"])
def test_bad_integer_settings_fail_loading_with_the_name(tiny_model_dir, monkeypatch, name):
    monkeypatch.setenv(name, "lots")
    with pytest.raises(ValueError, match=name):
        inference.model_fn(str(tiny_model_dir))


def test_dtype_choice(monkeypatch, caplog):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert reranker_loading.choose_dtype(None, cpu) is torch.float32
    assert reranker_loading.choose_dtype(None, cuda) is torch.float16
    assert reranker_loading.choose_dtype("bf16", cuda) is torch.bfloat16
    monkeypatch.setattr(reranker_loading, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert reranker_loading.choose_dtype("bfloat16", cpu) is torch.float32
    assert "no native bf16" in caplog.text
    monkeypatch.setattr(reranker_loading, "cpu_has_native_bf16", lambda: True)
    assert reranker_loading.choose_dtype("bfloat16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="RERANKER_DTYPE"):
        reranker_loading.choose_dtype("int8", cpu)


def test_remote_code_is_off_unless_enabled(tiny_model_dir, monkeypatch):
    seen = []
    original = reranker_loading.AutoTokenizer.from_pretrained

    def recording(source, **options):
        seen.append(options["trust_remote_code"])
        return original(source, **options)

    monkeypatch.setattr(reranker_loading.AutoTokenizer, "from_pretrained", recording)
    reranker_loading.load_reranker(str(tiny_model_dir))
    monkeypatch.setenv("RERANKER_TRUST_REMOTE_CODE", "1")
    reranker_loading.load_reranker(str(tiny_model_dir))
    assert seen == [False, True]


def test_without_baked_weights_it_loads_the_configured_hub_model(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANKER_MODEL_ID", "example/not-a-real-model")
    monkeypatch.setenv("RERANKER_MODEL_REVISION", "0123abc")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="example/not-a-real-model"):
        inference.model_fn(str(tmp_path))


def test_a_multi_label_model_is_refused(tiny_model_dir, tmp_path):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    config["label2id"] = {"a": 0, "b": 1, "c": 2}
    (tmp_path / "config.json").write_text(json.dumps(config))
    for name in os.listdir(tiny_model_dir):
        if name != "config.json":
            (tmp_path / name).symlink_to(tiny_model_dir / name)
    with pytest.raises(ValueError, match="3 output labels"):
        inference.model_fn(str(tmp_path))


class RunsCodeWhenUnpickled:
    """A pickle whose loading creates ``marker``: what a hostile ``pytorch_model.bin`` can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def model_dir_with_pickle(tiny_model_dir: Path, dest: Path, weights: bytes) -> Path:
    """The tiny model's config and tokenizer, with ``weights`` as ``pytorch_model.bin``."""
    dest.mkdir()
    for name in os.listdir(tiny_model_dir):
        if not name.endswith(".safetensors"):
            (dest / name).symlink_to(tiny_model_dir / name)
    (dest / "pytorch_model.bin").write_bytes(weights)
    return dest


def test_pickle_weights_are_refused_unless_allowed(tiny_model_dir, tmp_path, monkeypatch):
    marker = tmp_path / "the-pickle-ran"
    hostile = pickle.dumps(RunsCodeWhenUnpickled(marker))
    model = model_dir_with_pickle(tiny_model_dir, tmp_path / "model", hostile)
    with pytest.raises(ValueError, match="RERANKER_ALLOW_PICKLE") as refused:
        inference.model_fn(str(model))
    assert "pytorch_model.bin" in str(refused.value) and "safetensors" in str(refused.value)
    assert not marker.exists()
    # Beside safetensors weights, the pickle is never read.
    (model / "model.safetensors").symlink_to(tiny_model_dir / "model.safetensors")
    assert len(call(inference.model_fn(str(model)), {"pairs": [[QUERY, "d"]]})) == 1
    assert not marker.exists()


def test_allow_pickle_loads_trusted_pickle_weights(tiny_model_dir, reranker, tmp_path, monkeypatch):
    state = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir)).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    model = model_dir_with_pickle(tiny_model_dir, tmp_path / "model", buffer.getvalue())
    monkeypatch.setenv("RERANKER_ALLOW_PICKLE", "1")
    pairs = {"pairs": [[QUERY, doc] for doc in DOCS]}
    assert call(inference.model_fn(str(model)), pairs) == pytest.approx(
        call(reranker, pairs), abs=1e-6
    )


ROUND_TRIP = textwrap.dedent(
    """
    import json, sys
    import inference  # resolved through PYTHONPATH=<archive>/code, as SageMaker does
    assert inference.__file__.startswith(sys.argv[1]), inference.__file__
    model = inference.model_fn(sys.argv[1])
    body = sys.stdin.read()
    out = inference.transform_fn(model, body.encode(), "application/json", "application/json")
    sys.stdout.write(out.decode())
    """
)


def test_archive_round_trip_matches_in_process(tiny_archive, reranker, tmp_path):
    """Extract the archive and load ``code/inference.py`` by path in a clean process."""
    model_dir = extract_archive(tiny_archive, tmp_path / "model")
    payload = json.dumps({"pairs": [[QUERY, doc] for doc in DOCS]})
    env = {**os.environ, "PYTHONPATH": str(model_dir / "code"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, str(model_dir)],
        input=payload,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout)["scores"] == pytest.approx(call(reranker, payload), abs=1e-6)
