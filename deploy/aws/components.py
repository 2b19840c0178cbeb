"""Inference components on SageMaker: add one to an endpoint (creating the endpoint for the
first), move one to a new model with a rolling update, remove one or all, and say what an
endpoint hosts. The requests themselves are built in ``component_spec``.

Each step looks before it writes, so the same command twice changes nothing, and a second
component touches nothing of the first. A failed rolling update leaves the old model serving
(SageMaker rolls the copies back); the model this run made for it is removed.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from sagemaker_reranker.deploy.aws import component_scaling as scaling
from sagemaker_reranker.deploy.aws import component_spec as cs
from sagemaker_reranker.deploy.aws.artifacts import upload
from sagemaker_reranker.deploy.aws.component_spec import ComponentSpec
from sagemaker_reranker.deploy.aws.leftovers import delete_quietly
from sagemaker_reranker.deploy.aws.session import Aws, DeployError, error_line, wait_until_settled


def describe(aws: Aws, component: str) -> dict[str, Any] | None:
    return aws.find("sagemaker", "describe_inference_component", InferenceComponentName=component)


def endpoint_config(aws: Aws, endpoint: dict[str, Any]) -> dict[str, Any]:
    name = endpoint["EndpointConfigName"]
    return aws.find("sagemaker", "describe_endpoint_config", EndpointConfigName=name) or {}


def hosts_components(config: dict[str, Any]) -> bool:
    """An endpoint for components: its variants name no model."""
    variants = config.get("ProductionVariants", [])
    return bool(variants) and not any("ModelName" in variant for variant in variants)


def names(aws: Aws, endpoint: str) -> list[str]:
    """The components on ``endpoint``, by name."""
    found = []
    paginator = aws.client("sagemaker").get_paginator("list_inference_components")
    for page in paginator.paginate(EndpointNameEquals=endpoint):
        found += [item["InferenceComponentName"] for item in page["InferenceComponents"]]
    return sorted(found)


def _wait(aws: Aws, what: str, describe_now, timeout: float, command: str) -> dict[str, Any]:
    return wait_until_settled(
        describe_now,
        "Status",
        what,
        timeout,
        f"re-run the same `{command}` command to keep waiting",
        aws.reporter,
    )


def _component_state(aws: Aws, component: str):
    def now() -> dict[str, Any]:
        answer = describe(aws, component) or {"InferenceComponentStatus": "Deleted"}
        return {**answer, "Status": answer.get("InferenceComponentStatus")}

    return now


def _endpoint_state(aws: Aws, endpoint: str):
    def now() -> dict[str, Any]:
        answer = aws.read("sagemaker", "describe_endpoint", EndpointName=endpoint)
        return {**answer, "Status": answer["EndpointStatus"]}

    return now


def _create_endpoint(aws: Aws, spec: ComponentSpec, timeout: float) -> None:
    """The config (role, variant without a model, managed scaling, routing) and the endpoint;
    a component can only be created once the endpoint is InService, so this waits."""
    config = spec.config_name
    if not aws.find("sagemaker", "describe_endpoint_config", EndpointConfigName=config):
        try:
            aws.write("sagemaker", "create_endpoint_config", **spec.config_request())
        except ClientError as error:
            if cs.ZERO_REFUSED in str(error):
                raise DeployError(
                    f"region {aws.region} does not offer scaling an endpoint to zero instances "
                    "(MinInstanceCount 0); deploy without --scale-to-zero, or in another region"
                ) from None
            raise
    aws.write("sagemaker", "create_endpoint", **spec.endpoint_request())
    if aws.dry_run:
        return
    aws.reporter.note(f"endpoint {spec.endpoint} for components: waiting until it is InService")
    final = _wait(
        aws, f"endpoint {spec.endpoint}", _endpoint_state(aws, spec.endpoint), timeout, "deploy"
    )
    if final["EndpointStatus"] != "InService":
        reason = final.get("FailureReason") or "no reason given"
        raise DeployError(
            f"endpoint {spec.endpoint} is {final['EndpointStatus']}: {reason}; delete it "
            f"(`sagemaker-reranker delete {spec.endpoint}`) and deploy again"
        )


def _check_endpoint(aws: Aws, spec: ComponentSpec, current: dict[str, Any]) -> None:
    config = endpoint_config(aws, current)
    if not hosts_components(config):
        raise DeployError(
            f"endpoint {spec.endpoint} serves a model directly, not components; components "
            "need an endpoint made for them: deploy them to another endpoint name"
        )
    if current["EndpointStatus"] != "InService":
        raise DeployError(
            f"endpoint {spec.endpoint} is {current['EndpointStatus']}; components can be added "
            f"once it is InService (`sagemaker-reranker status {spec.endpoint}`)"
        )
    variant = config["ProductionVariants"][0]
    managed = variant.get("ManagedInstanceScaling", {})
    if spec.scale_to_zero and managed.get("MinInstanceCount", 1) > 0:
        aws.reporter.note(
            f"note: endpoint {spec.endpoint} keeps at least {managed.get('MinInstanceCount')} "
            "instance(s): this component scales to zero copies, the endpoint not to zero "
            "instances"
        )


def _create_model(aws: Aws, spec: ComponentSpec) -> bool:
    """Upload the archive (unless there) and create the component's model; whether it was new."""
    if aws.find("sagemaker", "describe_model", ModelName=spec.model_name):
        return False
    upload(aws, spec.base.model_data)
    aws.write("sagemaker", "create_model", **spec.model_request())
    return True


def _send(
    aws: Aws,
    spec: ComponentSpec,
    call: tuple[str, dict[str, Any]],
    failed: str,
    after: str = "",
) -> bool:
    """Create the component's model (unless there), then the SageMaker ``call``; if the call
    is refused, the model this run created goes again, and the one-line error starts with
    ``failed`` and ends with ``after``. Whether the model was new."""
    new_model = _create_model(aws, spec)
    operation, request = call
    try:
        aws.write("sagemaker", operation, **request)
    except ClientError as error:
        if new_model:
            delete_quietly(aws, "model", spec.model_name)
        removed = f"; removed model {spec.model_name}" if new_model else ""
        raise DeployError(f"{failed}: {error_line(error)}{removed}{after}") from None
    return new_model


def _scale_to_zero(aws: Aws, spec: ComponentSpec) -> list[str]:
    if not spec.scale_to_zero:
        return []
    return scaling.ensure(aws, spec.endpoint, spec.component, 0, spec.max_copies)


def deploy(aws: Aws, spec: ComponentSpec, wait: bool, timeout: float) -> dict[str, Any]:
    """Add ``spec.component`` to its endpoint, creating the endpoint for the first one."""
    endpoint = spec.endpoint
    result: dict[str, Any] = {
        "endpoint": endpoint,
        "component": spec.component,
        "model": spec.model_name,
        "config": spec.config_name,
    }
    current = aws.find("sagemaker", "describe_endpoint", EndpointName=endpoint)
    if current is None:
        _create_endpoint(aws, spec, timeout)
        result["endpoint_action"] = "created"
    else:
        _check_endpoint(aws, spec, current)
        result["endpoint_action"] = "unchanged"
        result["config"] = current["EndpointConfigName"]
    existing = describe(aws, spec.component)
    if existing is not None:
        if existing["EndpointName"] != endpoint:
            raise DeployError(
                f"component {spec.component} already exists on endpoint "
                f"{existing['EndpointName']}: component names are unique in a region"
            )
        serving = existing.get("Specification", {}).get("ModelName")
        if serving != spec.model_name:
            raise DeployError(
                f"component {spec.component} already serves model {serving}, and these inputs "
                f"make {spec.model_name}; to change it run `sagemaker-reranker update "
                f"{endpoint} --component {spec.component}` with the same options"
            )
        put = _scale_to_zero(aws, spec)
        status = existing["InferenceComponentStatus"]
        return {
            **result,
            "action": "updated" if put else "unchanged",
            "status": status,
            "scaling": put,
        }
    _send(
        aws,
        spec,
        ("create_inference_component", spec.component_request()),
        f"component {spec.component} could not be created",
    )
    put = _scale_to_zero(aws, spec)
    if aws.dry_run or not wait:
        return {**result, "action": "created", "status": "Creating", "scaling": put}
    final = _wait(
        aws, f"component {spec.component}", _component_state(aws, spec.component), timeout, "deploy"
    )
    status = final["InferenceComponentStatus"]
    if status != "InService":
        reason = final.get("FailureReason") or "no reason given"
        raise DeployError(
            f"component {spec.component} is {status}: {reason}; remove it with "
            f"`sagemaker-reranker delete {endpoint} --component {spec.component}`"
        )
    return {**result, "action": "created", "status": status, "scaling": put}


def update(aws: Aws, spec: ComponentSpec, wait: bool, timeout: float) -> dict[str, Any]:
    """Move the component to ``spec``'s model with a rolling update."""
    existing = describe(aws, spec.component)
    if existing is None or existing["EndpointName"] != spec.endpoint:
        raise DeployError(
            f"no component {spec.component} on endpoint {spec.endpoint}; add it with "
            f"`sagemaker-reranker deploy {spec.endpoint} --component {spec.component}`"
        )
    old = existing.get("Specification", {}).get("ModelName")
    result = {"endpoint": spec.endpoint, "component": spec.component, "model": spec.model_name}
    status = existing["InferenceComponentStatus"]
    if old == spec.model_name and status == "InService":
        return {**result, "action": "unchanged", "status": status, "previous": old}
    if status != "InService":
        raise DeployError(
            f"component {spec.component} is {status}: a change is in progress; wait for it "
            f"(`sagemaker-reranker status {spec.endpoint}`) and retry"
        )
    new_model = _send(
        aws,
        spec,
        ("update_inference_component", spec.update_request()),
        f"update of component {spec.component} failed",
        f"; the old model {old} keeps serving",
    )
    if aws.dry_run or not wait:
        return {**result, "action": "updating", "status": "Updating", "previous": old}
    final = _wait(
        aws, f"component {spec.component}", _component_state(aws, spec.component), timeout, "update"
    )
    serving = final.get("Specification", {}).get("ModelName")
    if final["InferenceComponentStatus"] == "InService" and serving == spec.model_name:
        removed = [f"model:{old}"] if old and delete_quietly(aws, "model", old) else []
        return {
            **result,
            "action": "updated",
            "status": "InService",
            "previous": old,
            "removed": removed,
        }
    if new_model and serving != spec.model_name:
        delete_quietly(aws, "model", spec.model_name)
    reason = final.get("FailureReason") or "no reason given"
    raise DeployError(
        f"update of component {spec.component} failed: {reason}; the old model {serving} keeps "
        f"serving (removed the new model {spec.model_name})"
    )


def remove(aws: Aws, endpoint: str, component: str, timeout: float) -> list[str]:
    """One component with its scaling, alarm and model; what was removed."""
    existing = describe(aws, component)
    if existing is None or existing["EndpointName"] != endpoint:
        raise DeployError(f"no component {component} on endpoint {endpoint} in {aws.region}")
    removed = scaling.remove(aws, endpoint, component)
    if existing["InferenceComponentStatus"] != "Deleting":
        aws.write("sagemaker", "delete_inference_component", InferenceComponentName=component)
    removed.append(f"inference_component:{component}")
    if not aws.dry_run:
        # The model stays referenced until the component is gone.
        final = _wait(
            aws, f"component {component}", _component_state(aws, component), timeout, "delete"
        )
        if final["Status"] != "Deleted":
            raise DeployError(f"component {component} is {final['Status']}: it was not deleted")
    model = existing.get("Specification", {}).get("ModelName")
    if model and delete_quietly(aws, "model", model):
        removed.append(f"model:{model}")
    return removed


def remove_all(aws: Aws, endpoint: str, timeout: float) -> list[str]:
    """Every component of ``endpoint`` (SageMaker deletes no endpoint that still hosts one)."""
    removed = []
    for component in names(aws, endpoint):
        removed += remove(aws, endpoint, component, timeout)
    return removed


def rows(aws: Aws, endpoint: str) -> list[dict[str, Any]]:
    """What ``status`` shows of each component: model, archive, copies, compute, scaling."""
    found = []
    for component in names(aws, endpoint):
        info = describe(aws, component) or {}
        specification = info.get("Specification", {})
        runtime = info.get("RuntimeConfig", {})
        model = (
            aws.find("sagemaker", "describe_model", ModelName=specification.get("ModelName", ""))
            or {}
        )
        found.append(
            {
                "component": component,
                "status": info.get("InferenceComponentStatus"),
                "model": specification.get("ModelName"),
                "model_data": model.get("PrimaryContainer", {}).get("ModelDataUrl"),
                "copies_desired": runtime.get("DesiredCopyCount"),
                "copies_current": runtime.get("CurrentCopyCount"),
                "compute": specification.get("ComputeResourceRequirements"),
                "scaling": scaling.current(aws, component),
                "failure_reason": info.get("FailureReason"),
            }
        )
    return found
