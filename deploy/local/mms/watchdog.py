"""Keeps the model-server tier serving when its processes die under it.

Multi-model-server runs each worker as a Python listener process that forks the process
that loads the model and answers. When only the forked process dies (``os._exit`` in the
handler, the kernel's OOM killer), MMS answers the request in flight with a 500 and connects
again; the listener forks a new one and the model loads anew. When the listener itself dies
(a SIGKILL of the worker's processes), MMS only retries the connection, with growing
back-off, forever: every later request waits until the invocation timeout while MMS still
answers ``/ping``. The same holds when MMS's Java process dies. The watchdog notices either
within ``interval`` seconds and restarts the whole model server; meanwhile the backend
reports itself unhealthy with the reason, so requests are refused at once instead of hanging.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from sagemaker_reranker.deploy.local.mms.processes import alive, processes

logger = logging.getLogger(__name__)

WORKER_SCRIPT = b"model_service_worker"
MAX_RESTARTS = 3  # within RESTART_WINDOW seconds; beyond, the tier stays down and says why
RESTART_WINDOW = 600.0


def listeners(java_pid: int) -> list[int]:
    """MMS's worker listener processes: the Python children of its Java process."""
    found = []
    for pid, state, parent in processes():
        if parent != java_pid or state == "Z":
            continue
        try:
            if WORKER_SCRIPT in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


class Watchdog:
    """A thread that checks the model server's processes and restarts it when they died.

    ``check`` returns why the server cannot recover by itself (None while it can);
    ``restart`` brings it up again and returns why it failed (None on success).
    """

    def __init__(
        self,
        check: Callable[[], str | None],
        restart: Callable[[str], str | None],
        interval: float = 0.5,
    ) -> None:
        self._check = check
        self._restart = restart
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._restarts: deque[float] = deque()
        self._thread: threading.Thread | None = None
        self.restarting: str | None = None
        """Why the model server is being restarted right now (None: it is not)."""
        self.gave_up: str | None = None
        self.restarts = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mms-watchdog", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Check now (a request just saw a worker die)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=120)

    def _run(self) -> None:
        seen = 0
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            reason = self._check()
            # Twice in a row, not on one reading of /proc that may catch the tree mid-change.
            seen = seen + 1 if reason else 0
            if reason is None or seen < 2:
                continue
            seen = 0
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
                self._restarts.popleft()
            if len(self._restarts) >= MAX_RESTARTS:
                self.gave_up = (
                    f"{reason}; not restarting: it went down {MAX_RESTARTS + 1} times within "
                    f"{RESTART_WINDOW / 60:g} minutes"
                )
                logger.error("%s", self.gave_up)
                return
            self._restarts.append(now)
            self.restarting = reason
            logger.warning("%s: restarting multi-model-server", reason)
            failure = self._restart(reason)
            self.restarting = None
            if failure:
                self.gave_up = f"{reason}; the restart failed: {failure}"
                logger.error("%s", self.gave_up)
                return
            self.restarts += 1
            logger.info("multi-model-server restarted (%d restart(s) so far)", self.restarts)


def dead_processes(java_pid: int | None, workers: int) -> str | None:
    """Why MMS cannot recover on its own: its Java process or a worker listener is gone."""
    if not alive(java_pid):
        return "multi-model-server's Java process exited"
    running = len(listeners(java_pid))
    if running < workers:
        return (
            f"{workers - running} of {workers} model-server worker process(es) died and "
            "multi-model-server does not start them again"
        )
    return None
