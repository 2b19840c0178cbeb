"""Riding through an inference component's scale from zero.

A component scaled to zero copies has no container to answer: until Application Auto Scaling
starts one (minutes: an instance, then the model), the runtime refuses every call with a
``ValidationError`` saying it has no capacity. Those refusals are what the
``NoCapacityInvocationFailures`` alarm counts to start a copy, so the client keeps calling,
less and less often, for at most its ``scale_from_zero_timeout``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from sagemaker_reranker.client.errors import RerankerEndpointError

logger = logging.getLogger("sagemaker_reranker.client.cross_encoder")
# Seconds between tries: the first soon (the copy may be almost up), then at most every 5 s.
FIRST_POLL, MAX_POLL = 1.0, 5.0


class ScaleFromZero:
    """One model's waits for components scaling from zero: one log line per cold start,
    however many requests wait through it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting = False

    def waiter(self, timeout: float, invoke_kwargs: dict) -> ColdWait:
        """The wait of one request, should its component turn out to be cold."""
        component = invoke_kwargs.get("InferenceComponentName")
        return ColdWait(self, timeout, f"inference component {component!r}")

    def first(self) -> bool:
        """Whether this is the first request to wait since a call last got through."""
        with self._lock:
            first, self._waiting = not self._waiting, True
        return first

    def served(self) -> None:
        """A call got through: the next cold start logs again."""
        self._waiting = False


class ColdWait:
    """How long one request has waited for a copy, and how long it sleeps next."""

    def __init__(self, shared: ScaleFromZero, timeout: float, where: str) -> None:
        self.shared, self.timeout, self.where = shared, timeout, where
        self.since: float | None = None
        self.tries = 0

    def pause(self, error: RerankerEndpointError) -> float:
        """Seconds to sleep before trying again after a no-capacity refusal; past the
        timeout, the refusal itself, saying what it means and how long it waited."""
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        self.tries += 1
        waited = now - self.since
        if waited >= self.timeout:
            raise replace(
                error,
                message=f"{self.where} is scaling from zero and still had no capacity after "
                f"waiting {waited:.0f} s (scale_from_zero_timeout={self.timeout:g} s); the "
                f"runtime said: {error.message}",
            ) from error
        if self.shared.first():
            logger.warning(
                "%s is scaling from zero (no capacity yet); waiting up to %g s for a copy",
                self.where,
                self.timeout,
            )
        return min(FIRST_POLL * 2 ** (self.tries - 1), MAX_POLL, self.timeout - waited)
