"""The model-server tier's torch: the very build installed beside the CLI, whatever pip's
``PIP_CONSTRAINT`` says or omits, and never another variant (issue 24, item 8)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sagemaker_reranker.deploy.local.mms import venv as mms_venv


def test_the_requirement_pins_the_installed_build_without_pip_constraint(monkeypatch) -> None:
    monkeypatch.delenv("PIP_CONSTRAINT", raising=False)
    requirement = mms_venv.requirements()[0]
    assert requirement == f"torch=={torch.__version__}"
    if torch.version.cuda is None and sys.platform == "linux":
        # PyPI's unlabelled Linux wheel is a CUDA build: the label is what keeps it out.
        assert "+cpu" in requirement
    assert not any(r == "torch" or r.startswith("torch ") for r in mms_venv.requirements())


@pytest.mark.slow
def test_pip_resolves_the_requirement_to_the_same_build(monkeypatch, tmp_path) -> None:
    """What pip would install for the requirement, with no constraints file: the version and
    local label installed here (asked of pip's own resolver; nothing is downloaded that is
    not already in its cache or indexes)."""
    env = {key: value for key, value in os.environ.items() if key != "PIP_CONSTRAINT"}
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-deps",
            "--quiet",
            "--report",
            str(report),
            mms_venv.torch_requirement(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        pytest.skip(f"pip cannot reach the index torch came from here: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr
    (chosen,) = json.loads(report.read_text())["install"]
    assert chosen["metadata"]["version"] == torch.__version__


def fake_venv(tmp_path: Path, version: str, cuda: str) -> Path:
    """A virtualenv whose python answers the torch probe with ``version`` and ``cuda``."""
    python = mms_venv.venv_python(tmp_path)
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho {version} {cuda}\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return tmp_path


@pytest.mark.parametrize(
    ("got", "cuda"), [("2.14.1", "12.6"), ("2.13.0+cu126", "12.6"), ("2.13.0", "None")]
)
def test_another_variant_in_the_venv_is_refused(tmp_path, got, cuda) -> None:
    venv = fake_venv(tmp_path, got, cuda)
    wanted = rf"got torch {re.escape(got)} .*, not torch==2\.13\.0\+cpu"
    with pytest.raises(mms_venv.MmsVenvError, match=wanted):
        mms_venv._check_torch(venv, "torch==2.13.0+cpu")


def test_a_cuda_build_is_accepted_where_the_host_runs_one(tmp_path) -> None:
    venv = fake_venv(tmp_path, "2.13.0+cu126", "12.6")
    mms_venv._check_torch(venv, "torch==2.13.0+cu126")  # no error: the host's own build
