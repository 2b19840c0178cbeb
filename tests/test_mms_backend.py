"""The model-server tier itself: its virtualenv, ``MmsBackend``'s lifecycle (nothing left
running or listening), load failures, and the Hugging Face toolkit's default pipeline.

The wire contract on this tier runs in ``test_contract.py``; these tests cover what only this
tier has. They skip only where Java is missing.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from handler import inference

from sagemaker_reranker.deploy.local.backend import Invocation
from sagemaker_reranker.deploy.local.mms import backend as mms
from sagemaker_reranker.deploy.local.mms import venv as mms_venv
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.deploy.packaging.extract import extract_archive
from sagemaker_reranker.inference.reranker_contract import JSON

pytestmark = [pytest.mark.slow, pytest.mark.mms]

PAIRS = [
    ["what is the plan for the economy?", "we will lower costs for american families"],
    ["what is the plan for the economy?", "infrastructure jobs for workers"],
    ["jobs", "the price of energy"],
]


@pytest.fixture(scope="session")
def venv() -> Path:
    reason = mms.unavailable_reason()
    if reason:
        print(f"\nSKIP mms tier: {reason}")
        pytest.skip(reason)
    return mms_venv.ensure_venv()


def processes_under(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (MMS's java and workers name its run dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(path).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Started:
    """A started backend and what it held, to check that ``stop`` released all of it."""

    def __init__(self, backend: mms.MmsBackend) -> None:
        self.backend = backend
        backend.start()
        self.run_dir = backend.run_dir
        self.ports = [backend.port, backend.management_port]

    def invoke(self, payload: object, content_type: str = JSON, accept: str = JSON):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.backend.invoke(Invocation(body, content_type, accept), timeout=60)

    def stop_and_check(self) -> None:
        self.backend.stop()
        assert processes_under(self.run_dir) == [], "MMS or a worker still runs"
        assert not any(port_open("127.0.0.1", port) for port in self.ports), (
            f"a port of {self.ports} still listens"
        )
        assert not self.run_dir.exists()


@pytest.fixture(scope="module")
def served(venv: Path, tiny_archive: Path, tmp_path_factory) -> Iterator[Started]:
    """The tiny archive under MMS with the Hugging Face handler service (one server)."""
    model_dir = extract_archive(tiny_archive, tmp_path_factory.mktemp("mms-model"))
    started = Started(mms.MmsBackend(model_dir, venv=venv))
    assert started.backend.health() == (True, "healthy"), started.backend.health()
    seconds = started.backend.startup_seconds
    print(f"\nmms tier cold start (start to first good invocation): {seconds:.1f} s")
    yield started
    started.stop_and_check()


def test_venv_matches_the_aws_image_and_is_reused(venv: Path) -> None:
    names = ["torch", "transformers", "sagemaker-huggingface-inference-toolkit", "librosa"]
    probe = (
        "import json, sys; from importlib import metadata as m\n"
        "def v(n):\n try: return m.version(n)\n except m.PackageNotFoundError: return None\n"
        "print(json.dumps([v(n) for n in sys.argv[1:]]))"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe, *names],
        capture_output=True,
        text=True,
        check=True,
    )
    # The CPU wheel, the image's transformers, the toolkit without its audio deps.
    assert json.loads(result.stdout) == ["2.13.0+cpu", "4.51.3", "2.6.0", None]
    stamp = venv / mms_venv.STAMP
    before = stamp.stat().st_mtime_ns
    assert mms_venv.ensure_venv(venv) == venv
    assert stamp.stat().st_mtime_ns == before, "a current virtualenv must not be rebuilt"


def test_scores_under_transformers_4_equal_transformers_5(served: Started, tiny_model_dir):
    """The same archive scores the same in the image's stack as in this repo's."""
    answer = served.invoke({"pairs": PAIRS})
    assert answer.status == 200, answer.body
    assert answer.content_type.startswith(JSON)
    expected = inference.model_fn(str(tiny_model_dir)).score([tuple(p) for p in PAIRS])
    got = json.loads(answer.body)["scores"]
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize(
    ("body", "content_type", "original"),
    [
        (json.dumps({"pairs": [["only a query"]]}).encode(), JSON, "(400, 'pairs[0] must be"),
        (b"a,b", "text/csv", "(415, \"unsupported content type 'text/csv'"),
        (json.dumps({"pairs": [["q", "d"]] * 1025}).encode(), JSON, "(413, 'request has 1025"),
    ],
)
def test_every_handler_error_is_a_400_wrapping_the_original(
    served: Started, body: bytes, content_type: str, original: str
) -> None:
    answer = served.invoke(body, content_type)
    assert answer.status == 400
    message = json.loads(answer.body)["message"]
    assert message.startswith(original), message
    assert b"Traceback" not in answer.body
    assert served.invoke({"pairs": PAIRS[:1]}).status == 200, "the worker must survive"


def test_a_longer_error_after_many_short_ones_keeps_the_worker(served: Started) -> None:
    """MMS's own response decoder fails here (500 "Worker died.", the model reloads): Netty's
    read size settles on the recent short responses, and a longer one cut where its status
    code lies crashed the decoder. Sweeping the longer error's length over 20 bytes puts that
    cut on the status code at least once; the tier's decoder waits for the whole frame."""

    def error(key_length: int):
        return served.invoke({"pairs": [], "k" * key_length: 1})

    statuses = []
    for extra in range(11, 21):  # the message holds the key twice: 22-40 more bytes
        statuses += [error(20).status for _ in range(40)]
        statuses.append(error(20 + extra).status)
    assert set(statuses) == {400}, sorted(set(statuses))


def test_custom_attributes_come_back(served: Started) -> None:
    body = json.dumps({"pairs": PAIRS[:1]}).encode()
    answer = served.backend.invoke(Invocation(body, JSON, JSON, "trace_id=42"), timeout=60)
    assert (answer.status, answer.custom_attributes) == (200, "trace_id=42")


def test_model_fn_failure_is_reported_and_nothing_keeps_restarting(
    venv: Path, tiny_archive: Path, tmp_path: Path
) -> None:
    model_dir = extract_archive(tiny_archive, tmp_path / "model")
    backend = mms.MmsBackend(model_dir, env={"RERANKER_DTYPE": "float64"}, venv=venv)
    backend.start()
    ok, reason = backend.health()
    assert not ok
    assert reason.startswith("model_fn failed: ValueError: RERANKER_DTYPE must be one of"), reason
    run_dir = backend.run_dir
    assert processes_under(run_dir) == [], "a failed model's workers must not be left restarting"
    backend.stop()
    assert not run_dir.exists()


def test_hf_default_pipeline_scores_text_pairs(venv: Path, tiny_model_dir: Path) -> None:
    """No ``code/inference.py``: the toolkit's own text-classification pipeline, as on AWS.

    ``function_to_apply: none`` returns the raw logit (a 1-label model defaults to sigmoid);
    one ``{label, score}`` per input, in input order.
    """
    assert not (tiny_model_dir / "code").exists()
    inputs = [{"text": query, "text_pair": doc} for query, doc in PAIRS]
    probe = json.dumps({"inputs": inputs[:1]}).encode()
    backend = mms.MmsBackend(
        tiny_model_dir, env={"HF_TASK": "text-classification"}, venv=venv, probe=probe
    )
    started = Started(backend)
    try:
        assert backend.health() == (True, "healthy"), backend.health()
        raw = started.invoke({"inputs": inputs, "parameters": {"function_to_apply": "none"}})
        sigmoid = started.invoke({"inputs": inputs})
    finally:
        started.stop_and_check()
    assert raw.status == 200, raw.body
    items = json.loads(raw.body)
    assert [sorted(item) for item in items] == [["label", "score"]] * len(PAIRS)
    expected = inference.model_fn(str(tiny_model_dir)).score([tuple(p) for p in PAIRS])
    scores = [item["score"] for item in items]
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(scores, expected, strict=True))
    squashed = [item["score"] for item in json.loads(sigmoid.body)]
    assert all(
        math.isclose(s, 1 / (1 + math.exp(-x)), abs_tol=1e-6)
        for s, x in zip(squashed, expected, strict=True)
    )
