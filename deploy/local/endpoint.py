"""``LocalEndpoint``: the packaged handler behind a local, SageMaker-faithful endpoint.

Prepares the model directory as SageMaker would (safe extraction of ``model.tar.gz``, or a
bare model directory with the packaged handler laid over it in a temp dir), starts the
local server process on a free loopback port, waits until a real invocation succeeds, and
always stops the process and removes its temp dirs::

    with LocalEndpoint(model_data="model.tar.gz") as endpoint:
        runtime = endpoint.runtime_client()
        runtime.invoke_endpoint(EndpointName=endpoint.endpoint_name, Body=b'{"pairs": []}')
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from sagemaker_reranker.deploy.local.backend import PROBE, server_kind
from sagemaker_reranker.deploy.local.components import (
    COMPONENT_HEADER,
    ComponentSettings,
    check_component_name,
)
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.deploy.local.server import EARLY_EXIT, LocalSettings
from sagemaker_reranker.deploy.packaging.build import copy_handler
from sagemaker_reranker.deploy.packaging.extract import extract_archive
from sagemaker_reranker.deploy.packaging.verify import Trust
from sagemaker_reranker.inference.reranker_contract import HANDLER, HANDLER_DIR


class LocalEndpointError(RuntimeError):
    """The local server could not be started (the message says why)."""


def _check_one_source(model_data: Path | None, model_dir: Path | None) -> None:
    if (model_data is None) == (model_dir is None):
        raise ValueError("pass exactly one of model_data (model.tar.gz) or model_dir")


def prepare_model_dir(
    workdir: Path,
    model_data: Path | None = None,
    model_dir: Path | None = None,
    trust: Trust | None = None,
) -> Path:
    """The directory SageMaker would see as ``/opt/ml/model``, built inside ``workdir``.

    An archive is extracted (refusing entries that escape, and what ``trust`` does not vouch
    for). A model directory that carries
    ``code/inference.py`` is used as it is; one without gets the packaged handler through a
    temp overlay of links, so the user's directory is never written to.
    """
    _check_one_source(model_data, model_dir)
    target = workdir / "model"
    if model_data is not None:
        if not Path(model_data).is_file():
            raise LocalEndpointError(f"model archive {model_data} does not exist")
        target.mkdir()
        return extract_archive(Path(model_data), target, trust=trust)
    source = Path(model_dir).resolve()
    if not source.is_dir():
        raise LocalEndpointError(f"model directory {model_dir} does not exist")
    if (source / HANDLER_DIR / HANDLER).is_file():
        return source
    target.mkdir()
    for entry in source.iterdir():
        if entry.name != HANDLER_DIR:
            (target / entry.name).symlink_to(entry)
    copy_handler(target)
    return target


class LocalEndpoint:
    """A local endpoint process for ``model_data`` (model.tar.gz) or ``model_dir``.

    ``settings`` are ``LocalSettings``' fields (``server``, ``endpoint_name``, ``host``,
    ``port``, ``invocation_timeout``, ...): ``server`` picks the model container, ``worker``
    (sagemaker_inference's handler service in a worker process) or ``mms``
    (multi-model-server). A model that fails to load leaves the endpoint up with ``/ping``
    unhealthy; ``health()`` gives the reason. ``log_path`` names the server's log file when
    ``log`` is not given (tests read it); pass ``log=sys.stderr`` to stream it instead.

    ``components`` (name to archive) instead of one model: an endpoint hosting inference
    components, each in its own worker, routed by the component header; ``component_env``
    (name to settings) adds a component's own environment, and ``scale_to_zero_after``
    (seconds) stops an idle component's worker until the next call.
    """

    def __init__(
        self,
        model_data: str | Path | None = None,
        model_dir: str | Path | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 300.0,
        log: IO | None = None,
        trust: Trust | None = None,
        components: dict[str, str | Path] | None = None,
        component_env: dict[str, dict[str, str]] | None = None,
        **settings: Any,
    ) -> None:
        self.model_data = Path(model_data) if model_data is not None else None
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.components = {check_component_name(n): Path(a) for n, a in (components or {}).items()}
        self.component_env = {name: dict(env) for name, env in (component_env or {}).items()}
        if not self.components:
            _check_one_source(self.model_data, self.model_dir)
        elif self.model_data is not None or self.model_dir is not None:
            raise ValueError("pass components or one model (model_data, model_dir), not both")
        elif server_kind(settings.get("server", "worker")) != "worker":
            raise ValueError("inference components run on the worker server")
        self.env = dict(env or {})
        named = tuple(ComponentSettings(name) for name in self.components)  # extracted at start
        self.settings = LocalSettings(**settings, env_names=tuple(self.env), components=named)
        self.start_timeout = start_timeout
        self.trust = trust
        self.startup_seconds: float | None = None
        self._log = log
        self._workdir: Path | None = None
        self._process: subprocess.Popen | None = None

    @property
    def endpoint_name(self) -> str:
        return self.settings.endpoint_name

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        """The port asked for, and once started, the one bound."""
        return self.settings.port

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalEndpoint:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, on_loading: Callable[[], None] | None = None) -> None:
        """Start the server and wait until it answers a real invocation (or reports failure);
        ``on_loading`` is called once the model is unpacked and starts loading."""
        started = time.perf_counter()
        self._workdir = Path(tempfile.mkdtemp(prefix="reranker-local-"))
        try:
            settings = self._prepare()
            if on_loading is not None:
                on_loading()
            self._spawn(settings)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started

    def _prepare(self) -> LocalSettings:
        """The settings with the model (or each component's) extracted into the workdir."""
        if not self.components:
            model = prepare_model_dir(self._workdir, self.model_data, self.model_dir, self.trust)
            return dataclasses.replace(self.settings, model_dir=str(model))
        components = []
        for name, archive in self.components.items():
            folder = self._workdir / "components" / name
            folder.mkdir(parents=True)
            model = prepare_model_dir(folder, model_data=archive, trust=self.trust)
            env = self.component_env.get(name, {})
            components.append(ComponentSettings(name, str(model), env))
        return dataclasses.replace(self.settings, components=tuple(components))

    def _spawn(self, settings: LocalSettings) -> None:
        workdir = self._workdir
        ready = workdir / "port"
        command = [
            sys.executable,
            "-m",
            "sagemaker_reranker.deploy.local.server",
            "--settings",
            settings.to_json(),
            "--ready-file",
            str(ready),
            "--parent-pid",
            str(os.getpid()),
            "--run-dir",
            str(workdir),
        ]
        env = dict(os.environ)
        env.update(self.env)
        # SageMaker imports the handler as the top-level module ``inference`` from code/
        # (each component's worker puts its own model's code/ first).
        if settings.model_dir:
            env["PYTHONPATH"] = str(Path(settings.model_dir) / HANDLER_DIR)
        env["SAGEMAKER_PROGRAM"] = HANDLER
        tmp = workdir / "tmp"
        tmp.mkdir()
        env["TMPDIR"] = str(tmp)
        output = self._log if self._log is not None else open(self.log_path, "wb")  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        finally:
            if self._log is None:
                output.close()
        deadline = time.monotonic() + 60
        while not ready.exists():
            self._check_alive("before listening")
            if time.monotonic() > deadline:
                raise LocalEndpointError("the local server did not start listening within 60 s")
            time.sleep(0.05)
        port = int(ready.read_text(encoding="utf-8"))
        self.settings = dataclasses.replace(settings, port=port)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive("while loading the model")
            status, _ = self.ping()
            if status == 500:
                return  # model_fn failed: stay up, health() says why
            if status == 200:
                for name in self.components or [None]:
                    headers = {COMPONENT_HEADER: name} if name else None
                    answer = self.request("POST", "/invocations", PROBE, headers)
                    if answer[0] != 200:
                        raise LocalEndpointError(
                            f"the endpoint is healthy but a valid invocation "
                            f"{f'of component {name} ' if name else ''}failed with "
                            f"{answer[0]}: {answer[1][:300]!r}"
                        )
                return
            time.sleep(0.1)
        raise LocalEndpointError(f"the model did not load within {self.start_timeout:g} s")

    def _check_alive(self, when: str) -> None:
        code = self._process.poll() if self._process else None
        if code is not None:
            cause = self._workdir / EARLY_EXIT if self._workdir else None
            if cause is not None and cause.is_file():
                raise LocalEndpointError(
                    f"the local server exited with code {code} {when}: {cause.read_text()}"
                )
            raise LocalEndpointError(
                f"the local server exited with code {code} {when}:\n{self.log_tail()}"
            )

    def stop(self) -> int | None:
        """Stop the server process (TERM, then KILL) and remove the temp dirs.

        Returns the server's exit code (0 after a clean shutdown), None if none was running.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if process is not None and self.port and port_open(self.host, self.port):
            raise LocalEndpointError(f"port {self.port} still open after the server stopped")
        return process.returncode if process is not None else None

    def wait(self) -> int:
        """Block until the server process exits on its own; its exit code."""
        return self._process.wait()

    # ----------------------------------------------------------------- access

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path:
        return self._workdir / "server.log"

    def log_tail(self, lines: int = 40) -> str:
        if self._log is not None or self._workdir is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """One plain HTTP request: (status, body, headers with lower-case names)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, data, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def ping(self) -> tuple[int, dict]:
        status, body, _ = self.request("GET", "/ping")
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"reason": body.decode("utf-8", errors="replace")}

    def health(self) -> tuple[bool, str]:
        """(healthy, reason) as ``/ping`` reports it."""
        status, payload = self.ping()
        return status == 200, str(payload.get("reason", ""))

    def runtime_client(self, **config):
        """A boto3 ``sagemaker-runtime`` client for this endpoint, built as the client builds
        one for any loopback URL: unsigned, so it needs no AWS credentials, region or config.
        ``config`` goes to botocore (e.g. ``read_timeout``).
        """
        from botocore.config import Config

        from sagemaker_reranker.client.runtime import Credentials, make_runtime_client

        options = {
            "read_timeout": self.settings.invocation_timeout + 10,
            "retries": {"max_attempts": 1, "mode": "standard"},
        }
        options.update(config)
        return make_runtime_client(
            max_concurrency=1,
            region_name=None,
            profile_name=None,
            endpoint_url=self.url,
            allow_insecure_http=True,  # the server this object started, wherever it binds
            credentials=Credentials(),
            config=Config(**options),
        )
