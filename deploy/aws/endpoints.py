"""Endpoint lifecycle on SageMaker: create (idempotent), blue/green update, describe, delete."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from sagemaker_reranker.deploy.aws import autoscaling
from sagemaker_reranker.deploy.aws.artifacts import upload
from sagemaker_reranker.deploy.aws.session import Aws, DeployError, is_not_found, wait_until_settled
from sagemaker_reranker.deploy.aws.spec import DIGEST_LENGTH, ENDPOINT_TAG, DeploySpec
from sagemaker_reranker.deploy.platform import VARIANT

NAME_KEYS = {
    "model": "ModelName",
    "endpoint_config": "EndpointConfigName",
    "endpoint": "EndpointName",
}


def iso_time(value: Any) -> str | None:
    """A time as ISO 8601 (``2025-01-31T12:00:00+00:00``); boto3 gives datetimes."""
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def describe_endpoint(aws: Aws, name: str) -> dict[str, Any] | None:
    return aws.find("sagemaker", "describe_endpoint", EndpointName=name)


def _create_config(aws: Aws, spec: DeploySpec, instance_count: int | None = None) -> None:
    """Create the endpoint config unless one with this (content-derived) name exists."""
    if aws.find("sagemaker", "describe_endpoint_config", EndpointConfigName=spec.config_name):
        return
    aws.write("sagemaker", "create_endpoint_config", **spec.config_request(instance_count))


def _create_model(aws: Aws, spec: DeploySpec) -> None:
    """Upload the archive (unless already there), then create the model unless it exists."""
    if aws.find("sagemaker", "describe_model", ModelName=spec.model_name):
        return
    upload(aws, spec.model_data)
    aws.write("sagemaker", "create_model", **spec.model_request())


def _wait_endpoint(aws: Aws, name: str, timeout: float, command: str) -> dict[str, Any]:
    return wait_until_settled(
        lambda: aws.read("sagemaker", "describe_endpoint", EndpointName=name),
        "EndpointStatus",
        f"endpoint {name}",
        timeout,
        f"re-run the same `{command}` command to keep waiting",
        aws.reporter,
    )


def _failed(name: str, answer: dict[str, Any], hint: str) -> DeployError:
    reason = answer.get("FailureReason") or "no reason given"
    return DeployError(f"endpoint {name} is {answer.get('EndpointStatus')}: {reason}; {hint}")


def deploy(aws: Aws, spec: DeploySpec, wait: bool, timeout: float) -> dict[str, Any]:
    """Create model, config and endpoint; unchanged inputs change nothing; a wait resumes."""
    result = {"endpoint": spec.endpoint, "config": spec.config_name, "model": spec.model_name}
    current = describe_endpoint(aws, spec.endpoint)
    if current and current["EndpointConfigName"] != spec.config_name:
        raise DeployError(
            f"endpoint {spec.endpoint} already exists with endpoint config "
            f"{current['EndpointConfigName']}, and these inputs make {spec.config_name}; "
            f"to change it run `sagemaker-reranker update {spec.endpoint}` with the same options"
        )
    if current and current["EndpointStatus"] == "Failed":
        raise _failed(
            spec.endpoint,
            current,
            f"delete it (`sagemaker-reranker delete {spec.endpoint}`) and deploy again",
        )
    if current and current["EndpointStatus"] == "InService":
        return {**result, "action": "unchanged", "status": "InService"}
    if current:
        aws.reporter.note(
            f"endpoint {spec.endpoint} is {current['EndpointStatus']}: resuming the wait"
        )
        action = "resumed"
    else:
        _create_model(aws, spec)
        _create_config(aws, spec)
        aws.write("sagemaker", "create_endpoint", **spec.endpoint_request())
        action = "created"
    if aws.dry_run or not wait:
        return {**result, "action": action, "status": "Creating"}
    final = _wait_endpoint(aws, spec.endpoint, timeout, "deploy")
    if final["EndpointStatus"] != "InService":
        raise _failed(spec.endpoint, final, "see its CloudWatch logs (/aws/sagemaker/Endpoints)")
    return {**result, "action": action, "status": "InService"}


def _config_models(aws: Aws, config_name: str) -> list[str]:
    config = aws.find("sagemaker", "describe_endpoint_config", EndpointConfigName=config_name)
    return [variant["ModelName"] for variant in (config or {}).get("ProductionVariants", [])]


def _variant_type(aws: Aws, config_name: str) -> str | None:
    config = aws.find("sagemaker", "describe_endpoint_config", EndpointConfigName=config_name)
    variants = (config or {}).get("ProductionVariants", [])
    return variants[0].get("InstanceType") if variants else None


def _desired_count(endpoint: dict[str, Any]) -> int | None:
    for variant in endpoint.get("ProductionVariants", []):
        if variant.get("VariantName") == VARIANT:
            return variant.get("DesiredInstanceCount") or variant.get("CurrentInstanceCount")
    return None


def _delete_quietly(aws: Aws, kind: str, name: str) -> bool:
    """Delete a model/config/endpoint; one already gone is fine (partly-deleted state)."""
    try:
        aws.write("sagemaker", f"delete_{kind}", **{NAME_KEYS[kind]: name})
        return True
    except ClientError as error:
        if is_not_found(error):
            return False
        raise


def update(aws: Aws, spec: DeploySpec, wait: bool, timeout: float) -> dict[str, Any]:
    """Blue/green: new model + config, ``update_endpoint``, wait on the new config, drop the old.

    SageMaker keeps the old fleet serving until the new one is healthy; if the update fails
    it rolls back, and so do we: the new model and config are removed, autoscaling restored.
    """
    name = spec.endpoint
    current = describe_endpoint(aws, name)
    if current is None:
        raise DeployError(f"no endpoint {name}; create it with `sagemaker-reranker deploy {name}`")
    old_config = current["EndpointConfigName"]
    result = {"endpoint": name, "config": spec.config_name, "model": spec.model_name}
    status = current["EndpointStatus"]
    if status == "Failed":
        raise _failed(name, current, "a Failed endpoint cannot be updated; delete it first")
    pending = current.get("PendingDeploymentSummary", {}).get("EndpointConfigName")
    if status != "InService" and pending != spec.config_name and old_config != spec.config_name:
        raise DeployError(f"endpoint {name} is {status}; wait for it (`status {name}`) and retry")
    if old_config == spec.config_name and status == "InService":
        removed = _prune(aws, name, keep={spec.config_name, spec.model_name})
        return {**result, "action": "unchanged", "status": "InService", "removed": removed}
    scaling = None
    if status == "InService":
        scaling = _start_update(aws, spec, current, old_config)
    else:
        aws.reporter.note(
            f"endpoint {name} is {status} towards {spec.config_name}: resuming the wait"
        )
    if aws.dry_run or not wait:
        if not aws.dry_run:
            aws.reporter.note(
                "not waiting: re-run the same `update` command to wait and remove the old config"
            )
        return {**result, "action": "updating", "status": "Updating", "previous": old_config}
    final = _wait_endpoint(aws, name, timeout, "update")
    if final["EndpointStatus"] == "InService" and final["EndpointConfigName"] == spec.config_name:
        if scaling:
            autoscaling.restore(aws, scaling)
        removed = _prune(aws, name, keep={spec.config_name, spec.model_name})
        return {**result, "action": "updated", "status": "InService", "removed": removed}
    return _roll_back(aws, spec, final, scaling)


def _start_update(
    aws: Aws, spec: DeploySpec, current: dict[str, Any], old_config: str
) -> autoscaling.Scaling | None:
    """Create the new model and config and switch; returns scaling removed for a type change."""
    name = spec.endpoint
    scaling = autoscaling.current(aws, name, VARIANT)
    removed = None
    params: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": spec.config_name}
    count = None
    if scaling and _variant_type(aws, old_config) != spec.instance_type:
        # The service refuses an instance-type change while a scalable target is registered.
        aws.reporter.note(
            "instance type changes: deregistering autoscaling until the update is done"
        )
        count = _desired_count(current)
        autoscaling.remove(aws, scaling)
        removed = scaling
    elif scaling:
        # Keep the instance count autoscaling chose instead of the config's initial count.
        params["RetainAllVariantProperties"] = True
    _create_model(aws, spec)
    _create_config(aws, spec, count)
    aws.write("sagemaker", "update_endpoint", **params)
    return removed


def _roll_back(
    aws: Aws, spec: DeploySpec, final: dict[str, Any], scaling: autoscaling.Scaling | None
) -> dict[str, Any]:
    serving = final.get("EndpointConfigName")
    if scaling:
        autoscaling.restore(aws, scaling)
    if serving != spec.config_name:
        _delete_quietly(aws, "endpoint_config", spec.config_name)
        _delete_quietly(aws, "model", spec.model_name)
    reason = final.get("FailureReason") or "no reason given"
    if final.get("EndpointStatus") == "InService":
        raise DeployError(
            f"update of endpoint {spec.endpoint} failed: {reason}; the previous config "
            f"{serving} keeps serving"
        )
    raise _failed(spec.endpoint, final, "the update did not complete")


def _ours(aws: Aws, arn: str, name: str) -> bool:
    tags = aws.read("sagemaker", "list_tags", ResourceArn=arn).get("Tags", [])
    return any(tag["Key"] == ENDPOINT_TAG and tag["Value"] == name for tag in tags)


def owned_resources(aws: Aws, name: str) -> dict[str, list[str]]:
    """Models and configs this tool made for ``name``: by name pattern, confirmed by tag."""
    prefix = re.escape(name[: 63 - DIGEST_LENGTH - 1].rstrip("-"))
    pattern = re.compile(rf"^{prefix}-[0-9a-f]{{{DIGEST_LENGTH}}}$")
    found: dict[str, list[str]] = {"endpoint_config": [], "model": []}
    listings = (
        ("endpoint_config", "list_endpoint_configs", "EndpointConfigs", "EndpointConfig"),
        ("model", "list_models", "Models", "Model"),
    )
    for kind, operation, key, prefix in listings:
        paginator = aws.client("sagemaker").get_paginator(operation)
        for page in paginator.paginate(NameContains=name[:63]):
            for item in page[key]:
                if pattern.match(item[f"{prefix}Name"]) and _ours(aws, item[f"{prefix}Arn"], name):
                    found[kind].append(item[f"{prefix}Name"])
    return found


def _prune(aws: Aws, name: str, keep: set[str]) -> list[str]:
    """Delete the configs and models of ``name`` that nothing serves any more."""
    removed = []
    owned = owned_resources(aws, name)
    for kind in ("endpoint_config", "model"):
        for item in owned[kind]:
            if item not in keep and _delete_quietly(aws, kind, item):
                removed.append(f"{kind}:{item}")
    return removed


def delete(aws: Aws, name: str) -> dict[str, Any]:
    """Remove scaling, endpoint, configs and models; whatever is already gone is skipped."""
    removed: list[str] = []
    current = describe_endpoint(aws, name)
    configs: set[str] = set()
    models: set[str] = set()
    if current:
        configs.add(current["EndpointConfigName"])
    owned = owned_resources(aws, name)
    configs.update(owned["endpoint_config"])
    models.update(owned["model"])
    for config in configs:
        models.update(_config_models(aws, config))
    scaling = autoscaling.current(aws, name, VARIANT)
    if scaling:
        autoscaling.remove(aws, scaling)
        removed.append(f"scalable-target:{autoscaling.resource_id(name, VARIANT)}")
    if current and _delete_quietly(aws, "endpoint", name):
        removed.append(f"endpoint:{name}")
    for kind, names in (("endpoint_config", configs), ("model", models)):
        for item in sorted(names):
            if _delete_quietly(aws, kind, item):
                removed.append(f"{kind}:{item}")
    return {"endpoint": name, "removed": removed}


def status(aws: Aws, name: str) -> dict[str, Any]:
    """The endpoint, its config and model, what it was deployed from, and its autoscaling."""
    current = describe_endpoint(aws, name)
    if current is None:
        raise DeployError(f"no endpoint {name} in {aws.region}")
    info: dict[str, Any] = {
        "endpoint": name,
        "status": current["EndpointStatus"],
        "config": current["EndpointConfigName"],
        "created": iso_time(current.get("CreationTime")),
        "modified": iso_time(current.get("LastModifiedTime")),
    }
    if current.get("FailureReason"):
        info["failure_reason"] = current["FailureReason"]
    config = aws.find(
        "sagemaker", "describe_endpoint_config", EndpointConfigName=current["EndpointConfigName"]
    )
    variants = []
    for variant in (config or {}).get("ProductionVariants", []):
        live = next(
            (
                v
                for v in current.get("ProductionVariants", [])
                if v["VariantName"] == variant["VariantName"]
            ),
            {},
        )
        variants.append(
            {
                "variant": variant["VariantName"],
                "model": variant["ModelName"],
                "instance_type": variant.get("InstanceType"),
                "instances": live.get("CurrentInstanceCount", variant.get("InitialInstanceCount")),
                "serverless": variant.get("ServerlessConfig"),
            }
        )
    info["variants"] = variants
    if variants:
        model = aws.find("sagemaker", "describe_model", ModelName=variants[0]["model"]) or {}
        container = model.get("PrimaryContainer", {})
        info["image"] = container.get("Image")
        info["model_data"] = container.get("ModelDataUrl")
        info["network_isolation"] = model.get("EnableNetworkIsolation")
    tags = aws.read("sagemaker", "list_tags", ResourceArn=current["EndpointArn"]).get("Tags", [])
    for tag in tags:
        if tag["Key"].startswith("sagemaker-reranker:") and tag["Key"] != ENDPOINT_TAG:
            info[tag["Key"].split(":", 1)[1].replace("-", "_")] = tag["Value"]
    scaling = autoscaling.current(aws, name, VARIANT)
    info["autoscaling"] = scaling.to_dict() if scaling else None
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
