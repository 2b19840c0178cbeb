"""The model-server tier: ``code/inference.py`` under multi-model-server, as on AWS.

The AWS Hugging Face inference image serves a model archive with multi-model-server (MMS,
Java) and ``sagemaker_huggingface_inference_toolkit``'s handler service. ``MmsBackend`` runs
that same stack from the tier's own virtualenv (``mms_venv``; transformers 4.x, as in the
image), started the way the image starts it but without its ``serve`` entry point, which
writes ``/etc/sagemaker-mms.properties`` and binds 0.0.0.0: here a private run directory
holds the config (both addresses on 127.0.0.1), temp files, pid file and logs, and is removed
on ``stop``.

Differences the caller sees (the AWS image behaves the same way): every handler error is a
400 whose message wraps the original (``(413, '...')``), and the response's content type is
the request's accept. A model directory without ``code/inference.py`` gets the toolkit's
default ``pipeline`` (set ``HF_TASK``), as on AWS.

When MMS's processes die under it in a way MMS does not recover from, a watchdog restarts the
model server and ``health`` says why meanwhile (``watchdog.py``). What MMS is started with —
its properties, environment and Java — is in ``config.py``.

One class differs from the image: MMS's decoder of worker responses, which crashes the
worker on a response split across socket reads (see ``ModelResponseDecoder.java`` beside this
module); the tier's build compiles a fixed one that MMS loads first.

``python -m sagemaker_reranker.deploy.local.mms.venv`` builds the virtualenv ahead of time.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from sagemaker_reranker.deploy.local.backend import (
    PROBE,
    BackendResponse,
    Invocation,
    InvocationTimeout,
)
from sagemaker_reranker.deploy.local.mms.config import (
    HANDLER_SERVICE,
    StartFailure,
    mms_environment,
    mms_properties,
    positive_int,
    short_tmp,
    site_file,
    unavailable_reason,
)
from sagemaker_reranker.deploy.local.mms.processes import alive, descendants
from sagemaker_reranker.deploy.local.mms.venv import (
    DECODER_DIR,
    MmsVenvError,
    default_venv_dir,
    ensure_venv,
)
from sagemaker_reranker.deploy.local.mms.watchdog import Watchdog, dead_processes
from sagemaker_reranker.deploy.local.net import free_ports, port_open
from sagemaker_reranker.inference.reranker_contract import CUSTOM_ATTRIBUTES, JSON

logger = logging.getLogger(__name__)

PORTS = (20000, 32000)  # MMS refuses ports from 32767 up
MODEL_NAME = "model"  # the name the container gives its single model
START_TIMEOUT = 300.0
# What MMS itself answers before a worker has the model loaded.
NOT_READY = ("ServiceUnavailableException", "ModelNotFoundException")
WORKER_DEATHS = 3  # a worker that died this often before answering will not come up
EXCEPTION_LINE = re.compile(r" - ([A-Za-z_][\w.]*(?:Error|Exception)): (.*)$")
# Exceptions of single requests (a client's bad input), not of loading the model.
REQUEST_ERRORS = ("PredictionException", "GenericInferenceToolkitError")


class MmsBackend:
    """The model container as multi-model-server with the Hugging Face handler service.

    Implements ``Backend`` (``local/backend.py``). ``start`` is ready only after a real
    invocation of ``probe`` succeeded (MMS answers ``/ping`` before the model has loaded,
    and while a failing worker restarts). ``env`` is the model's environment (``--env``); the
    container's ``SAGEMAKER_MODEL_SERVER_WORKERS`` (default 1 here) and
    ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (60 s) apply.
    """

    def __init__(
        self,
        model_dir: Path,
        env: dict[str, str] | None = None,
        venv: Path | None = None,
        probe: bytes = PROBE,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.model_dir = Path(model_dir).absolute()
        self.env = dict(env or {})
        self.venv = Path(venv) if venv else default_venv_dir()
        self.probe = probe
        self.start_timeout = start_timeout
        self.run_dir: Path | None = None
        self.port: int | None = None
        self.management_port: int | None = None
        self.startup_seconds: float | None = None
        self._java_pid: int | None = None
        self._failure: str | None = "model server not started"
        self.workers = 1
        self.watchdog: Watchdog | None = None

    # ----------------------------------------------------------------- Backend

    def start(self) -> None:
        """Start MMS and wait for the first good invocation; record any failure."""
        started = time.perf_counter()
        try:
            reason = unavailable_reason()
            if reason:
                raise StartFailure(reason)
            venv = ensure_venv(self.venv)
            self._launch(venv)
            self._wait_ready(started + self.start_timeout)
        except (StartFailure, MmsVenvError, OSError, subprocess.SubprocessError) as error:
            self._failure = str(error)
            logger.error("multi-model-server failed to start: %s", self._failure)
            problem = self._shutdown()  # a failed model must not restart workers forever
            if problem:
                logger.error("%s", problem)
            return
        self._failure = None
        self.startup_seconds = time.perf_counter() - started
        logger.info(
            "multi-model-server on 127.0.0.1:%d answered in %.1f s", self.port, self.startup_seconds
        )
        self.watchdog = Watchdog(
            check=lambda: dead_processes(self._java_pid, self.workers), restart=self._restart
        )
        self.watchdog.start()

    def health(self) -> tuple[bool, str]:
        if self._failure is not None:
            return False, self._failure
        down = self._down()
        if down:
            return False, down
        if not alive(self._java_pid):
            return False, f"multi-model-server exited unexpectedly{self._log_reason(' (', ')')}"
        return True, "healthy"

    def invoke(self, request: Invocation, timeout: float) -> BackendResponse:
        down = self._down()
        if down:
            return BackendResponse.error(503, down)
        try:
            answer = self._post(request, timeout)
            if answer.status == 500 and b"Worker died" in answer.body and self.watchdog:
                self.watchdog.poke()  # the listener may be gone too: look now
            return answer
        except TimeoutError:
            raise InvocationTimeout(f"no answer within {timeout:g} s") from None
        except OSError as error:
            return BackendResponse.error(503, f"multi-model-server unreachable: {error}")

    def stop(self) -> None:
        """Stop MMS and its Python workers, check its ports are closed, remove the run dir."""
        if self.watchdog is not None:
            self.watchdog.stop()  # waits for a restart under way
        problem = self._shutdown_and_clean()
        if problem:
            raise RuntimeError(problem)

    # ----------------------------------------------------------------- restart

    def _down(self) -> str | None:
        """Why the model server is not serving while the watchdog restarts it, or gave up."""
        dog = self.watchdog
        if dog is None:
            return None
        if dog.gave_up:
            return dog.gave_up
        if dog.restarting:
            return f"{dog.restarting}; restarting multi-model-server"
        return None

    def _restart(self, reason: str) -> str | None:
        """Stop what is left of MMS and start it again; why that failed, or None."""
        problem = self._shutdown_and_clean()
        if problem:
            return problem
        try:
            self._launch(ensure_venv(self.venv))
            self._wait_ready(time.perf_counter() + self.start_timeout)
        except (StartFailure, MmsVenvError, OSError, subprocess.SubprocessError) as error:
            self._shutdown()
            return str(error)
        return None

    # ----------------------------------------------------------------- start

    def _launch(self, venv: Path) -> None:
        self.run_dir = run = Path(tempfile.mkdtemp(prefix="reranker-mms-", dir=short_tmp()))
        for name in ("tmp", "logs", "opt_ml"):
            (run / name).mkdir()
        # The model store holds the model under the container's name for it.
        (run / "opt_ml" / MODEL_NAME).symlink_to(self.model_dir, target_is_directory=True)
        # MMS's classpath starts with "." (its working directory, this run dir): the fixed
        # response decoder there shadows the one in its jar.
        (run / "com").symlink_to(venv / DECODER_DIR / "com", target_is_directory=True)
        self.port, self.management_port = free_ports(2, span=PORTS)
        env = self._environment(venv)
        config = run / "config.properties"
        self.workers = positive_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS")
        properties = mms_properties(
            venv, env, self.port, self.management_port, run / "opt_ml", HANDLER_SERVICE
        )
        config.write_text(properties, encoding="utf-8")
        log_config = site_file(venv, "sagemaker_inference/etc/log4j2.xml")
        command = [
            str(venv / "bin" / "multi-model-server"),
            "--start",
            "--mms-config",
            str(config),
            "--model-store",
            str(run / "opt_ml"),
            "--models",
            f"{MODEL_NAME}={MODEL_NAME}",
            "--log-config",
            str(log_config),
        ]
        with open(run / "logs" / "console.log", "wb") as console:
            # No new session: MMS stays in this process group, so a group kill reaches it.
            subprocess.run(
                command,
                cwd=run,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )
        pid_file = run / "tmp" / ".model_server.pid"
        if not pid_file.is_file():
            raise StartFailure(f"multi-model-server did not start: {self._console_tail()}")
        self._java_pid = int(pid_file.read_text(encoding="utf-8").split()[0])

    def _environment(self, venv: Path) -> dict[str, str]:
        return mms_environment(venv, self.run_dir, self.env)

    def _wait_ready(self, deadline: float) -> None:
        """Probe ``/invocations`` until it succeeds; fail on a load error or a dead server."""
        while True:
            if not alive(self._java_pid):
                raise StartFailure(
                    f"multi-model-server exited{self._log_reason(': ')}: {self._console_tail()}"
                )
            answer = self._try_probe()
            if answer is not None and answer.status == 200:
                return
            if answer is not None and not _not_ready_yet(answer):
                raise StartFailure(
                    self._log_reason("model_fn failed: ")
                    or f"a valid request failed with {answer.status}: {answer.body[:300]!r}"
                )
            deaths = self._log_text().count("Backend worker process died")
            if deaths >= WORKER_DEATHS:
                raise StartFailure(
                    f"the model's worker died {deaths} times while loading{self._log_reason(': ')}"
                )
            if time.perf_counter() > deadline:
                raise StartFailure(
                    f"no successful invocation within {self.start_timeout:g} s"
                    f"{self._log_reason(' (last error: ', ')')}"
                )
            time.sleep(0.25)

    def _try_probe(self) -> BackendResponse | None:
        """The probe's answer; None while MMS does not listen yet or takes too long."""
        try:
            return self._post(Invocation(self.probe, JSON, JSON), timeout=60)
        except OSError:
            return None

    def _post(self, request: Invocation, timeout: float) -> BackendResponse:
        """``POST /invocations``; raises ``OSError`` (``TimeoutError`` included)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", "/invocations", body=request.body, headers=request.headers())
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return BackendResponse(
            status=response.status,
            body=data,
            content_type=response.getheader("Content-Type", JSON),
            custom_attributes=response.getheader(CUSTOM_ATTRIBUTES),
        )

    # ----------------------------------------------------------------- stop

    def _shutdown_and_clean(self) -> str | None:
        """``_shutdown``, then remove the run dir."""
        problem = self._shutdown()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        return problem

    def _shutdown(self) -> str | None:
        """``multi-model-server --stop`` (same TMPDIR), then kill any worker left over;
        what is still running or listening afterwards, if anything."""
        pid, self._java_pid = self._java_pid, None
        if pid is None or self.run_dir is None:
            return None
        processes = [*descendants(pid), pid]
        venv = self.venv.absolute()
        env = {**self._environment(venv), "TEMP": str(self.run_dir / "tmp")}
        subprocess.run(
            [str(venv / "bin" / "multi-model-server"), "--stop"],
            cwd=self.run_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        for process in processes:
            if alive(process):
                try:
                    os.kill(process, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        ports = [port for port in (self.port, self.management_port) if port]
        while any(alive(p) for p in processes) or any(
            port_open("127.0.0.1", port) for port in ports
        ):
            if time.monotonic() > deadline:
                return f"multi-model-server (pid {pid}, ports {ports}) did not stop within 30 s"
            time.sleep(0.1)
        return None

    # ----------------------------------------------------------------- logs

    def _log_text(self) -> str:
        if self.run_dir is None:
            return ""
        log = self.run_dir / "logs" / "mms_log.log"
        return log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""

    def _log_reason(self, prefix: str = "", suffix: str = "") -> str:
        """The first Python exception the workers logged (``Type: message``), framed, or ''."""
        for line in self._log_text().splitlines():
            match = EXCEPTION_LINE.search(line)
            if match and not match.group(1).endswith(REQUEST_ERRORS):
                return f"{prefix}{match.group(1)}: {match.group(2).strip()}{suffix}"
        return ""

    def _console_tail(self, lines: int = 8) -> str:
        console = self.run_dir / "logs" / "console.log" if self.run_dir else None
        if console is None or not console.is_file():
            return ""
        text = console.read_text(encoding="utf-8", errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])


def _not_ready_yet(answer: BackendResponse) -> bool:
    """MMS's own answers while no worker has loaded the model (a handler error is not one)."""
    try:
        kind = json.loads(answer.body).get("type")
    except (ValueError, AttributeError):
        return False
    return kind in NOT_READY
