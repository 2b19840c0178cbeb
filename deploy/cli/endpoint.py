"""``deploy``, ``update`` and ``delete``: the endpoint's life cycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from sagemaker_reranker.deploy.aws import endpoints
from sagemaker_reranker.deploy.aws.alarms import AlarmOptions, default_latency_slo_ms
from sagemaker_reranker.deploy.aws.alarms import check_options as check_alarm_options
from sagemaker_reranker.deploy.aws.alarms import wanted as alarm_requests
from sagemaker_reranker.deploy.aws.artifacts import (
    image_uri,
    resolve_model_data,
)
from sagemaker_reranker.deploy.aws.instances import describe_gpu, describe_instance
from sagemaker_reranker.deploy.aws.session import Aws, DeployError
from sagemaker_reranker.deploy.aws.spec import (
    DEFAULT_INSTANCE,
    DeployOptions,
    DeploySpec,
    build_spec,
    check_endpoint_name,
    check_options,
    image_mismatch,
)
from sagemaker_reranker.deploy.cli import component as component_cli
from sagemaker_reranker.deploy.cli.options import (
    BadInput,
    Result,
    aws_command,
    confirm,
    trust_options,
)
from sagemaker_reranker.deploy.platform import PYTORCH_VERSION, TRANSFORMERS_VERSION

DEFAULT_TIMEOUT = 3600


def deployment_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``deploy`` and ``update`` share (update takes the same inputs)."""
    options = [
        click.argument("name"),
        click.option("--component", help=component_cli.COMPONENT_HELP),
        click.option(
            "--model-data",
            required=True,
            help="model.tar.gz from `package` (uploaded under its sha256), or an s3:// URI.",
        ),
        click.option(
            "--role",
            envvar="SAGEMAKER_ROLE",
            help="Execution role ARN the endpoint runs as (default: SAGEMAKER_ROLE).",
        ),
        click.option(
            "--instance-type",
            help=f"Instance type [default: {DEFAULT_INSTANCE}; none when serverless].",
        ),
        click.option("--instance-count", type=int, default=1, show_default=True),
        click.option("--image-uri", help="Container image; default: the Hugging Face PyTorch one."),
        click.option("--transformers-version", default=TRANSFORMERS_VERSION, show_default=True),
        click.option("--pytorch-version", default=PYTORCH_VERSION, show_default=True),
        click.option("--serverless-memory", type=int, help="Serverless: memory in MB (1024-6144)."),
        click.option("--serverless-concurrency", type=int, help="Serverless: max concurrency."),
        click.option(
            "--env",
            multiple=True,
            help="Model env K=V (e.g. RERANKER_MAX_PAIRS=512); a bare NAME takes its value from "
            "your environment. Values of secret-looking names (HF_TOKEN, ...) are never printed.",
        ),
        click.option(
            "--vpc-subnets", multiple=True, help="Subnet id (repeat); with --security-groups."
        ),
        click.option("--security-groups", multiple=True, help="Security group id (repeat)."),
        click.option("--kms-key", help="KMS key for the upload and the instance storage volume."),
        click.option("--tag", "tags", multiple=True, help="Extra tag K=V (repeat)."),
        click.option(
            "--network-isolation/--no-network-isolation",
            default=None,
            help="Default: on when the archive has the weights baked in.",
        ),
        click.option(
            "--startup-timeout",
            type=int,
            help="Seconds the container has to load the model and pass its first health check "
            "(60-3600) [default: sized from the archive].",
        ),
        click.option(
            "--download-timeout",
            type=int,
            help="Seconds to download and unpack the archive (60-3600) [default: sized from "
            "the archive].",
        ),
        click.option(
            "--volume-size",
            type=int,
            help="GB of EBS storage per instance (1-512), for instance types without NVMe "
            "storage [default: SageMaker's, or sized from the archive when larger].",
        ),
        click.option(
            "--latency-slo-ms",
            type=int,
            help="p99 model latency (ms) above which the latency alarm fires "
            "[default: 2000 on GPU, 30000 on CPU and serverless].",
        ),
        click.option(
            "--alarm-topic",
            help="SNS topic ARN the alarms notify (update: kept when not given).",
        ),
        click.option(
            "--no-alarms",
            is_flag=True,
            help="Create no CloudWatch alarms (update: leave the existing ones as they are).",
        ),
        click.option("--bucket", help="Upload bucket (default: sagemaker-{region}-{account})."),
        click.option("--no-wait", is_flag=True, help="Return once the change has started."),
        click.option(
            "--timeout",
            type=int,
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds to wait.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return trust_options(function)


def _prepare(aws: Aws, params: dict[str, Any]) -> DeploySpec:
    """Check the options, find the image, upload the archive: everything before SageMaker."""
    role = params.pop("role")
    if not role:
        raise BadInput("no execution role: pass --role ARN or set SAGEMAKER_ROLE")
    model_data, bucket, trust = params.pop("model_data"), params.pop("bucket"), params.pop("trust")
    options = DeployOptions(**params)
    placement = check_options(options, role)
    image = options.image_uri or image_uri(
        aws.region, options.transformers_version, options.pytorch_version, placement.instance_type
    )
    mismatch = image_mismatch(image, placement)
    if mismatch:
        aws.reporter.note(f"warning: {mismatch}")
    # What the manifest claims sizes the endpoint before the whole archive is read: a model
    # too large for the instance is refused without hashing gigabytes first.
    data = resolve_model_data(
        aws,
        model_data,
        bucket,
        options.kms_key,
        trust,
        precheck=lambda claimed: build_spec(options, placement, claimed, image, role),
    )
    spec = build_spec(options, placement, data, image, role)
    for notice in spec.notices:
        aws.reporter.note(f"note: {notice}")
    return spec


def _alarm_options(slo_ms: int | None, topic: str | None, no_alarms: bool) -> AlarmOptions:
    if no_alarms and (slo_ms is not None or topic is not None):
        raise BadInput("--no-alarms cannot go with --latency-slo-ms or --alarm-topic")
    options = AlarmOptions(enabled=not no_alarms, latency_slo_ms=slo_ms, topic=topic)
    try:
        check_alarm_options(options)
    except DeployError as error:
        raise BadInput(str(error)) from None
    return options


def _with_alarms(result: Result, spec: DeploySpec, options: AlarmOptions) -> Result:
    """The report, plus the alarms the endpoint has (``--no-alarms``: left as they were)."""
    data, lines = result
    if not options.enabled:
        data["alarms"] = None
        lines.append("alarms    not changed (--no-alarms)")
        return data, lines
    wanted = alarm_requests(spec.endpoint, spec.instance_type, options)
    data["alarms"] = [request["AlarmName"] for request in wanted]
    kinds = ", ".join(name.rsplit(f"{spec.endpoint}-", 1)[1] for name in data["alarms"])
    slo = options.latency_slo_ms or default_latency_slo_ms(spec.instance_type)
    target = (
        f"notifying {options.topic}" if options.topic else "no --alarm-topic (existing keep theirs)"
    )
    lines.append(f"alarms    {kinds} (p99 above {slo} ms), {target}")
    return data, lines


# What a dry run says instead of what happened.
WOULD = {
    "created": "would be created",
    "resumed": "would be waited for",
    "updating": "would be updated",
    "unchanged": "unchanged: nothing to do",
}


def _placement_lines(spec: DeploySpec) -> list[str]:
    """Where the model runs and the container settings sized from the archive."""
    if spec.instance_type is None:
        return [f"instance  serverless, {(spec.serverless or {}).get('MemorySizeInMB')} MB"]
    gpu = describe_gpu(describe_instance(spec.instance_type))
    lines = [
        f"instance  {spec.instance_count} x {spec.instance_type}" + (f", {gpu}" if gpu else "")
    ]
    settings = spec.container_settings
    if settings:
        volume = settings.get("VolumeSizeInGB")
        lines.append(
            f"startup   health check {settings['ContainerStartupHealthCheckTimeoutInSeconds']} s,"
            f" download {settings['ModelDataDownloadTimeoutInSeconds']} s, volume "
            + (f"{volume} GB" if volume else "SageMaker's default")
        )
    return lines


def _report(outcome: dict[str, Any], spec: DeploySpec, dry_run: bool = False) -> Result:
    if dry_run:
        outcome = {**outcome, "action": WOULD.get(outcome["action"], outcome["action"])}
    data = {
        **outcome,
        "image": spec.image,
        "model_data": spec.model_data.uri,
        "archive_sha256": spec.model_data.sha256,
        "network_isolation": spec.isolation,
        "instance_type": spec.instance_type,
        "serverless": spec.serverless,
        "container_settings": spec.container_settings,
    }
    done = outcome["action"] if dry_run else f"{outcome['action']} ({outcome['status']})"
    lines = [
        f"endpoint  {outcome['endpoint']}: {done}",
        f"config    {outcome['config']}",
        f"image     {spec.image}",
        f"data      {spec.model_data.uri}",
        f"isolation {'on' if spec.isolation else 'off'}",
        *_placement_lines(spec),
    ]
    if outcome.get("removed"):
        removed = ", ".join(outcome["removed"])
        lines.append(f"{'would remove' if dry_run else 'removed  '} {removed}")
    return data, lines


def _apply(change: Callable[..., dict[str, Any]], aws: Aws, params: dict[str, Any]) -> Result:
    """``deploy`` or ``update`` (``change``) with the options both take."""
    if params.get("component"):
        action = "deploy" if change is endpoints.deploy else "update"
        return component_cli.apply(action, aws, params, _prepare)
    for key in ("component", "copies", "scale_to_zero", "max_instances"):
        if params.pop(key, None):
            raise BadInput(f"--{key.replace('_', '-')} goes with --component")
    alarm_options = _alarm_options(
        params.pop("latency_slo_ms"), params.pop("alarm_topic"), params.pop("no_alarms")
    )
    wait, timeout = not params.pop("no_wait"), params.pop("timeout")
    spec = _prepare(aws, params)
    outcome = change(aws, spec, wait, timeout, alarm_options)
    return _with_alarms(_report(outcome, spec, aws.dry_run), spec, alarm_options)


@aws_command("deploy", dry_run=True, plans_without_reads=True)
@deployment_options
@component_cli.deploy_options
def deploy_command(aws: Aws, **params: Any) -> Result:
    """Create a reranker endpoint from a packaged model (idempotent).

    Uploads a local archive under its sha256 (skipped when already there), creates the
    model, endpoint config and endpoint, and waits until it is InService. Running the same
    command again changes nothing; to change a live endpoint, use `update`.

    \b
    Examples:
      sagemaker-reranker deploy my-reranker --model-data model.tar.gz \\
          --role arn:aws:iam::123456789012:role/SageMakerRole
      sagemaker-reranker deploy my-reranker --model-data model.tar.gz \\
          --instance-type ml.m5.xlarge --dry-run
      sagemaker-reranker deploy shared --component bge --model-data model.tar.gz \\
          --role arn:aws:iam::123456789012:role/SageMakerRole --scale-to-zero
    """
    return _apply(endpoints.deploy, aws, params)


@aws_command("update", dry_run=True)
@deployment_options
def update_command(aws: Aws, **params: Any) -> Result:
    """Blue/green update of a live endpoint to a new archive or settings.

    Creates a new model and endpoint config, switches the endpoint to them (autoscaled
    instance counts are kept), waits until it is InService on the new config, then deletes
    the old ones. If the update fails, the old config keeps serving.

    \b
    Example:
      sagemaker-reranker update my-reranker --model-data model-v2.tar.gz \\
          --role arn:aws:iam::123456789012:role/SageMakerRole

    With --component the component moves to the new model with a rolling update: its old
    copies serve until the new ones are healthy; if the update fails, the old model keeps
    serving.
    """
    return _apply(endpoints.update, aws, params)


@aws_command("delete", dry_run=True)
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--component",
    help="Remove only this inference component (with its model, scaling and alarm).",
)
@click.option(
    "--wait", is_flag=True, help="Return only once the endpoint is gone (a deploy can follow)."
)
@click.option(
    "--timeout",
    type=int,
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait with --wait.",
)
def delete_command(
    aws: Aws, name: str, yes: bool, component: str | None, wait: bool, timeout: int
) -> Result:
    """Delete an endpoint with its components, autoscaling, endpoint configs and models.

    Works on partly-deleted state: whatever is already gone is skipped. Asks first unless
    --yes; without a terminal (scripts, CI) --yes is required.

    \b
    Example:
      sagemaker-reranker delete my-reranker --yes
      sagemaker-reranker delete shared --component bge --yes
    """
    check_endpoint_name(name)
    if component:
        confirm(
            f"Delete component {component} of endpoint {name}, with its model?",
            f"refusing to delete component {component} without confirmation: pass --yes",
            yes,
            aws.dry_run,
        )
        return component_cli.delete(aws, name, component, timeout)
    confirm(
        f"Delete endpoint {name}, its configs and models?",
        f"refusing to delete {name} without confirmation: pass --yes",
        yes,
        aws.dry_run,
    )
    outcome = endpoints.delete(aws, name, wait=wait, timeout=timeout)
    removed = outcome["removed"]
    verb = "would delete" if aws.dry_run else "deleted"
    lines = [f"{verb} {item}" for item in removed] or [f"nothing named {name} to delete"]
    if any(item.startswith("model:") for item in removed):
        # Archives are shared by content: another endpoint may serve from the same bytes.
        aws.reporter.note(
            "the model archive stays in S3: `sagemaker-reranker gc` removes archives no model reads"
        )
    return outcome, lines
