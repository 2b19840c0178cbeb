"""What an endpoint is now: its state, variants, archive, autoscaling and alarms; the list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sagemaker_reranker.deploy.aws import alarms, autoscaling, components
from sagemaker_reranker.deploy.aws.session import Aws, DeployError
from sagemaker_reranker.deploy.aws.spec import ENDPOINT_TAG, TAG_PREFIX
from sagemaker_reranker.deploy.platform import VARIANT


def iso_time(value: Any) -> str | None:
    """A time as ISO 8601 (``2025-01-31T12:00:00+00:00``); boto3 gives datetimes."""
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _variants(aws: Aws, current: dict[str, Any]) -> list[dict[str, Any]]:
    config = aws.find(
        "sagemaker", "describe_endpoint_config", EndpointConfigName=current["EndpointConfigName"]
    )
    live = {v["VariantName"]: v for v in current.get("ProductionVariants", [])}
    variants = []
    for variant in (config or {}).get("ProductionVariants", []):
        running = live.get(variant["VariantName"], {})
        variants.append(
            {
                "variant": variant["VariantName"],
                "model": variant.get("ModelName"),
                "instance_type": variant.get("InstanceType"),
                "instances": running.get(
                    "CurrentInstanceCount", variant.get("InitialInstanceCount")
                ),
                "desired_instances": running.get("DesiredInstanceCount"),
                "serverless": variant.get("ServerlessConfig"),
            }
        )
        if "ManagedInstanceScaling" in variant:
            variants[-1]["managed_scaling"] = variant["ManagedInstanceScaling"]
    return variants


def status(aws: Aws, name: str) -> dict[str, Any]:
    """The endpoint, its config and model, what it was deployed from, autoscaling, alarms."""
    current = aws.find("sagemaker", "describe_endpoint", EndpointName=name)
    if current is None:
        raise DeployError(f"no endpoint {name} in {aws.region}")
    info: dict[str, Any] = {
        "endpoint": name,
        "status": current["EndpointStatus"],
        "config": current["EndpointConfigName"],
        "created": iso_time(current.get("CreationTime")),
        "modified": iso_time(current.get("LastModifiedTime")),
    }
    pending = current.get("PendingDeploymentSummary", {}).get("EndpointConfigName")
    if pending:
        info["pending_config"] = pending
    if current.get("FailureReason"):
        info["failure_reason"] = current["FailureReason"]
    info["variants"] = variants = _variants(aws, current)
    if variants and variants[0]["model"] is None:
        # An endpoint for components: each has its own model and archive.
        info["components"] = components.rows(aws, name)
    elif variants:
        model = aws.find("sagemaker", "describe_model", ModelName=variants[0]["model"]) or {}
        container = model.get("PrimaryContainer", {})
        info["image"] = container.get("Image")
        info["model_data"] = container.get("ModelDataUrl")
        info["network_isolation"] = model.get("EnableNetworkIsolation")
    tags = aws.read("sagemaker", "list_tags", ResourceArn=current["EndpointArn"]).get("Tags", [])
    for tag in tags:
        if tag["Key"].startswith(TAG_PREFIX) and tag["Key"] != ENDPOINT_TAG:
            info[tag["Key"].split(":", 1)[1].replace("-", "_")] = tag["Value"]
    scaling = autoscaling.current(aws, name, VARIANT)
    info["autoscaling"] = scaling.to_dict() if scaling else None
    info["alarms"] = alarms.states(aws, name)
    return info


def list_endpoints(aws: Aws, name_contains: str | None) -> list[dict[str, Any]]:
    params = {"NameContains": name_contains} if name_contains else {}
    rows = []
    for page in aws.client("sagemaker").get_paginator("list_endpoints").paginate(**params):
        for item in page["Endpoints"]:
            rows.append(
                {
                    "endpoint": item["EndpointName"],
                    "status": item["EndpointStatus"],
                    "created": iso_time(item.get("CreationTime")),
                }
            )
    return rows
