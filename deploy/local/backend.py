"""The model-container side of local mode: what a backend is, and how to make one.

A backend loads ``code/inference.py`` and answers invocations as a SageMaker model container
does. ``worker`` (``local/worker.py``) runs it through ``sagemaker_inference``'s real handler
service in a worker process the server supervises; ``mms`` (``local/mms/backend.py``) runs it
under multi-model-server with the Hugging Face container's serving toolkit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sagemaker_reranker.inference.reranker_contract import CUSTOM_ATTRIBUTES, JSON

SERVERS = ("worker", "mms")
# Earlier names, still accepted wherever a user names a server.
SERVER_ALIASES = {"inprocess": "worker"}
# A valid invocation: what a backend (and LocalEndpoint) send to know the model answers.
PROBE = json.dumps({"pairs": [["local endpoint probe", "readiness check"]]}).encode("utf-8")


def server_kind(name: str) -> str:
    """The backend ``name`` stands for (one of ``SERVERS``, aliases resolved)."""
    kind = SERVER_ALIASES.get(name, name)
    if kind not in SERVERS:
        raise ValueError(f"unknown server {name!r}; choose one of {SERVERS}")
    return kind


@dataclass(frozen=True)
class BackendResponse:
    """What the model container answered to one invocation; ``message`` is, for an error,
    what it said in words (the access log's reason), so nothing parses the body for it."""

    status: int
    body: bytes
    content_type: str
    custom_attributes: str | None = None
    message: str | None = None

    @classmethod
    def error(cls, status: int, message: str) -> BackendResponse:
        """An error the backend itself answers, in the container's ``{"message"}`` shape."""
        body = json.dumps({"message": message}).encode("utf-8")
        return cls(status, body, JSON, message=message)


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
    """The backend ``kind`` (see ``server_kind``) serving the extracted model in ``model_dir``.

    ``env`` is the model container's environment (the user's ``--env`` settings, and a
    component's archive settings) for the process that runs the handler. One backend is one
    model container: an endpoint with inference components has one per component.
    """
    kind = server_kind(kind)
    if kind == "worker":
        from sagemaker_reranker.deploy.local.worker import WorkerBackend

        return WorkerBackend(model_dir, env)
    from sagemaker_reranker.deploy.local.mms.backend import MmsBackend  # needs Java

    return MmsBackend(model_dir=model_dir, env=env)
