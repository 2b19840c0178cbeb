"""``sagemaker-reranker serve``: the packaged handler behind a local endpoint, offline."""

from __future__ import annotations

import errno
import gzip
import ipaddress
import json
import os
import shlex
import signal
import socket
import sys
import tarfile
import zlib
from pathlib import Path

import click

from sagemaker_reranker.deploy.aws.metrics import parse_duration
from sagemaker_reranker.deploy.cli.options import BadInput, server_option, trust_options
from sagemaker_reranker.deploy.local.components import COMPONENT_HEADER, check_component_name
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint, LocalEndpointError
from sagemaker_reranker.deploy.local.net import bind_warning
from sagemaker_reranker.deploy.packaging.manifest import PackageError, read_manifest
from sagemaker_reranker.deploy.packaging.verify import Trust
from sagemaker_reranker.deploy.redaction import shown
from sagemaker_reranker.deploy.settings import parse_env
from sagemaker_reranker.inference.reranker_contract import INVOCATION_TIMEOUT, MAX_BODY_BYTES

EXAMPLE_PAIR = ("What is the plan for the economy?", "We will lower costs for families.")
EXAMPLE = json.dumps({"pairs": [list(EXAMPLE_PAIR)]})
# What a damaged or foreign archive raises while it is read (gzip, tar, a cut-off file).
ARCHIVE_ERRORS = (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error)
# Progress bars redraw with carriage returns: noise in a log. The user's setting wins.
QUIET_PROGRESS = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


class _Stop(Exception):
    """SIGTERM, turned into an exception so the endpoint is stopped on the way out."""


def _raise_stop(signum, frame) -> None:
    raise _Stop


def check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on, before the model is
    even extracted: an IPv6 host (the server is IPv4-only), a name that does not resolve, a
    port another process listens on. Port 0 is probed too: it checks the host."""
    try:
        ipv6 = ipaddress.ip_address(host.strip("[]")).version == 6
    except ValueError:
        ipv6 = ":" in host
    if ipv6:
        raise BadInput(
            f"--host {host}: the local server listens on IPv4 only; use 127.0.0.1 for loopback"
        )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server binds: a port a stopped server left in TIME_WAIT is free to reuse.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise BadInput(
                    f"port {port} on {host} is already in use; pick another with --port, or "
                    "--port 0 for a free one"
                ) from None
            reason = error.strerror or str(error)
            raise BadInput(f"cannot listen on {host}:{port}: {reason}") from None


def archive_env(model_data: Path, trust: Trust) -> dict[str, str]:
    """What the endpoint would get from deploy for this archive: the model to download when
    the weights are not baked in, at the commit recorded when it was packaged. An archive
    without a manifest is refused here already, unless ``trust`` allows it; extraction
    checks ``trust`` again on the bytes it writes."""
    if not model_data.is_file():
        raise BadInput(f"model archive {model_data} does not exist")
    try:
        manifest = read_manifest(model_data)
        trust.require_manifest(model_data, manifest)
    except PackageError as error:
        raise BadInput(str(error)) from None
    except (*ARCHIVE_ERRORS, OSError) as error:
        raise BadInput(f"{model_data} is not a model.tar.gz archive ({error})") from None
    if manifest is None or manifest.weights:
        return {}
    if manifest.source.startswith("dir:"):
        raise BadInput(
            f"{model_data} has no weights and names no hub model ({manifest.source}); package "
            "the directory again without --no-weights"
        )
    env = {"RERANKER_MODEL_ID": manifest.source}
    if manifest.revision:
        env["RERANKER_MODEL_REVISION"] = manifest.revision
    return env


def usage(url: str, endpoint_name: str, component: str | None = None) -> str:
    """How to call the endpoint: the container route with curl, the runtime API with this
    project's client, which talks to a loopback URL unsigned (no AWS credentials or region);
    with components, naming the first."""
    header = f" -H '{COMPONENT_HEADER}: {component}'" if component else ""
    curl = (
        f"curl -s {url}/invocations -H 'Content-Type: application/json'{header} "
        f"-d {shlex.quote(EXAMPLE)}"
    )
    named = f", inference_component_name={component!r}" if component else ""
    client = (
        f"SagemakerEndpointCrossEncoder(endpoint_name={endpoint_name!r}, endpoint_url={url!r}"
        f"{named}).score([{EXAMPLE_PAIR!r}])"
    )
    return f"  {curl}\n  {client}\nCtrl-C stops the endpoint."


def components_of(values: tuple[str, ...]) -> tuple[Path | None, dict[str, Path]]:
    """``--model-data``'s values: one archive, or ``NAME=ARCHIVE`` once per component."""
    if len(values) == 1 and (Path(values[0]).is_file() or "=" not in values[0]):
        return Path(values[0]), {}
    components: dict[str, Path] = {}
    for value in values:
        name, sep, archive = value.partition("=")
        if not sep or not archive:
            raise BadInput(
                f"--model-data {value!r}: with several, each is NAME=ARCHIVE (one component)"
            )
        try:
            check_component_name(name)
        except ValueError as error:
            raise BadInput(f"--model-data {value!r}: {error}") from None
        if name in components:
            raise BadInput(f"--model-data: component {name} is named twice")
        components[name] = Path(archive)
    return None, components


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float:
    if value is None:
        return 0.0
    try:
        return float(parse_duration(value))
    except ValueError as error:
        raise BadInput(f"--scale-to-zero-after: {error}") from None


@click.command("serve")
@click.option(
    "--model-data",
    "model_data_items",
    multiple=True,
    metavar="ARCHIVE | NAME=ARCHIVE",
    help="model.tar.gz to serve (extracted to a private temp dir); repeat as NAME=ARCHIVE for "
    "an endpoint hosting inference components, routed by the component header.",
)
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Model directory to serve; gets the packaged handler if it has no code/inference.py.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="1-65535; 0 picks a free port.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="IPv4 address to bind; anything but loopback exposes an unauthenticated endpoint.",
)
@click.option("--endpoint-name", default="local-reranker", show_default=True)
@click.option(
    "--env",
    "env_items",
    multiple=True,
    metavar="NAME=VALUE",
    help="Environment for the handler, as the endpoint's EnvironmentVariables (repeatable); a "
    "bare NAME takes its value from your environment, keeping secrets off the command line.",
)
@click.option(
    "--invocation-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=INVOCATION_TIMEOUT,
    show_default=True,
    help="Seconds per invocation before the runtime's timeout error (60 on AWS).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=MAX_BODY_BYTES,
    show_default=True,
    help="Largest request body (6 MiB on AWS real-time endpoints).",
)
@click.option(
    "--keep-alive",
    is_flag=True,
    help="Keep serving when the model fails to load (/ping answers 500 with the reason).",
)
@click.option(
    "--scale-to-zero-after",
    metavar="DURATION",
    callback=_duration,
    help="With components: stop a component's worker after this long without calls (30s, "
    "10m); the next call gets the runtime's no-capacity error while it starts again.",
)
@server_option(
    "worker: sagemaker_inference's handler service in a worker process; mms: "
    "multi-model-server (Java 17)."
)
@trust_options
def serve_command(
    model_data_items: tuple[str, ...],
    model_dir: Path | None,
    port: int,
    host: str,
    endpoint_name: str,
    env_items: tuple[str, ...],
    invocation_timeout: float,
    max_body_bytes: int,
    keep_alive: bool,
    scale_to_zero_after: float,
    server: str,
    trust: Trust,
) -> None:
    """Serve a model locally behind the SageMaker container contract and runtime API.

    The same code/inference.py the endpoint will run, through the real SageMaker handler
    service, with AWS's limits (6 MiB bodies, 60 s per call). boto3's sagemaker-runtime
    client (and so the LangChain client) works against it with endpoint_url.

    \b
    Examples:
      sagemaker-reranker serve --model-data model.tar.gz
      sagemaker-reranker serve --model-dir ./my-reranker --port 9000 --env RERANKER_MAX_PAIRS=256
      sagemaker-reranker serve --model-data bge=bge.tar.gz --model-data mini=mini.tar.gz \\
          --scale-to-zero-after 10m
    """
    model_data, components = components_of(model_data_items)
    if bool(model_data_items) == (model_dir is not None):
        raise click.UsageError("pass exactly one of --model-data or --model-dir")
    if components and server != "worker":
        raise BadInput("inference components (--model-data NAME=ARCHIVE) run on --server worker")
    if scale_to_zero_after and not components:
        raise BadInput(
            "--scale-to-zero-after needs inference components (--model-data NAME=ARCHIVE): "
            "only components scale to zero"
        )
    if model_dir is not None and trust != Trust():
        raise BadInput("--expect-sha256 and --allow-unverified check an archive: use --model-data")
    try:
        env = parse_env(list(env_items))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--env") from None
    warning = bind_warning(host)
    if warning:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    check_address(host, port)
    if model_data is not None:
        env = {**archive_env(model_data, trust), **env}
    component_env = {name: archive_env(archive, trust) for name, archive in components.items()}
    for name, value in QUIET_PROGRESS.items():
        os.environ.setdefault(name, value)
    endpoint = LocalEndpoint(
        model_data=model_data,
        model_dir=model_dir,
        components=components,
        component_env=component_env,
        scale_to_zero_after=scale_to_zero_after,
        env=env,
        log=sys.stderr,
        server=server,
        invocation_timeout=invocation_timeout,
        endpoint_name=endpoint_name,
        host=host,
        port=port,
        max_body_bytes=max_body_bytes,
        trust=trust,
    )
    source = ", ".join(f"{n}={a}" for n, a in components.items()) or str(model_data or model_dir)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        _run(endpoint, keep_alive, source, next(iter(components), None))
    except (_Stop, KeyboardInterrupt):
        click.echo("stopping", err=True)
    except PackageError as error:  # a damaged, edited or hostile archive: bad input
        raise BadInput(str(error)) from None
    except LocalEndpointError as error:
        raise click.ClickException(str(error)) from None
    except ARCHIVE_ERRORS as error:
        raise BadInput(f"{source} cannot be read: {error}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            endpoint.stop()
        except LocalEndpointError as error:
            click.secho(f"warning: {error}", fg="yellow", err=True)


def _run(endpoint: LocalEndpoint, keep_alive: bool, source: str, component: str | None) -> None:
    # The one line before "Serving ...", once the archive is unpacked (a refused archive is
    # one error line): loading takes seconds, and the server's own lines (the /ping polls)
    # are debug.
    endpoint.start(on_loading=lambda: click.echo(f"loading {source}…", err=True))
    healthy, reason = endpoint.health()
    if not healthy:
        click.secho(f"error: the model failed to load: {shown(reason)}", fg="red", err=True)
        if not keep_alive:
            raise click.exceptions.Exit(1)
        click.echo(f"--keep-alive: {endpoint.url}/ping answers 500 with this reason", err=True)
    else:
        click.echo(
            f"Serving {source} as endpoint '{endpoint.endpoint_name}' at {endpoint.url} "
            f"(ready in {endpoint.startup_seconds:.1f} s)"
        )
        click.echo(usage(endpoint.url, endpoint.endpoint_name, component))
    sys.stdout.flush()
    code = endpoint.wait()
    raise click.ClickException(f"the local server exited on its own (code {code})")
