"""Local mode server: the SageMaker container contract and runtime API in front of a backend.

The server runs as its own process (``python -m sagemaker_reranker.deploy.local.server``),
started by ``LocalEndpoint`` or ``sagemaker-reranker serve`` with ``PYTHONPATH=<model>/code``:
the handler is the top-level module ``inference`` from ``code/``, as SageMaker imports it.
What it runs with is one ``LocalSettings``, handed over as JSON in ``--settings``.

It answers ``GET /ping``, ``POST /invocations`` (the container contract) and
``POST /endpoints/{name}/invocations`` (the ``sagemaker-runtime`` API, so boto3 with
``endpoint_url`` works unchanged); what each answers, errors included, is the table in
docs/local-mode.md and the code in ``routes.py``. Bodies over ``max_body_bytes`` are refused
before the handler sees them; an invocation past ``invocation_timeout`` is reported as the
runtime reports it while the worker finishes in the background. Each request must arrive
whole within ``request_timeout`` (408 otherwise); connections beyond ``max_connections`` get
a 503 and are closed without a thread of their own (``request_reading.py``: how requests are
read and checked).

The model behind it is a backend (``local/backend.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import traceback
from dataclasses import asdict, dataclass
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

from sagemaker_reranker.deploy.local.backend import Backend, make_backend, server_kind
from sagemaker_reranker.deploy.local.components import ComponentSettings, Hosted
from sagemaker_reranker.deploy.local.net import bind_warning
from sagemaker_reranker.deploy.local.request_reading import escape
from sagemaker_reranker.deploy.local.routes import RequestHandler
from sagemaker_reranker.deploy.settings import ENV_NAME
from sagemaker_reranker.inference.reranker_contract import INVOCATION_TIMEOUT, MAX_BODY_BYTES

logger = logging.getLogger("sagemaker_reranker.local")
# In the run dir: why the process exited before listening, for the parent's error line.
EARLY_EXIT = "early-exit"
REQUEST_TIMEOUT = 60.0
MAX_CONNECTIONS = 64
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: 47\r\nConnection: close\r\n\r\n"
    b'{"message": "too many connections; try again"}\n'
)


@dataclass(frozen=True)
class LocalSettings:
    """Everything a local endpoint runs with, from the CLI (or ``LocalEndpoint``) to the
    server process in one piece: serialised once (``to_json``), read back once (``from_json``).

    The front's part: the endpoint's name and address, AWS's per-call limits, how long a
    request may take to arrive and how many connections may be open at once. The model
    container's part: which backend (``server``, an alias resolved), the extracted model
    (``model_dir``, set once it is prepared) and the names of the ``--env`` settings, whose
    values travel only in the environment (argv is visible in ``ps``).
    """

    endpoint_name: str = "local-reranker"
    host: str = "127.0.0.1"
    port: int = 0
    invocation_timeout: float = INVOCATION_TIMEOUT
    max_body_bytes: int = MAX_BODY_BYTES
    request_timeout: float = REQUEST_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    server: str = "worker"
    model_dir: str = ""
    env_names: tuple[str, ...] = ()
    components: tuple[ComponentSettings, ...] = ()
    scale_to_zero_after: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", server_kind(self.server))
        object.__setattr__(self, "env_names", tuple(self.env_names))
        components = tuple(
            c if isinstance(c, ComponentSettings) else ComponentSettings(**c)
            for c in self.components
        )
        object.__setattr__(self, "components", components)
        names = [c.name for c in components]
        if len(set(names)) < len(names):
            raise ValueError(f"component names repeat: {', '.join(sorted(names))}")
        if self.scale_to_zero_after and not components:
            raise ValueError("only inference components scale to zero: name components")
        bad = [name for name in self.env_names if not ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"{escape(bad[0])} is not an environment variable name")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LocalSettings:
        return cls(**json.loads(text))


class LocalServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the model containers (``hosts``) and their load state:
    ``backend`` for a plain endpoint, or ``components`` by name."""

    daemon_threads = True
    request_queue_size = 128  # the stdlib's 5 resets connections under a burst of clients

    def __init__(
        self,
        backend: Backend | None,
        config: LocalSettings,
        components: dict[str, Hosted] | None = None,
    ) -> None:
        super().__init__((config.host, config.port), RequestHandler)
        self.components = components or {}
        self.hosts = dict(self.components) if self.components else {"": Hosted(backend)}
        self.config = config
        self._slots = threading.BoundedSemaphore(config.max_connections)

    def load(self) -> None:
        """Load every model, each in its own thread, and return once all have loaded."""
        threads = [
            threading.Thread(target=host.load, args=(label(name),), name=f"load-{name}")
            for name, host in self.hosts.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def state(self) -> tuple[str, str]:
        """``("loading" | "healthy" | "failed", reason)`` of the endpoint: failed when any
        model failed, loading while any loads; a component scaled to zero is in service."""
        states = {name: host.state() for name, host in self.hosts.items()}
        for wanted in ("failed", "loading"):
            for name, (state, reason) in states.items():
                if state == wanted:
                    return state, f"component {name}: {reason}" if name else reason
        return "healthy", "healthy"

    def scale_in_idle(self, stop: threading.Event) -> None:
        """Scale idle components to zero until ``stop`` (a thread, with scale_to_zero_after)."""
        after = self.config.scale_to_zero_after
        while not stop.wait(min(1.0, after / 4)):
            for name, host in self.components.items():
                host.scale_in_if_idle(after, label(name))

    def process_request(self, request: socket.socket, client_address) -> None:
        """A thread per connection up to ``max_connections``; beyond, a 503 from this thread."""
        if not self._slots.acquire(blocking=False):
            _turn_away(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        """One line, not the stdlib's traceback on stderr (a client that went away is routine)."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("connection ended: %s", type(error).__name__)
            return
        logger.error("connection failed: %s", type(error).__name__)
        logger.debug("%s", traceback.format_exc())


def label(name: str) -> str:
    """How the log names a model container."""
    return f"component {name}" if name else "model"


def _turn_away(request: socket.socket) -> None:
    """Answer 503 without reading the request; a client already gone is no error."""
    try:
        request.settimeout(1.0)
        request.sendall(BUSY)
        request.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    logger.warning("503 connection refused: %s", "too many connections")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Local SageMaker endpoint process.")
    parser.add_argument("--settings", required=True, help="LocalSettings as JSON")
    parser.add_argument("--ready-file", type=Path, help="write the bound port here when ready")
    parser.add_argument("--parent-pid", type=int, help="exit when this process goes away")
    parser.add_argument("--run-dir", type=Path, help="private dir to remove if orphaned")
    return parser.parse_args(argv)


def _containers(
    config: LocalSettings, env: dict[str, str]
) -> tuple[Backend | None, dict[str, Hosted] | None]:
    """The plain endpoint's backend, or one host per component, each with its archive's
    environment under the user's ``--env`` (which wins, as in ``serve``)."""
    if not config.components:
        return make_backend(config.server, Path(config.model_dir), env), None
    hosts = {}
    for component in config.components:
        make = partial(
            make_backend, config.server, Path(component.model_dir), {**component.env, **env}
        )
        hosts[component.name] = Hosted(make(), make if config.scale_to_zero_after else None)
    return None, hosts


def main(argv: list[str] | None = None) -> int:
    """Bind, load the model in the background, serve until SIGTERM/SIGINT or parent exit."""
    args = _arguments(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = LocalSettings.from_json(args.settings)
    except (ValueError, TypeError) as error:  # TypeError: a key LocalSettings does not have
        logger.error("--settings: %s", escape(str(error)))
        return 2
    env = {name: os.environ.get(name, "") for name in config.env_names}
    warning = bind_warning(config.host)
    if warning:
        logger.warning("%s", warning)
    try:
        backend, components = _containers(config, env)
        server = LocalServer(backend, config, components)
    except OSError as error:
        reason = f"cannot listen on {config.host}:{config.port}: {error.strerror or error}"
        logger.error("%s", escape(reason))
        if args.run_dir:  # the parent streams this log and cannot read it back: its cause
            (args.run_dir / EARLY_EXIT).write_text(escape(reason), encoding="utf-8")
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    port = server.server_address[1]
    # Debug: the parent prints where it serves once the model answers (a quiet start).
    logger.debug("listening on http://%s:%d (endpoint %s)", config.host, port, config.endpoint_name)
    if args.ready_file:
        partial = args.ready_file.with_suffix(".partial")
        partial.write_text(str(port), encoding="utf-8")
        partial.replace(args.ready_file)
    threading.Thread(target=server.load, name="load", daemon=True).start()
    if config.scale_to_zero_after:
        threading.Thread(target=server.scale_in_idle, args=(stop,), daemon=True).start()
    orphaned = False
    while not stop.wait(0.5):
        if args.parent_pid and os.getppid() != args.parent_pid:
            logger.warning("parent process %d exited; shutting down", args.parent_pid)
            orphaned = True
            break
    logger.info("shutting down")
    server.shutdown()
    server.server_close()
    for host in server.hosts.values():
        host.stop()
    if orphaned and args.run_dir:
        shutil.rmtree(args.run_dir, ignore_errors=True)  # the killed parent cannot
    return 0


if __name__ == "__main__":
    sys.exit(main())
