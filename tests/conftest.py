"""Shared fixtures: tiny generated models and archives (no hub), fake AWS credentials."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.deploy.packaging.build import package
from sagemaker_reranker.examples.offline_models import build_offline_model

# No test may reach the hub or real AWS.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The model-server tier's virtualenv lives in the checkout and installs through its pins.
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("RERANKER_MMS_VENV", str(REPO / ".venv-mms"))
os.environ.setdefault("PIP_CONSTRAINT", str(REPO / "constraints.txt"))


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_temp(tmp_path_factory: pytest.TempPathFactory):
    """No test leaves a file outside its own temporary folder: for the session, every temp file
    the code makes (mkdtemp, servers' run dirs, subprocesses through TMPDIR) goes to a private
    folder that must be empty at the end. pytest's own folders (tmp_path) stay where they are.
    Short, for the model server's socket paths."""
    tmp_path_factory.getbasetemp()  # pytest's folders are placed before TMPDIR moves
    private = tempfile.mkdtemp(prefix="rr-t-", dir="/tmp" if os.path.isdir("/tmp") else None)
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = private, private
    yield
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]
    # torch keeps its compiled-kernel cache in the temp folder: a library's cache, not a test's.
    left = sorted(name for name in os.listdir(private) if not name.startswith("torchinductor_"))
    shutil.rmtree(private, ignore_errors=True)
    assert not left, f"tests left files outside their temporary folders: {left}"


def _offline_model(name: str, kind: str, about: str):
    """A session fixture ``name``: the offline model ``kind``, built once."""

    def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return build_offline_model(kind, tmp_path_factory.mktemp(kind))

    build.__doc__ = about
    return pytest.fixture(scope="session", name=name)(build)


tiny_model_dir = _offline_model(
    "tiny_model_dir",
    "tiny",
    "A 2-layer BERT reranker with a generated vocabulary (random weights, fixed seed).",
)
tiny_qwen3_dir = _offline_model(
    "tiny_qwen3_dir",
    "tiny-qwen3",
    "A 2-layer Qwen3 causal LM, a yes/no reranker like Qwen3-Reranker (random weights).",
)
tiny_qwen3_seqcls_dir = _offline_model(
    "tiny_qwen3_seqcls_dir",
    "tiny-qwen3-seqcls",
    "``tiny-qwen3`` converted to a one-logit classifier (head ``W[yes] − W[no]``).",
)
tiny_two_label_dir = _offline_model(
    "tiny_two_label_dir", "tiny-two-label", "The tiny BERT with a two-label head."
)


@pytest.fixture(scope="session")
def tiny_archive(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.tar.gz`` of the tiny model, packaged exactly as users package theirs."""
    return package(str(tiny_model_dir), tmp_path_factory.mktemp("archive") / "model.tar.gz").path


@pytest.fixture(scope="module")
def reranker(tiny_model_dir: Path):
    """The handler's model (``model_fn``) for the tiny model, one per test module."""
    from handler import inference

    return inference.model_fn(str(tiny_model_dir))


@pytest.fixture
def responder(reranker):
    """The loopback runtime stand-in (``runtime_responder``) in front of ``reranker``."""
    from runtime_responder import RuntimeResponder

    with RuntimeResponder(reranker) as server:
        yield server


@pytest.fixture(scope="session")
def endpoint(tiny_archive: Path):
    """One local endpoint serving the tiny archive, shared by the client-side tests."""
    with LocalEndpoint(model_data=tiny_archive) as started:
        yield started
    assert not port_open("127.0.0.1", started.port)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and region; no profile or config file from the machine."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


@pytest.fixture
def moto_options():
    """Which moto shims and secret the ``moto`` fixture uses; a module overrides it."""
    from aws_fixtures import MotoOptions

    return MotoOptions()


@pytest.fixture
def moto(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    moto_options,
):
    """moto in this process with the ``moto_shims`` patches (never AWS)."""
    from aws_fixtures import moto_session

    with moto_session(monkeypatch, caplog, moto_options):
        yield


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch, moto_options):
    """A moto server on 127.0.0.1 for CLI subprocesses, with the shims; its URL."""
    from aws_fixtures import serve_moto

    with serve_moto(monkeypatch, moto_options) as url:
        yield url


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the model-server tier's virtualenv (minutes on a fresh machine) before the first
    mms test runs, so the build does not count against that test's timeout. A failed build
    is reported here and again, as a failure, by the tests that need it."""
    if not any("mms" in item.nodeid for item in session.items):
        return
    from sagemaker_reranker.deploy.local.mms import backend as mms
    from sagemaker_reranker.deploy.local.mms import venv as mms_venv

    if mms.unavailable_reason() is not None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    started = time.perf_counter()
    try:
        venv = mms_venv.ensure_venv()
    except mms_venv.MmsVenvError as error:
        reporter.write_line(f"model-server tier virtualenv not built: {error}")
        return
    reporter.write_line(
        f"model-server tier virtualenv {venv} ({time.perf_counter() - started:.0f} s)"
    )
