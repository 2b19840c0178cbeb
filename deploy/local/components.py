"""Inference components in local mode: several model containers behind one endpoint.

An endpoint that hosts components routes each call by the ``X-Amzn-SageMaker-Inference-Component``
header to that component's container; each runs in its own worker process here, as each
component's copies run in their own containers on AWS. With ``scale_to_zero_after``, a
component idle that long loses its worker, and calls meanwhile get the runtime's no-capacity
answer while a new worker starts: what a component scaled to zero answers on AWS for the
minutes an instance takes.

The runtime's words, as users of the real API have quoted them:

- no header: the ``ValidationError`` quoted in issue 21 and by stdapi-ai/stdapi.ai #43
  (the same text the AWS test shims answer, ``tests/moto_shims.py``);
- no capacity: the ``ValidationError`` (HTTP 400) that AWS's blog post on scaling down to
  zero ("Unlock cost savings with the new scale down to zero feature in SageMaker
  Inference") shows, quoted verbatim in translations of that post on GitHub.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sagemaker_reranker.deploy.local.backend import Backend, BackendResponse, Invocation

logger = logging.getLogger("sagemaker_reranker.local")

COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
# CreateInferenceComponent's pattern for InferenceComponentName (at most 63 characters).
COMPONENT_NAME = re.compile(r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?$")
NO_HEADER = (
    "Inference Component Name header is required for endpoints to which you plan to deploy "
    "inference components. Please include Inference Component Name header or consider using "
    "SageMaker models."
)


def unknown_component(name: str) -> str:
    return f"Inference component {name} not found."


def check_component_name(name: str) -> str:
    """``name`` if SageMaker would accept it as an inference component's name."""
    if len(name) > 63 or not COMPONENT_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a valid inference component name (letters, digits and inner "
            "hyphens, at most 63 characters)"
        )
    return name


@dataclass(frozen=True)
class ComponentSettings:
    """One component of a local endpoint: its name, its extracted model and the environment
    its archive implies (the hub model to download when the weights are not baked in)."""

    name: str
    model_dir: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_component_name(self.name)


class Hosted:
    """One model container the front routes to: its backend, whether it has loaded, and,
    for a component that scales to zero, its idle clock.

    ``make`` builds a fresh backend: a backend is not restarted after ``stop``, so a
    component coming back from zero gets a new one. Without ``make`` it never scales in.
    """

    def __init__(self, backend: Backend, make: Callable[[], Backend] | None = None) -> None:
        self.backend = backend
        self._make = make
        self.loaded = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_used = time.monotonic()
        self.cold = False  # scaled to zero, or on its way back from zero
        self._waking = False
        self._stopped = False

    def load(self, label: str = "model") -> None:
        """Load the model (in the background, so /ping can say 'loading' meanwhile)."""
        started = time.perf_counter()
        self.backend.start()
        self._last_used = time.monotonic()  # idle from when it can serve, not from its start
        self.loaded.set()
        ok, reason = self.backend.health()
        seconds = time.perf_counter() - started
        if ok:
            logger.info("%s loaded in %.1f s; ready", label, seconds)
        else:
            logger.error("%s failed to load after %.1f s: %s", label, seconds, reason)

    def state(self) -> tuple[str, str]:
        """``("loading" | "healthy" | "failed" | "cold", reason)``."""
        if self.cold:
            return "cold", "scaled to zero: no worker until a call arrives"
        if not self.loaded.is_set():
            return "loading", "model is loading"
        ok, reason = self.backend.health()
        return ("healthy", reason) if ok else ("failed", reason)

    def invoke(self, request: Invocation, timeout: float) -> BackendResponse | None:
        """The container's answer; None when it has no worker (scaled to zero)."""
        with self._lock:
            if self.cold:
                return None
            self._in_flight += 1
            backend = self.backend
        try:
            return backend.invoke(request, timeout)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last_used = time.monotonic()

    def scale_in_if_idle(self, idle_after: float, label: str) -> None:
        """Stop the worker of a loaded, healthy component no call used for ``idle_after`` s."""
        with self._lock:
            idle = time.monotonic() - self._last_used
            if self._make is None or self.cold or self._in_flight or idle < idle_after:
                return
            if self.state()[0] != "healthy":
                return
            self.cold = True
            backend = self.backend
        logger.info("%s idle for %.0f s: scaling to zero (its worker stops)", label, idle)
        backend.stop()

    def wake(self, label: str) -> None:
        """Start a new worker for a cold component, once, in the background."""
        with self._lock:
            if not self.cold or self._waking or self._make is None:
                return
            self._waking = True
        logger.info("%s: a call arrived while scaled to zero; starting a worker", label)
        threading.Thread(target=self._come_back, args=(label,), name="wake", daemon=True).start()

    def _come_back(self, label: str) -> None:
        fresh = self._make()
        started = time.perf_counter()
        fresh.start()
        with self._lock:
            if self._stopped:  # the server stopped while this worker loaded
                fresh.stop()
                return
            self.backend = fresh
            self.cold = self._waking = False
            self._last_used = time.monotonic()
        ok, reason = fresh.health()
        seconds = time.perf_counter() - started
        if ok:
            logger.info("%s back from zero in %.1f s", label, seconds)
        else:
            logger.error("%s failed to load coming back from zero: %s", label, reason)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            backend = self.backend
        backend.stop()  # a second stop of a scaled-in backend does nothing
