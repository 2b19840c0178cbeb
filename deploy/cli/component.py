"""``deploy``/``update``/``delete`` with ``--component``: inference components on one endpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from sagemaker_reranker.deploy.aws import components
from sagemaker_reranker.deploy.aws.component_spec import (
    ComponentSpec,
    check_component_name,
    component_env,
)
from sagemaker_reranker.deploy.aws.session import Aws, DeployError
from sagemaker_reranker.deploy.aws.spec import DeploySpec, check_endpoint_name
from sagemaker_reranker.deploy.cli.options import BadInput, Result

COMPONENT_HELP = (
    "Inference component: host this model as component NAME on an endpoint for components "
    "(several rerankers share its instances; the first creates the endpoint)."
)
# Plain-endpoint options a component has no use for, by parameter: (flag, why).
NOT_FOR_COMPONENTS = {
    "serverless_memory": ("--serverless-memory", "components run on instances"),
    "serverless_concurrency": ("--serverless-concurrency", "components run on instances"),
    "latency_slo_ms": ("--latency-slo-ms", "the endpoint alarms are for plain endpoints"),
    "alarm_topic": ("--alarm-topic", "the endpoint alarms are for plain endpoints"),
}


def deploy_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """What only ``deploy --component`` takes."""
    options = [
        click.option(
            "--copies",
            type=click.IntRange(min=1),
            help="Component: copies of the model at creation [default: 1].",
        ),
        click.option(
            "--scale-to-zero",
            is_flag=True,
            help="Component: let the endpoint scale to zero instances when idle and back on "
            "the next call (which fails while an instance starts, minutes).",
        ),
        click.option(
            "--max-instances",
            type=click.IntRange(min=1),
            help="Component: most instances managed scaling may start [default: --copies].",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _check_name(component: str) -> None:
    try:
        check_component_name(component)
    except DeployError as error:
        raise BadInput(str(error)) from None


def _refuse_plain_options(params: dict[str, Any]) -> None:
    for key, (flag, why) in NOT_FOR_COMPONENTS.items():
        if params.get(key) is not None:
            raise BadInput(f"{flag} does not go with --component: {why}")
    if params.get("instance_count", 1) != 1:
        raise BadInput("--instance-count does not go with --component: use --max-instances")


def _endpoint_instance_type(aws: Aws, name: str) -> str | None:
    """The instance type of an existing endpoint for components (what its components share)."""
    current = aws.find("sagemaker", "describe_endpoint", EndpointName=name)
    if current is None:
        return None
    config = components.endpoint_config(aws, current)
    if not components.hosts_components(config):
        raise DeployError(
            f"endpoint {name} serves a model directly, not components; components need an "
            "endpoint made for them: deploy them to another endpoint name"
        )
    return config["ProductionVariants"][0].get("InstanceType")


def _spec(
    aws: Aws, params: dict[str, Any], prepare: Callable[[Aws, dict[str, Any]], DeploySpec]
) -> DeploySpec:
    name, given = params["name"], params.get("instance_type")
    check_endpoint_name(name)
    serving = _endpoint_instance_type(aws, name)
    if serving and given and given != serving:
        raise BadInput(
            f"endpoint {name} runs on {serving}, and its components share those instances: "
            f"drop --instance-type {given} (or deploy to another endpoint)"
        )
    params["instance_type"] = given or serving
    spec = prepare(aws, params)
    return replace(spec, env=component_env(spec))


def apply(
    action: str,
    aws: Aws,
    params: dict[str, Any],
    prepare: Callable[[Aws, dict[str, Any]], DeploySpec],
) -> Result:
    """``deploy`` or ``update`` (``action``) of the component ``params["component"]``."""
    component = params.pop("component")
    _check_name(component)
    copies = params.pop("copies", None) or 1
    scale_to_zero = params.pop("scale_to_zero", False)
    max_instances = params.pop("max_instances", None) or copies
    _refuse_plain_options(params)
    for key in ("latency_slo_ms", "alarm_topic", "no_alarms"):
        params.pop(key)
    wait, timeout = not params.pop("no_wait"), params.pop("timeout")
    base = _spec(aws, params, prepare)
    spec = ComponentSpec(base, component, copies, scale_to_zero, max_instances)
    if action == "deploy":
        outcome = components.deploy(aws, spec, wait, timeout)
    else:
        outcome = components.update(aws, spec, wait, timeout)
    return _report(outcome, spec, aws.dry_run)


def _compute_text(compute: dict[str, Any]) -> str:
    parts = []
    if "NumberOfAcceleratorDevicesRequired" in compute:
        parts.append(f"{compute['NumberOfAcceleratorDevicesRequired']:g} GPU")
    if "NumberOfCpuCoresRequired" in compute:
        parts.append(f"{compute['NumberOfCpuCoresRequired']:g} CPU cores")
    parts.append(f"{compute['MinMemoryRequiredInMb']:,} MB memory")
    return ", ".join(parts) + " per copy"


def _report(outcome: dict[str, Any], spec: ComponentSpec, dry_run: bool) -> Result:
    action = outcome["action"]
    if dry_run:
        action = {"created": "would be created", "updating": "would be updated"}.get(action, action)
    data = {
        **outcome,
        "action": action,
        "image": spec.base.image,
        "model_data": spec.base.model_data.uri,
        "archive_sha256": spec.base.model_data.sha256,
        "instance_type": spec.base.instance_type,
        "compute": spec.compute,
        "copies": spec.copies,
        "scale_to_zero": spec.scale_to_zero,
        "max_instances": spec.max_instances,
    }
    done = action if dry_run else f"{action} ({outcome['status']})"
    lines = []
    if outcome.get("endpoint_action"):
        verb = outcome["endpoint_action"]
        shown = f"would be {verb}" if dry_run and verb == "created" else verb
        lines.append(f"endpoint  {spec.endpoint}: {shown}")
    lines += [
        f"component {spec.component}: {done}",
        f"model     {outcome['model']}",
        f"data      {spec.base.model_data.uri}",
        f"instance  {spec.base.instance_type}, {_compute_text(spec.compute)}",
    ]
    if outcome.get("previous") and outcome["previous"] != outcome["model"]:
        lines.append(f"previous  {outcome['previous']}")
    if spec.scale_to_zero:
        lines.append(
            f"scaling   0-{spec.max_copies} copies on 0-{spec.max_instances} instances; a call "
            "to an idle endpoint fails while an instance starts (minutes), then it serves"
        )
    if outcome.get("removed"):
        lines.append(f"removed   {', '.join(outcome['removed'])}")
    return data, lines


def delete(aws: Aws, name: str, component: str, timeout: float) -> Result:
    check_endpoint_name(name)
    _check_name(component)
    removed = components.remove(aws, name, component, timeout)
    verb = "would delete" if aws.dry_run else "deleted"
    return {"endpoint": name, "component": component, "removed": removed}, [
        f"{verb} {item}" for item in removed
    ]
