"""boto3 plumbing for the control plane: one session, dry-run aware calls, one-line errors, waits.

Every AWS call of the CLI goes through :class:`Aws`: ``read`` for calls that change nothing
(Describe, List, Head, STS), ``write`` for the rest. Under ``--dry-run`` a write is printed
with its parameters and never sent, which is what makes the dry run safe to trust.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from sagemaker_reranker.deploy.redaction import redact
from sagemaker_reranker.inference.reranker_contract import user_agent

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
# Stands for the account id in a plan made without credentials (see ``Aws.assume_missing``).
UNKNOWN_ACCOUNT = "<account>"


@lru_cache(maxsize=1)
def _shared_loader() -> botocore.loaders.Loader:
    """One loader per process: service models are parsed once, not once per command."""
    return botocore.loaders.create_loader()


class DeployError(Exception):
    """A control-plane problem the user can act on, reported in one line (exit code 1)."""


class InputError(DeployError):
    """A problem with what the user passed, found by the control plane: exit code 2."""

    exit_code = 2


# us-east-1, eu-central-2, us-gov-west-1, cn-northwest-1: what an ARN may hold as a region.
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


def check_region(region: str, source: str = "--region") -> str:
    if not REGION_RE.match(region):
        raise InputError(f"{source} {region!r} is not an AWS region (e.g. us-east-1)")
    return region


class Reporter:
    """How the control plane tells a person what it does; this base class stays silent.

    The command line passes one that writes to the terminal (``cli/report.py``); a program
    using the control plane as a library gets quiet calls unless it passes its own.
    """

    def note(self, message: str) -> None:
        """A notice worth a line of its own (progress, a decision taken)."""

    def planned(self, call: PlannedCall) -> None:
        """A mutating call that ``--dry-run`` skipped."""

    def status(self, label: str, status: str, elapsed: float) -> None:
        """The state of a resource being waited for, polled again."""

    def status_done(self) -> None:
        """The wait is over."""

    @contextmanager
    def progress(self, total: int, label: str) -> Iterator[Callable[[int], None]]:
        """A transfer of ``total`` bytes; yields the callback that advances it."""
        yield lambda done: None


@dataclass
class PlannedCall:
    """A mutating call that ``--dry-run`` printed instead of sending."""

    service: str
    operation: str
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """What ``--json`` shows: secret ``--env`` values redacted (``deploy/redaction.py``)."""
        shown = json.loads(json.dumps(redact(self.params), default=_shown))
        return {"service": self.service, "operation": self.operation, "params": shown}

    def describe(self) -> str:
        params = json.dumps(redact(self.params), default=_shown, sort_keys=True)
        return f"{self.service}.{self.operation} {params}"


def _shown(value: Any) -> str:
    """A parameter JSON cannot hold (a transfer config object): its type's name."""
    return type(value).__name__


@dataclass
class Aws:
    """A boto3 session for one command, with the dry-run switch and the calls it skipped."""

    region_option: str | None = None
    profile: str | None = None
    dry_run: bool = False
    planned: list[PlannedCall] = field(default_factory=list)
    reporter: Reporter = field(default_factory=lambda: Reporter())
    assume_missing: bool = False
    """A dry run without credentials: every lookup answers "not there", the account is unknown."""
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
            raise InputError(
                "no AWS region: pass --region, set AWS_REGION, or set one in your profile"
            )
        return check_region(region, "the region" if self.region_option is None else "--region")

    @cached_property
    def account(self) -> str:
        if self.assume_missing:
            return UNKNOWN_ACCOUNT
        return self.read("sts", "get_caller_identity")["Account"]

    def has_credentials(self) -> bool:
        """Whether boto3 finds credentials (environment, profile, SSO, instance role, ...)."""
        return self.session.get_credentials() is not None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            config = Config(
                retries={"mode": "adaptive", "max_attempts": 8}, user_agent_extra=user_agent()
            )
            # AWS_ENDPOINT_URL (e.g. a local moto server) is honoured by boto3 itself.
            self._clients[service] = self.session.client(
                service, region_name=self.region, config=config
            )
        return self._clients[service]

    def read(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """A call that changes nothing: always sent, also under ``--dry-run``."""
        if self.assume_missing:
            raise DeployError(
                f"planning this needs read access to AWS ({service} {operation}); configure "
                "credentials or pass --profile"
            )
        return getattr(self.client(service), operation)(**params)

    def write(self, service: str, operation: str, **params: Any) -> dict[str, Any] | None:
        """A mutating call: sent, or under ``--dry-run`` printed and skipped (returns None)."""
        if self.dry_run:
            shown = {key: value for key, value in params.items() if not callable(value)}
            call = PlannedCall(service, operation, shown)
            self.planned.append(call)
            self.reporter.planned(call)
            return None
        return getattr(self.client(service), operation)(**params)

    def find(self, service: str, operation: str, **params: Any) -> dict[str, Any] | None:
        """A Describe/Head call that returns None when the resource does not exist."""
        if self.assume_missing:
            return None
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
    """``<code>: <message>`` as the service reported it, on one line.

    Two service answers would not fit one: a validation error listing every allowed value
    (CreateEndpointConfig lists ~70 instance types) keeps its first few, and an HTML error
    page (a proxy's or a server's 500) is reduced to its title.
    """
    detail = error.response.get("Error", {})
    message = str(detail.get("Message", str(error)))
    title = HTML_TITLE.search(message)
    if message.lstrip().startswith("<"):
        message = f"the service answered with an HTML page: {title.group(1) if title else '?'}"
    message = LONG_LIST.sub(_shorten_list, " ".join(message.split()))
    return f"{detail.get('Code', 'Error')}: {message}"


HTML_TITLE = re.compile(r"<title>\s*([^<]{1,200}?)\s*</title>", re.IGNORECASE)
LONG_LIST = re.compile(r"\[([^\[\]]{200,})\]")


def _shorten_list(match: re.Match[str]) -> str:
    items = [item.strip() for item in match.group(1).split(",")]
    if len(items) <= 6:
        return match.group(0)
    return f"[{', '.join(items[:5])}, ... {len(items) - 5} more]"


def wait_until_settled(
    describe: Callable[[], dict[str, Any]],
    status_key: str,
    label: str,
    timeout: float,
    resume_hint: str,
    reporter: Reporter,
) -> dict[str, Any]:
    """Poll ``describe`` until its status leaves the pending states; return the last answer.

    A timeout leaves the resource as it is: re-running the same command resumes the wait.
    """
    start = time.monotonic()
    try:
        while True:
            answer = describe()
            status = str(answer.get(status_key, "?"))
            elapsed = time.monotonic() - start
            reporter.status(label, status, elapsed)
            if status not in PENDING:
                return answer
            if elapsed >= timeout:
                raise DeployError(
                    f"{label} is still {status} after {timeout:.0f}s; it keeps going on AWS — "
                    f"{resume_hint}"
                )
            time.sleep(POLL_SECONDS)
    finally:
        reporter.status_done()
