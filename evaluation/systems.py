"""Where a reranker's scores come from, always through ``SagemakerEndpointCrossEncoder``.

``endpoint``: a SageMaker endpoint on AWS (region and profile as boto3 finds them).
``endpoint-url``: any server speaking the runtime API (``sagemaker-reranker serve``, another
tool's); a loopback URL needs no AWS account. ``model-data``: a ``model.tar.gz`` served by
local mode for the duration of the run, then stopped.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from sagemaker_reranker.evaluation.errors import EvalInputError, EvalRunError

# What ``SystemSpec.kind`` can be; the command line has one option per kind.
SYSTEM_KINDS = ("endpoint", "endpoint-url", "model-data")
LOCAL_ENDPOINT_NAME = "local-reranker"


@dataclass(frozen=True)
class SystemSpec:
    """One reranker to evaluate; ``label`` names it in tables, files and the plot."""

    kind: str
    target: str
    label: str
    endpoint_name: str = LOCAL_ENDPOINT_NAME
    price_per_hour: float | None = None
    instances: int = 1
    component: str | None = None
    """The inference component to call, on an endpoint that hosts components."""

    @property
    def key(self) -> str:
        """What makes stored scores reusable: the same system, the same model bytes."""
        if self.kind == "model-data":
            return f"model-data:{archive_identity(Path(self.target))}"
        component = f":{self.component}" if self.component else ""
        if self.kind == "endpoint-url":
            return f"endpoint-url:{self.target}:{self.endpoint_name}{component}"
        return f"endpoint:{self.target}{component}"

    @property
    def slug(self) -> str:
        """A file-name-safe form of the label (TREC tags and file names)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.label).strip("-") or "system"


@dataclass(frozen=True)
class ClientSettings:
    region: str | None = None
    profile: str | None = None
    server: str = "worker"
    max_concurrency: int = 4
    instruction: str | None = None


def archive_identity(path: Path) -> str:
    """Our archives: the hash of their manifest, which lists every file's sha256 (a copy or a
    re-packaging of the same model is the same); others: path, size and modification time."""
    from sagemaker_reranker.deploy.packaging.manifest import PackageError, read_manifest

    try:
        manifest = read_manifest(path)
    except (OSError, tarfile.TarError, PackageError):
        manifest = None
    if manifest is not None:
        return "manifest:" + hashlib.sha256(manifest.to_json()).hexdigest()
    stat = path.stat()
    return f"file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def default_label(kind: str, target: str, endpoint_name: str = LOCAL_ENDPOINT_NAME) -> str:
    """The model's source for an archive we packaged, else the endpoint or file name."""
    if kind == "model-data":
        from sagemaker_reranker.deploy.packaging.manifest import PackageError, read_manifest

        try:
            manifest = read_manifest(Path(target))
        except (OSError, tarfile.TarError, PackageError):  # check_spec reports it
            manifest = None
        if manifest is not None:
            return manifest.source.removeprefix("dir:")
        return Path(target).name.removesuffix(".tar.gz")
    if kind == "endpoint-url":
        parsed = urlparse(target)
        return f"{endpoint_name}@{parsed.netloc}"
    return target


def check_spec(spec: SystemSpec, settings: ClientSettings) -> None:
    """Input problems found before anything starts: a missing or unreadable archive, a URL
    without a scheme or host, a client setting the client refuses (no region, plain http to
    another machine)."""
    if spec.kind == "model-data":
        path = Path(spec.target)
        if not path.is_file():
            raise EvalInputError(f"--model-data {path}: no such file")
        try:
            with tarfile.open(path, "r:gz") as tar:
                tar.next()
        except (OSError, tarfile.TarError, EOFError):
            raise EvalInputError(f"--model-data {path}: not a gzip tar archive") from None
    elif spec.kind == "endpoint-url":
        parsed = urlparse(spec.target)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise EvalInputError(
                f"--endpoint-url {spec.target}: expected http://HOST:PORT or https://HOST"
            )
        make_client(spec.endpoint_name, settings, url=spec.target, component=spec.component).close()
    else:
        make_client(spec.target, settings, component=spec.component).close()


def make_client(
    endpoint_name: str,
    settings: ClientSettings,
    url: str | None = None,
    component: str | None = None,
):
    """The production client, configured as a user would configure it.

    A loopback ``url`` (local mode, a server on this machine) needs no AWS account: the
    client sends unsigned requests there.
    """
    from sagemaker_reranker.client import SagemakerEndpointCrossEncoder

    try:
        return SagemakerEndpointCrossEncoder(
            endpoint_name=endpoint_name,
            endpoint_url=url,
            region_name=settings.region,
            credentials_profile_name=settings.profile,
            max_concurrency=settings.max_concurrency,
            instruction=settings.instruction,
            inference_component_name=component,
        )
    except ValueError as error:  # pydantic's ValidationError is one too
        raise EvalInputError(f"{endpoint_name}: {_client_problem(error)}") from None


@contextmanager
def open_system(spec: SystemSpec, settings: ClientSettings, note=lambda _: None) -> Iterator:
    """A ready client for ``spec``; an archive's local endpoint runs only inside the block."""
    with ExitStack() as stack:
        if spec.kind == "endpoint":
            model = make_client(spec.target, settings, component=spec.component)
        elif spec.kind == "endpoint-url":
            url, component = spec.target, spec.component
            model = make_client(spec.endpoint_name, settings, url=url, component=component)
        else:
            endpoint = stack.enter_context(_local_endpoint(spec, settings, note))
            model = make_client(endpoint.endpoint_name, settings, url=endpoint.url)
        stack.callback(model.close)  # before the local endpoint stops
        yield model


@contextmanager
def _local_endpoint(spec: SystemSpec, settings: ClientSettings, note) -> Iterator:
    from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint, LocalEndpointError

    note(f"{spec.label}: starting local mode ({settings.server}) for {spec.target}")
    endpoint = LocalEndpoint(model_data=spec.target, server=settings.server)
    try:
        endpoint.start()
    except LocalEndpointError as error:
        problem = _first_line(error)
        raise EvalRunError(f"{spec.label}: local mode did not start: {problem}") from None
    try:
        healthy, reason = endpoint.health()
        if not healthy:
            raise EvalRunError(f"{spec.label}: the model did not load: {_first_line(reason)}")
        note(f"{spec.label}: ready on {endpoint.url} in {endpoint.startup_seconds:.1f} s")
        yield endpoint
    finally:
        endpoint.stop()


def _client_problem(error: ValueError) -> str:
    """pydantic wraps a validator's message in a dump of the input; keep the message."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        messages = [item.get("msg", "") for item in errors()]
        return "; ".join(m.removeprefix("Value error, ") for m in messages if m)
    return _first_line(error)


def _first_line(error: object) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def with_unique_labels(specs: list[SystemSpec]) -> list[SystemSpec]:
    """``specs`` with labels (and so file names) made unique by a `` #2``-style suffix."""
    labels: set[str] = set()
    slugs: set[str] = set()
    unique = []
    for spec in specs:
        candidate, count = spec, 1
        while candidate.label in labels or candidate.slug in slugs:
            count += 1
            candidate = replace(spec, label=f"{spec.label} #{count}")
        labels.add(candidate.label)
        slugs.add(candidate.slug)
        unique.append(candidate)
    return unique
