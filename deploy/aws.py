"""boto3 plumbing for the control plane: one session, dry-run aware calls, one-line errors, waits.

Every AWS call of the CLI goes through :class:`Aws`: ``read`` for calls that change nothing
(Describe, List, Head, STS), ``write`` for the rest. Under ``--dry-run`` a write is printed
with its parameters and never sent, which is what makes the dry run safe to trust.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

# How often a wait polls Describe*; SageMaker changes state in minutes, not seconds.
POLL_SECONDS = 15.0
PENDING = {
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "Deleting",
    "InProgress",
    "Stopping",
}
NOT_FOUND_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound", "ResourceNotFound"}


@lru_cache(maxsize=1)
def _shared_loader() -> botocore.loaders.Loader:
    """One loader per process: service models are parsed once, not once per command."""
    return botocore.loaders.create_loader()


class DeployError(Exception):
    """A control-plane problem the user can act on, reported in one line."""


@dataclass
class PlannedCall:
    """A mutating call that ``--dry-run`` printed instead of sending."""

    service: str
    operation: str
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "operation": self.operation, "params": self.params}

    def describe(self) -> str:
        params = json.dumps(self.params, default=str, sort_keys=True)
        return f"{self.service}.{self.operation} {params}"


def note(message: str) -> None:
    """Progress and notices go to stderr so stdout stays parseable (``--json``)."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Aws:
    """A boto3 session for one command, with the dry-run switch and the calls it skipped."""

    region_option: str | None = None
    profile: str | None = None
    dry_run: bool = False
    planned: list[PlannedCall] = field(default_factory=list)
    echo: Callable[[str], None] = print
    _clients: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def session(self) -> boto3.Session:
        # botocore reads AWS_DEFAULT_REGION and the profile; AWS_REGION is honoured here too.
        region = self.region_option or os.environ.get("AWS_REGION") or None
        core = botocore.session.get_session()
        core.register_component("data_loader", _shared_loader())
        return boto3.Session(botocore_session=core, profile_name=self.profile, region_name=region)

    @cached_property
    def region(self) -> str:
        region = self.session.region_name
        if not region:
            raise DeployError(
                "no AWS region: pass --region, set AWS_REGION, or set one in your profile"
            )
        return region

    @cached_property
    def account(self) -> str:
        return self.read("sts", "get_caller_identity")["Account"]

    def client(self, service: str) -> Any:
        if service not in self._clients:
            config = Config(retries={"mode": "adaptive", "max_attempts": 8})
            # AWS_ENDPOINT_URL (e.g. a local moto server) is honoured by boto3 itself.
            self._clients[service] = self.session.client(
                service, region_name=self.region, config=config
            )
        return self._clients[service]

    def read(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """A call that changes nothing: always sent, also under ``--dry-run``."""
        return getattr(self.client(service), operation)(**params)

    def write(self, service: str, operation: str, **params: Any) -> dict[str, Any] | None:
        """A mutating call: sent, or under ``--dry-run`` printed and skipped (returns None)."""
        if self.dry_run:
            shown = {key: value for key, value in params.items() if not callable(value)}
            call = PlannedCall(service, operation, shown)
            self.planned.append(call)
            self.echo(f"[dry-run] would call {call.describe()}")
            return None
        return getattr(self.client(service), operation)(**params)

    def find(self, service: str, operation: str, **params: Any) -> dict[str, Any] | None:
        """A Describe/Head call that returns None when the resource does not exist."""
        try:
            return self.read(service, operation, **params)
        except ClientError as error:
            if is_not_found(error):
                return None
            raise


def is_not_found(error: ClientError) -> bool:
    """SageMaker says "Could not find" in a ValidationException; S3 says 404."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    message = str(error.response.get("Error", {}).get("Message", ""))
    return code in NOT_FOUND_CODES or (
        code == "ValidationException" and message.startswith("Could not find")
    )


def error_line(error: ClientError) -> str:
    """``<code>: <message>`` as the service reported it."""
    detail = error.response.get("Error", {})
    return f"{detail.get('Code', 'Error')}: {detail.get('Message', str(error))}"


class StatusLine:
    """A live ``name: status (elapsed)`` line: redrawn on a terminal, else one line per change."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = ""
        self.last_status = ""

    def show(self, status: str, elapsed: float) -> None:
        line = f"{self.label}: {status} ({elapsed:.0f}s)"
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last)))
        elif status != self.last_status:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last, self.last_status = line, status

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


def wait_until_settled(
    describe: Callable[[], dict[str, Any]],
    status_key: str,
    label: str,
    timeout: float,
    resume_hint: str,
) -> dict[str, Any]:
    """Poll ``describe`` until its status leaves the pending states; return the last answer.

    A timeout leaves the resource as it is: re-running the same command resumes the wait.
    """
    line = StatusLine(label)
    start = time.monotonic()
    try:
        while True:
            answer = describe()
            status = str(answer.get(status_key, "?"))
            elapsed = time.monotonic() - start
            line.show(status, elapsed)
            if status not in PENDING:
                return answer
            if elapsed >= timeout:
                raise DeployError(
                    f"{label} is still {status} after {timeout:.0f}s; it keeps going on AWS — "
                    f"{resume_hint}"
                )
            time.sleep(POLL_SECONDS)
    finally:
        line.close()
