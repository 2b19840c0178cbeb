"""``sagemaker-reranker serve``: the packaged handler behind a local endpoint, offline."""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import click

from sagemaker_reranker.deploy.local.backend import SERVERS
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint, LocalEndpointError
from sagemaker_reranker.deploy.local.net import bind_warning
from sagemaker_reranker.deploy.packaging.manifest import PackageError
from sagemaker_reranker.deploy.platform import INVOCATION_TIMEOUT, MAX_BODY_BYTES
from sagemaker_reranker.deploy.settings import parse_env

EXAMPLE = '{"pairs": [["What is the plan for the economy?", "We will lower costs for families."]]}'


class _Stop(Exception):
    """SIGTERM, turned into an exception so the endpoint is stopped on the way out."""


def _raise_stop(signum, frame) -> None:
    raise _Stop


def usage(url: str, endpoint_name: str) -> str:
    """How to call the endpoint: the container route with curl, the runtime API with boto3."""
    curl = (
        f"curl -s {url}/invocations -H 'Content-Type: application/json' -d {shlex.quote(EXAMPLE)}"
    )
    boto3 = (
        f'boto3.client("sagemaker-runtime", endpoint_url="{url}", region_name="us-east-1", '
        'aws_access_key_id="local", aws_secret_access_key="local")'
        f'.invoke_endpoint(EndpointName="{endpoint_name}", ContentType="application/json", '
        "Body=...)"
    )
    return f"  {curl}\n  {boto3}\nCtrl-C stops the endpoint."


@click.command("serve")
@click.option(
    "--model-data",
    type=click.Path(dir_okay=False, path_type=Path),
    help="model.tar.gz to serve (extracted to a private temp dir).",
)
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Model directory to serve; gets the packaged handler if it has no code/inference.py.",
)
@click.option("--port", type=int, default=8080, show_default=True, help="0 picks a free port.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but loopback exposes an unauthenticated endpoint.",
)
@click.option("--endpoint-name", default="local-reranker", show_default=True)
@click.option(
    "--env",
    "env_items",
    multiple=True,
    metavar="NAME=VALUE",
    help="Environment for the handler, as the endpoint's EnvironmentVariables (repeatable).",
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
    "--server",
    type=click.Choice(SERVERS),
    default="inprocess",
    show_default=True,
    help="inprocess: sagemaker_inference handler service; mms: multi-model-server (Java 17).",
)
def serve_command(
    model_data: Path | None,
    model_dir: Path | None,
    port: int,
    host: str,
    endpoint_name: str,
    env_items: tuple[str, ...],
    invocation_timeout: float,
    max_body_bytes: int,
    keep_alive: bool,
    server: str,
) -> None:
    """Serve a model locally behind the SageMaker container contract and runtime API.

    The same code/inference.py the endpoint will run, through the real SageMaker handler
    service, with AWS's limits (6 MiB bodies, 60 s per call). boto3's sagemaker-runtime
    client (and so the LangChain client) works against it with endpoint_url.

    \b
    Examples:
      sagemaker-reranker serve --model-data model.tar.gz
      sagemaker-reranker serve --model-dir ./my-reranker --port 9000 --env RERANKER_MAX_PAIRS=256
    """
    if (model_data is None) == (model_dir is None):
        raise click.UsageError("pass exactly one of --model-data or --model-dir")
    try:
        env = parse_env(list(env_items))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--env") from None
    warning = bind_warning(host)
    if warning:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    endpoint = LocalEndpoint(
        model_data=model_data,
        model_dir=model_dir,
        env=env,
        server=server,
        invocation_timeout=invocation_timeout,
        endpoint_name=endpoint_name,
        host=host,
        port=port,
        max_body_bytes=max_body_bytes,
        log=sys.stderr,
    )
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        _run(endpoint, keep_alive, str(model_data or model_dir))
    except (_Stop, KeyboardInterrupt):
        click.echo("stopping", err=True)
    except (LocalEndpointError, PackageError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        endpoint.stop()
        signal.signal(signal.SIGTERM, previous)


def _run(endpoint: LocalEndpoint, keep_alive: bool, source: str) -> None:
    endpoint.start()
    healthy, reason = endpoint.health()
    if not healthy:
        click.secho(f"error: the model failed to load: {reason}", fg="red", err=True)
        if not keep_alive:
            raise click.exceptions.Exit(1)
        click.echo(f"--keep-alive: {endpoint.url}/ping answers 500 with this reason", err=True)
    else:
        click.echo(
            f"Serving {source} as endpoint '{endpoint.endpoint_name}' at {endpoint.url} "
            f"(ready in {endpoint.startup_seconds:.1f} s)"
        )
        click.echo(usage(endpoint.url, endpoint.endpoint_name))
    sys.stdout.flush()
    code = endpoint.wait()
    raise click.ClickException(f"the local server exited on its own (code {code})")
