"""The model-server tier's own virtualenv: what the AWS Hugging Face container runs.

The container serves ``code/inference.py`` with multi-model-server and the Hugging Face
serving toolkit on transformers 4.x; this repository's main environment has transformers 5,
which the toolkit cannot import (``transformers.file_utils.is_tf_available`` is gone). So the
tier gets a separate virtualenv (``$RERANKER_MMS_VENV``, else in the user's cache folder),
built on demand and reused while its spec (the lists below, the constraints file and the
Python version) is unchanged: a stamp file inside holds the spec's hash.

torch is pinned to the exact version installed beside this package, local label included
(``2.13.0+cpu``): pip takes the same wheel (from its cache or the index it came from) or
fails, and never downloads another variant (an unpinned ``torch`` resolves on PyPI to a
multi-GB CUDA build). A CUDA build is accepted when it is what the host runs. pip's own
``PIP_CONSTRAINT``, when set, still applies; this repository's Makefile and tests point it
at ``constraints.txt``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sagemaker_reranker.deploy.platform import TRANSFORMERS_VERSION

logger = logging.getLogger(__name__)

VENV_ENV = "RERANKER_MMS_VENV"  # overrides the default location
STAMP = "reranker-spec.sha256"
# As in the AWS Hugging Face PyTorch inference image deploy uses: its transformers version,
# multi-model-server 1.1.11, sagemaker-inference 1.10.1. torch: ``torch_requirement()``.
REQUIREMENTS = (
    f"transformers=={TRANSFORMERS_VERSION}",
    "multi-model-server==1.1.11",
    "sagemaker-inference==1.10.1",
    # What the serving toolkit imports at run time, since it is installed without its deps.
    "huggingface_hub",
    "numpy",
    "Pillow",
    "retrying",
)
DECODER_SOURCE = Path(__file__).resolve().parent / "ModelResponseDecoder.java"
# Inside the virtualenv; MmsBackend puts it first on MMS's classpath.
DECODER_DIR = "mms-decoder-fix"
# Its declared deps pull librosa, pyctcdecode (numpy<2), numba and scikit-learn (+300 MB)
# that serving a text model never imports.
NO_DEPS = ("sagemaker-huggingface-inference-toolkit==2.6.0",)


class MmsVenvError(RuntimeError):
    """The tier's virtualenv could not be built (the message says why)."""


def default_venv_dir() -> Path:
    """``$RERANKER_MMS_VENV``, else ``sagemaker-reranker/venv-mms`` in the user's cache."""
    override = os.environ.get(VENV_ENV)
    if override:
        return Path(override)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "sagemaker-reranker" / "venv-mms"


def torch_requirement() -> str:
    """``torch==`` the version installed beside this package, its local label (``+cpu``,
    ``+cu126``) included: the same wheel, whatever ``PIP_CONSTRAINT`` says or omits."""
    try:
        return f"torch=={importlib.metadata.version('torch')}"
    except importlib.metadata.PackageNotFoundError:
        raise MmsVenvError(
            "torch is not installed beside sagemaker-reranker; install the [local] extra"
        ) from None


def requirements() -> tuple[str, ...]:
    """What the tier's virtualenv installs (with deps): the pinned torch, then the rest."""
    return (torch_requirement(), *REQUIREMENTS)


def constraints_file() -> Path | None:
    """pip's ``PIP_CONSTRAINT`` file, if one is set (a clear error if it does not exist)."""
    named = os.environ.get("PIP_CONSTRAINT")
    if not named:
        return None
    path = Path(named)
    if not path.is_file():
        raise MmsVenvError(f"PIP_CONSTRAINT names {path}, which is not a file")
    return path


def spec_hash() -> str:
    """Hash of everything that decides the virtualenv's contents."""
    constraints = constraints_file()
    spec = {
        "python": list(sys.version_info[:2]),
        "requirements": requirements(),
        "no_deps": NO_DEPS,
        "constraints": constraints.read_text(encoding="utf-8") if constraints else "",
        "decoder": DECODER_SOURCE.read_text(encoding="utf-8"),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_current(venv: Path) -> bool:
    """Whether ``venv`` was fully built from the current spec."""
    stamp = venv / STAMP
    return (
        venv_python(venv).is_file()
        and stamp.is_file()
        and stamp.read_text(encoding="utf-8").strip() == spec_hash()
    )


def ensure_venv(venv: Path | None = None) -> Path:
    """Build the tier's virtualenv unless it is current; return its path.

    Idempotent and safe to call from several processes: a lock beside the virtualenv makes
    the others wait for one build. The stamp is written last, so an interrupted build is
    redone from scratch next time.
    """
    venv = Path(venv or default_venv_dir()).absolute()
    if is_current(venv):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_current(venv):
            _build(venv)
    return venv


def _build(venv: Path) -> None:
    started = time.perf_counter()
    logger.info("building the model-server tier's virtualenv in %s (once, ~2 min)", venv)
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    constraints = constraints_file()
    torch = torch_requirement()
    try:
        _run([*pip, *(["-c", str(constraints)] if constraints else []), *requirements()])
    except MmsVenvError as error:
        if "No matching distribution found for torch" not in str(error):
            raise
        raise MmsVenvError(
            f"pip found no {torch} (the torch installed beside sagemaker-reranker) in its "
            "cache or indexes; point pip at the index you installed torch from, e.g. "
            "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu"
        ) from None
    _run([*pip, "--no-deps", *NO_DEPS])
    _check_torch(venv, torch)
    _compile_decoder(venv)
    (venv / STAMP).write_text(spec_hash() + "\n", encoding="utf-8")
    logger.info("built %s in %.0f s", venv, time.perf_counter() - started)


def _check_torch(venv: Path, wanted: str) -> None:
    """The very build installed beside this package (a CUDA one where the host has one), not
    another variant that a constraints file or an index could have substituted."""
    probe = "import torch; print(torch.__version__, torch.version.cuda)"
    version, cuda = _run([str(venv_python(venv)), "-c", probe]).split()
    if f"torch=={version}" != wanted:
        raise MmsVenvError(f"{venv} got torch {version} (CUDA {cuda}), not {wanted}")


def _compile_decoder(venv: Path) -> None:
    """Compile the fixed MMS response decoder (see its source) against MMS's own jar."""
    javac = shutil.which("javac")
    if javac is None:
        raise MmsVenvError("javac not found: the model-server tier needs a Java 17 JDK")
    jar = next(venv.glob("lib/python*/site-packages/mms/frontend/model-server.jar"))
    output = venv / DECODER_DIR
    _run(
        [
            javac,
            "-J-XX:-UsePerfData",
            "--release",
            "11",
            "-cp",
            str(jar),
            "-d",
            str(output),
            str(DECODER_SOURCE),
        ]
    )


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise MmsVenvError(f"{' '.join(command[:6])} … failed ({result.returncode}):\n{tail}")
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    """Build (or confirm) the tier's virtualenv and print its path."""
    parser = argparse.ArgumentParser(prog="python -m sagemaker_reranker.deploy.local.mms.venv")
    parser.add_argument(
        "--venv", type=Path, help="where (default: $RERANKER_MMS_VENV, else the user cache)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    try:
        venv = ensure_venv(args.venv)
    except MmsVenvError as error:
        logger.error("%s", error)
        return 1
    print(f"{venv} ready ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
