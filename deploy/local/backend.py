"""The model-container side of local mode: what a backend is, and how to make one.

A backend loads ``code/inference.py`` and answers invocations as a SageMaker model container
does. ``inprocess`` (``local/inprocess.py``) runs it through ``sagemaker_inference``'s real
handler service in the server's process; ``mms`` (``local/mms/backend.py``) runs it under
multi-model-server with the Hugging Face container's serving toolkit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sagemaker_reranker.inference.reranker_contract import CUSTOM_ATTRIBUTES

SERVERS = ("inprocess", "mms")


@dataclass(frozen=True)
class BackendResponse:
    """What the model container answered to one invocation."""

    status: int
    body: bytes
    content_type: str
    custom_attributes: str | None = None


@dataclass(frozen=True)
class Invocation:
    """One invocation as the runtime front received it: the body and the headers it passes on."""

    body: bytes
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None

    def headers(self) -> dict[str, str]:
        """The request headers a model container sees (unset ones left out)."""
        headers = {
            "Content-Type": self.content_type,
            "Accept": self.accept,
            CUSTOM_ATTRIBUTES: self.custom_attributes,
        }
        return {key: value for key, value in headers.items() if value is not None}


class InvocationTimeout(Exception):
    """The backend did not answer within the invocation timeout (the work may still run)."""


class Backend(Protocol):
    """A model container behind the local runtime front.

    ``start`` loads the model and never raises: a failure is recorded and reported by
    ``health`` as ``(False, reason)``. ``invoke`` is called from many threads at once and
    returns the container's answer, handler errors included, or raises ``InvocationTimeout``
    after ``timeout`` seconds. ``stop`` releases everything ``start`` acquired.
    """

    def start(self) -> None: ...

    def health(self) -> tuple[bool, str]: ...

    def invoke(self, request: Invocation, timeout: float) -> BackendResponse: ...

    def stop(self) -> None: ...


def make_backend(kind: str, model_dir: Path, env: dict[str, str]) -> Backend:
    """The backend ``kind`` (one of ``SERVERS``) serving the extracted model in ``model_dir``.

    ``env`` holds the user's ``--env`` settings (already in this process's environment) for
    backends that start the handler in another process.
    """
    if kind == "inprocess":
        from sagemaker_reranker.deploy.local.inprocess import InProcessBackend

        return InProcessBackend(model_dir)
    if kind == "mms":
        from sagemaker_reranker.deploy.local.mms.backend import MmsBackend  # needs Java

        return MmsBackend(model_dir=model_dir, env=env)
    raise ValueError(f"unknown server {kind!r}; choose one of {SERVERS}")
