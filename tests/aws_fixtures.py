"""What the AWS command tests share: moto with the shims of ``moto_shims``, in this process
(``mock_aws``) or as a server on 127.0.0.1 for CLI subprocesses, and the CLI run both ways.

The ``moto`` and ``moto_server`` fixtures in ``conftest.py`` use ``moto_session`` and
``serve_moto``; a module picks the shims and the secret that must never show by overriding
the ``moto_options`` fixture.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result
from moto import mock_aws
from moto.server import ThreadedMotoServer
from moto_shims import patch_moto, patch_percentiles, patch_service_rules

from sagemaker_reranker.deploy.aws import session as aws_session
from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.local.net import port_open

CLI = str(Path(sys.executable).with_name("sagemaker-reranker"))
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
NAME = "rr"
BUCKET = "sagemaker-us-east-1-123456789012"
STEP_TIMEOUT = 120


@dataclass(frozen=True)
class MotoOptions:
    """``service_rules``/``percentiles``: the optional shims. ``secret`` becomes the secret
    key once moto installed its own, so a leak of it would show; it and ``unlogged`` must
    never reach the log."""

    service_rules: bool = False
    percentiles: bool = False
    poll_seconds: float = 0
    secret: str | None = None
    unlogged: tuple[str, ...] = ()


def _patch(monkeypatch: pytest.MonkeyPatch, options: MotoOptions) -> None:
    patch_moto(monkeypatch)
    if options.service_rules:
        patch_service_rules(monkeypatch)
    if options.percentiles:
        patch_percentiles(monkeypatch)


@contextmanager
def moto_session(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, options: MotoOptions
) -> Iterator[None]:
    """``mock_aws`` with the shims, ``options.poll_seconds`` between waits, no role from the
    machine; on the way out, no secret in the log."""
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    _patch(monkeypatch, options)
    monkeypatch.setattr(aws_session, "POLL_SECONDS", options.poll_seconds)
    caplog.set_level(logging.INFO)
    with mock_aws():
        if options.secret is not None:
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options.secret)
        yield
    # At teardown ``caplog.text`` holds only the teardown's records: read the test's own.
    logged = "\n".join(
        record.getMessage() for when in ("setup", "call") for record in caplog.get_records(when)
    )
    for secret in (options.secret, *options.unlogged):
        assert secret is None or secret not in logged, "a secret reached the log"


@contextmanager
def serve_moto(monkeypatch: pytest.MonkeyPatch, options: MotoOptions) -> Iterator[str]:
    """A moto server on 127.0.0.1 in a thread of this process, so the shims apply to it; its
    URL. On the way out its state is reset and its port closed."""
    _patch(monkeypatch, options)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10)
        server.stop()
        server._server.server_close()  # stop() leaves the listening socket open
    assert not port_open(host, port)


@contextmanager
def ctrl_c_at(monkeypatch: pytest.MonkeyPatch, operation: str) -> Iterator[None]:
    """Inside the block, a run is interrupted (Ctrl-C) when it makes the AWS call ``operation``."""
    original = aws_session.Aws.write

    def interrupted(self, service, name, **params):
        if name == operation:
            raise KeyboardInterrupt
        return original(self, service, name, **params)

    monkeypatch.setattr(aws_session.Aws, "write", interrupted)
    try:
        yield
    finally:
        monkeypatch.setattr(aws_session.Aws, "write", original)


class Cli:
    """The CLI in-process through click: never a traceback, none of ``secrets`` shown."""

    def __init__(self, *secrets: str) -> None:
        self.secrets = secrets

    def __call__(self, *args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(main, list(args), input=input)
        shown = result.output + result.stderr
        assert not any(secret in shown for secret in self.secrets)
        assert "Traceback" not in shown
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def deploy(self, archive: Path | str, *extra: str, name: str = NAME) -> Result:
        return self("deploy", name, *model_args(archive, *extra))

    def update(self, archive: Path | str, *extra: str, name: str = NAME) -> Result:
        return self("update", name, *model_args(archive, *extra))


def model_args(archive: Path | str, *extra: str) -> tuple[str, ...]:
    """What ``deploy`` and ``update`` are given in every test: the archive and the role."""
    return ("--model-data", str(archive), "--role", ROLE, *extra)


def cli_env(home: Path, endpoint_url: str, secret: str, **extra: str) -> dict[str, str]:
    """A user's shell for the installed CLI: fake keys on the moto server at
    ``endpoint_url``, no AWS profile or config file, no hub. ``extra`` adds or replaces."""
    keep = ("PATH", "LANG", "SYSTEMROOT", "TMPDIR")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(
        HOME=str(home),
        AWS_ENDPOINT_URL=endpoint_url,
        AWS_ACCESS_KEY_ID="AKIAFAKEFAKEFAKE",
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI as a subprocess: never a traceback, never the secret key shown."""
    done = subprocess.run(
        [CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT
    )
    assert env["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def start_cli(
    env: dict[str, str], cwd: Path, *args: str, stderr: int = subprocess.PIPE
) -> subprocess.Popen[str]:
    """The installed CLI as a process that runs until stopped (``serve``, ``logs --follow``):
    the caller stops it. ``stderr=subprocess.STDOUT`` reads both streams as one."""
    return subprocess.Popen(
        [CLI, *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
