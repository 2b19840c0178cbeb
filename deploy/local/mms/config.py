"""What multi-model-server is started with: a JDK, its properties file, the tier's files.

The properties are the Hugging Face container's (``sagemaker_inference``'s defaults) with
both addresses on loopback and the run directory's paths.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

HANDLER_SERVICE = "sagemaker_huggingface_inference_toolkit.handler_service"
# Environment of this process that must not leak into the tier's Python.
FOREIGN_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")


class StartFailure(Exception):
    """Why the model server did not come up (reported by ``health``)."""


def java_command() -> str | None:
    """The ``java`` MMS will run: ``$JAVA_HOME/bin/java`` or the one on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def unavailable_reason() -> str | None:
    """Why this tier cannot run on this machine (None when it can): only a missing Java.

    A JDK, not just a runtime: building the tier compiles a fix for MMS's response decoder.
    """
    if java_command() is None or shutil.which("javac") is None:
        return (
            "no Java 17 JDK (multi-model-server needs java, the tier's build needs javac: "
            "apt-get install openjdk-17-jdk-headless)"
        )
    return None


def mms_environment(venv: Path, run: Path, user_env: dict[str, str]) -> dict[str, str]:
    """The container's environment for MMS and its workers, paths inside the run directory."""
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN_ENV}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",
        }
    )
    env.update(user_env)
    env.update(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "TMPDIR": str(run / "tmp"),
            "TEMP": str(run / "tmp"),  # MMS: java.io.tmpdir, its socket and pid file
            "LOG_LOCATION": str(run / "logs"),
            "METRICS_LOCATION": str(run / "logs"),
            "SAGEMAKER_BASE_DIR": str(run / "opt_ml"),
        }
    )
    return env


def mms_properties(
    venv: Path,
    env: dict[str, str],
    port: int,
    management_port: int,
    model_store: Path,
    handler_service: str,
) -> str:
    """The container's MMS config (sagemaker_inference's defaults) bound to loopback."""
    defaults = site_file(venv, "sagemaker_inference/etc/default-mms.properties")
    settings = {
        "inference_address": f"http://127.0.0.1:{port}",
        "management_address": f"http://127.0.0.1:{management_port}",
        "model_store": str(model_store),
        "default_service_handler": handler_service,
        "default_workers_per_model": positive_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS"),
        "default_response_timeout": positive_int(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT"),
        "vmargs": "-XX:-UseContainerSupport -XX:-UsePerfData -Xmx512m",
    }
    lines = [line for line in defaults.read_text(encoding="utf-8").splitlines() if line]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def site_file(venv: Path, name: str) -> Path:
    """A file of an installed package in the tier's virtualenv."""
    for path in venv.glob(f"lib/python*/site-packages/{name}"):
        return path
    raise StartFailure(f"{venv} has no {name}; rebuild it (delete it and start again)")


def short_tmp() -> str:
    """A temp root short enough for MMS's Unix socket path (at most 107 bytes)."""
    root = tempfile.gettempdir()
    return root if len(root) <= 40 else "/tmp"


def positive_int(env: dict[str, str], name: str) -> int:
    raw = env[name]
    if not raw.isdigit() or int(raw) < 1:
        raise StartFailure(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)
