"""Endpoint lifecycle on SageMaker: create (idempotent), blue/green update, delete.

Failures: a run records what it creates (:class:`leftovers.Created`); when a create or the
switch fails it deletes exactly that — never what the endpoint serves from — and says so.

Races: SageMaker serialises changes to one endpoint. A second ``CreateEndpoint`` of a name is
refused, and so is an ``UpdateEndpoint`` while another is in progress; before either call the
run also checks the endpoint's state. So of two runs at once exactly one proceeds; the other
takes back what it made and exits saying an update is in progress. Models and configs are
content-named, so two runs with the same inputs share them: creating one that a concurrent
run made first counts as found, and the loser never deletes what the winner uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from sagemaker_reranker.deploy.aws import alarms, autoscaling, components
from sagemaker_reranker.deploy.aws.alarms import AlarmOptions
from sagemaker_reranker.deploy.aws.artifacts import upload
from sagemaker_reranker.deploy.aws.leftovers import (
    Created,
    config_models,
    delete_quietly,
    owned_resources,
    prune,
    undo,
)
from sagemaker_reranker.deploy.aws.session import Aws, DeployError, error_line, wait_until_settled
from sagemaker_reranker.deploy.aws.spec import DeploySpec
from sagemaker_reranker.deploy.platform import VARIANT

CHANGING = {"Creating", "Updating", "SystemUpdating", "RollingBack"}
NO_ALARMS = AlarmOptions(enabled=False)


def describe_endpoint(aws: Aws, name: str) -> dict[str, Any] | None:
    return aws.find("sagemaker", "describe_endpoint", EndpointName=name)


def _already_exists(error: ClientError) -> bool:
    """SageMaker: ``Cannot create already existing model/endpoint configuration/endpoint``."""
    message = str(error.response.get("Error", {}).get("Message", ""))
    return "already exist" in message


def _create(aws: Aws, kind: str, name: str, created: Created, request: dict[str, Any]) -> None:
    """Create a model or config unless it exists; one a concurrent run made first is found."""
    try:
        aws.write("sagemaker", f"create_{kind}", **request)
    except ClientError as error:
        if _already_exists(error):
            return
        raise
    if not aws.dry_run:
        created.add(kind, name)


def _create_model(aws: Aws, spec: DeploySpec, created: Created) -> None:
    """Upload the archive (unless already there), then create the model unless it exists."""
    if aws.find("sagemaker", "describe_model", ModelName=spec.model_name):
        return
    upload(aws, spec.model_data)
    _create(aws, "model", spec.model_name, created, spec.model_request())


def _create_config(
    aws: Aws, spec: DeploySpec, created: Created, instance_count: int | None = None
) -> None:
    if aws.find("sagemaker", "describe_endpoint_config", EndpointConfigName=spec.config_name):
        return
    request = spec.config_request(instance_count)
    _create(aws, "endpoint_config", spec.config_name, created, request)


def _wait_endpoint(
    aws: Aws, name: str, timeout: float, command: str, describe: Callable[[], dict] | None = None
) -> dict[str, Any]:
    """Poll ``describe`` (by default: the endpoint, which must exist) until it settles."""
    return wait_until_settled(
        describe or (lambda: aws.read("sagemaker", "describe_endpoint", EndpointName=name)),
        "EndpointStatus",
        f"endpoint {name}",
        timeout,
        f"re-run the same `{command}` command to keep waiting",
        aws.reporter,
    )


def wait_gone(aws: Aws, name: str, timeout: float, command: str) -> None:
    """Poll until the endpoint no longer exists (a delete takes minutes on SageMaker)."""
    final = _wait_endpoint(
        aws,
        name,
        timeout,
        command,
        lambda: describe_endpoint(aws, name) or {"EndpointStatus": "Deleted"},
    )
    if final["EndpointStatus"] != "Deleted":
        raise _failed(name, final, "it was not deleted")


def _failed(name: str, answer: dict[str, Any], hint: str) -> DeployError:
    reason = answer.get("FailureReason") or "no reason given"
    return DeployError(f"endpoint {name} is {answer.get('EndpointStatus')}: {reason}; {hint}")


def _busy(name: str, current: dict[str, Any]) -> DeployError:
    pending = current.get("PendingDeploymentSummary", {}).get("EndpointConfigName")
    towards = f" towards {pending}" if pending else ""
    return DeployError(
        f"endpoint {name} is {current['EndpointStatus']}{towards}: an update is in progress "
        f"(another run?); wait for it (`sagemaker-reranker status {name}`) and retry"
    )


def _removed_text(removed: list[str]) -> str:
    if not removed:
        return "this run created nothing that needs removing"
    return f"removed what this run created: {', '.join(removed)}"


def _put_alarms(aws: Aws, spec: DeploySpec, options: AlarmOptions) -> list[str]:
    if not options.enabled:
        return []
    requests = alarms.wanted(spec.endpoint, spec.instance_type, options)
    return alarms.ensure(aws, spec.endpoint, requests, options.topic)


def deploy(
    aws: Aws, spec: DeploySpec, wait: bool, timeout: float, alarm_options: AlarmOptions = NO_ALARMS
) -> dict[str, Any]:
    """Create model, config, alarms and endpoint; unchanged inputs change nothing; a wait
    resumes; an endpoint still being deleted is waited out first."""
    name = spec.endpoint
    result = {"endpoint": name, "config": spec.config_name, "model": spec.model_name}
    alarms.check_topic(aws, alarm_options.topic if alarm_options.enabled else None)
    current = describe_endpoint(aws, name)
    if current and current["EndpointStatus"] == "Deleting":
        if aws.dry_run:
            aws.reporter.note(f"endpoint {name} is Deleting: the deploy waits until it is gone")
        else:
            aws.reporter.note(f"endpoint {name} is Deleting: waiting until it is gone")
            wait_gone(aws, name, timeout, "deploy")
        current = None
    if current and current["EndpointConfigName"] != spec.config_name:
        if current["EndpointStatus"] in CHANGING:
            raise _busy(name, current)
        raise DeployError(
            f"endpoint {name} already exists with endpoint config "
            f"{current['EndpointConfigName']}, and these inputs make {spec.config_name}; "
            f"to change it run `sagemaker-reranker update {name}` with the same options"
        )
    if current and current["EndpointStatus"] == "Failed":
        hint = f"delete it (`sagemaker-reranker delete {name}`) and deploy again"
        raise _failed(name, current, hint)
    if current and current["EndpointStatus"] == "InService":
        _put_alarms(aws, spec, alarm_options)
        return {**result, "action": "unchanged", "status": "InService"}
    created = Created()
    if current:
        aws.reporter.note(f"endpoint {name} is {current['EndpointStatus']}: resuming the wait")
        _put_alarms(aws, spec, alarm_options)
        action = "resumed"
    else:
        try:
            _create_model(aws, spec, created)
            _create_config(aws, spec, created)
            aws.write("sagemaker", "create_endpoint", **spec.endpoint_request())
        except (ClientError, DeployError) as error:
            raise _undo_create(aws, spec, created, error) from None
        if not aws.dry_run:
            created.add("endpoint", name)
        # Only the run that created the endpoint sets its alarms: a loser of a race never
        # touches the winner's.
        _alarms_after_create(aws, spec, alarm_options)
        action = "created"
    if aws.dry_run or not wait:
        return {**result, "action": action, "status": "Creating"}
    final = _wait_endpoint(aws, name, timeout, "deploy")
    logs = f"`sagemaker-reranker logs {name}`"
    if final["EndpointStatus"] != "InService" and not created.items:
        raise _failed(name, final, f"see its logs ({logs})")
    if final["EndpointStatus"] != "InService":
        removed = undo(aws, created, name)
        removed += [f"alarm:{alarm}" for alarm in alarms.remove(aws, name)]
        raise _failed(name, final, f"{_removed_text(removed)}; its logs stay ({logs})")
    removed = prune(aws, name, keep={spec.config_name, spec.model_name})
    return {**result, "action": action, "status": "InService", "removed": removed}


def _alarms_after_create(aws: Aws, spec: DeploySpec, options: AlarmOptions) -> None:
    try:
        _put_alarms(aws, spec, options)
    except ClientError as error:
        raise DeployError(
            f"endpoint {spec.endpoint} is being created, but its alarms could not be set: "
            f"{error_line(error)}; re-run the same `deploy` to retry, or pass --no-alarms"
        ) from None


def _undo_create(aws: Aws, spec: DeploySpec, created: Created, error: Exception) -> DeployError:
    """Take back what a failed create made; name a concurrent run when one won the race."""
    name = spec.endpoint
    problem = error_line(error) if isinstance(error, ClientError) else str(error)
    now = describe_endpoint(aws, name)
    removed = undo(aws, created, name)
    if now is not None:
        return DeployError(
            f"endpoint {name} was created by another run meanwhile (it is "
            f"{now['EndpointStatus']}): an update is in progress; {_removed_text(removed)}"
        )
    return DeployError(f"deploy of endpoint {name} failed: {problem}; {_removed_text(removed)}")


def _variant_type(aws: Aws, config_name: str) -> str | None:
    config = aws.find("sagemaker", "describe_endpoint_config", EndpointConfigName=config_name)
    variants = (config or {}).get("ProductionVariants", [])
    return variants[0].get("InstanceType") if variants else None


def _desired_count(endpoint: dict[str, Any]) -> int | None:
    for variant in endpoint.get("ProductionVariants", []):
        if variant.get("VariantName") == VARIANT:
            return variant.get("DesiredInstanceCount") or variant.get("CurrentInstanceCount")
    return None


def update(
    aws: Aws, spec: DeploySpec, wait: bool, timeout: float, alarm_options: AlarmOptions = NO_ALARMS
) -> dict[str, Any]:
    """Blue/green: new model + config, ``update_endpoint``, wait on the new config, drop the old.

    SageMaker keeps the old fleet serving until the new one is healthy; if the update fails
    it rolls back, and so do we: the new model and config are removed, autoscaling restored.
    Alarms follow the new instance type once it serves.
    """
    name = spec.endpoint
    alarms.check_topic(aws, alarm_options.topic if alarm_options.enabled else None)
    current = describe_endpoint(aws, name)
    if current is None:
        raise DeployError(f"no endpoint {name}; create it with `sagemaker-reranker deploy {name}`")
    old_config = current["EndpointConfigName"]
    result = {"endpoint": name, "config": spec.config_name, "model": spec.model_name}
    status = current["EndpointStatus"]
    if status == "Deleting":
        raise DeployError(f"endpoint {name} is being deleted; deploy it again once it is gone")
    if status == "Failed":
        raise _failed(name, current, "a Failed endpoint cannot be updated; delete it first")
    pending = current.get("PendingDeploymentSummary", {}).get("EndpointConfigName")
    if status != "InService" and spec.config_name not in (pending, old_config):
        raise _busy(name, current)
    if old_config == spec.config_name and status == "InService":
        _put_alarms(aws, spec, alarm_options)
        removed = prune(aws, name, keep={spec.config_name, spec.model_name})
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
        _put_alarms(aws, spec, alarm_options)
        removed = prune(aws, name, keep={spec.config_name, spec.model_name})
        return {**result, "action": "updated", "status": "InService", "removed": removed}
    return _roll_back(aws, spec, final, scaling)


def _start_update(
    aws: Aws, spec: DeploySpec, current: dict[str, Any], old_config: str
) -> autoscaling.Scaling | None:
    """Create the new model and config and switch; returns scaling removed for a type change.

    Any failure before the switch is accepted takes back what this run created and restores
    the scaling it removed; the old config keeps serving.
    """
    name = spec.endpoint
    scaling = autoscaling.current(aws, name, VARIANT)
    removed = None
    params: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": spec.config_name}
    count = None
    created = Created()
    try:
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
        _create_model(aws, spec, created)
        _create_config(aws, spec, created, count)
        aws.write("sagemaker", "update_endpoint", **params)
    except (ClientError, DeployError) as error:
        raise _undo_update(aws, spec, created, removed, old_config, error) from None
    return removed


def _undo_update(
    aws: Aws,
    spec: DeploySpec,
    created: Created,
    scaling: autoscaling.Scaling | None,
    old_config: str,
    error: Exception,
) -> DeployError:
    name = spec.endpoint
    now = describe_endpoint(aws, name) or {}
    removed = undo(aws, created, name)
    if scaling:
        autoscaling.restore(aws, scaling)
    serving = now.get("EndpointConfigName", old_config)
    if now.get("EndpointStatus") in CHANGING:
        return DeployError(
            f"endpoint {name} is {now['EndpointStatus']}: an update is in progress (another "
            f"run's); {_removed_text(removed)}; wait for it (`sagemaker-reranker status {name}`)"
        )
    problem = error_line(error) if isinstance(error, ClientError) else str(error)
    return DeployError(
        f"update of endpoint {name} failed: {problem}; {_removed_text(removed)}; "
        f"the old config {serving} keeps serving"
    )


def _roll_back(
    aws: Aws, spec: DeploySpec, final: dict[str, Any], scaling: autoscaling.Scaling | None
) -> dict[str, Any]:
    serving = final.get("EndpointConfigName")
    if scaling:
        autoscaling.restore(aws, scaling)
    removed = []
    if serving != spec.config_name:
        for kind, item in (("endpoint_config", spec.config_name), ("model", spec.model_name)):
            if delete_quietly(aws, kind, item):
                removed.append(f"{kind}:{item}")
    reason = final.get("FailureReason") or "no reason given"
    if final.get("EndpointStatus") == "InService":
        raise DeployError(
            f"update of endpoint {spec.endpoint} failed: {reason}; removed "
            f"{', '.join(removed) or 'nothing'}; the old config {serving} keeps serving"
        )
    raise _failed(spec.endpoint, final, "the update did not complete")


def delete(aws: Aws, name: str, wait: bool = False, timeout: float = 3600) -> dict[str, Any]:
    """Remove scaling, alarms, endpoint, configs and models; whatever is gone is skipped.

    ``wait`` polls until the endpoint itself is gone (minutes on SageMaker), so a ``deploy``
    of the same name can follow at once.
    """
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
        models.update(filter(None, config_models(aws, config)))
    if current and "" in config_models(aws, current["EndpointConfigName"]):
        removed += components.remove_all(aws, name, timeout)  # SageMaker requires it first
    scaling = autoscaling.current(aws, name, VARIANT)
    if scaling:
        autoscaling.remove(aws, scaling)
        removed.append(f"scalable-target:{autoscaling.resource_id(name, VARIANT)}")
    removed += [f"alarm:{alarm}" for alarm in alarms.remove(aws, name)]
    deleting = current is not None and current["EndpointStatus"] == "Deleting"
    if current and not deleting and delete_quietly(aws, "endpoint", name):
        removed.append(f"endpoint:{name}")
    for kind, names in (("endpoint_config", configs), ("model", models)):
        for item in sorted(names):
            if delete_quietly(aws, kind, item):
                removed.append(f"{kind}:{item}")
    if wait and current and not aws.dry_run:
        wait_gone(aws, name, timeout, "delete --wait")
    return {"endpoint": name, "removed": removed}
