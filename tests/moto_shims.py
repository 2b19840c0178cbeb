"""Test-only patches for moto 5.2.5's SageMaker gaps (see shared notes/moto-sagemaker.md).

They make moto closer to the real service, never more lenient than it:
- ``ml.g5.*``/``ml.g6.*`` are accepted (moto's instance list predates them); other unknown
  types are still rejected by moto's own check;
- ``update_endpoint`` exists (moto raises NotImplementedError): it switches the endpoint to
  the new config, or, when a failure was queued with ``fail_next_update``, leaves the old
  config serving with a FailureReason, as SageMaker's rollback does;
- ``EnableNetworkIsolation`` is stored on the model (moto drops it).

The same patches serve ``mock_aws`` and ``ThreadedMotoServer``: the server runs in a thread
of the test process, so it dispatches to the same patched classes.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker import models as sm_models
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError
from moto.sagemaker.responses import SageMakerResponse

ACCOUNT = "123456789012"
NEW_GPU_FAMILIES = ("ml.g5.", "ml.g6.", "ml.g6e.")
_update_failures: dict[str, str] = {}
update_calls: list[dict[str, Any]] = []


def backend(region: str = "us-east-1") -> Any:
    return sm_models.sagemaker_backends[ACCOUNT][region]


def fail_next_update(endpoint: str, reason: str) -> None:
    """The next ``update_endpoint`` of ``endpoint`` rolls back with ``reason``."""
    _update_failures[endpoint] = reason


def _record_update(self: SageMakerResponse) -> tuple[str, str]:
    """Note an ``update_endpoint`` call in ``update_calls``; its endpoint and config names."""
    name = self._get_param("EndpointName")
    config_name = self._get_param("EndpointConfigName")
    update_calls.append(
        {
            "EndpointName": name,
            "EndpointConfigName": config_name,
            "RetainAllVariantProperties": self._get_param("RetainAllVariantProperties"),
        }
    )
    return name, config_name


def _update_endpoint(self: SageMakerResponse) -> Any:
    name, config_name = _record_update(self)
    store = self.sagemaker_backend
    store.describe_endpoint(name)  # moto's own "Could not find endpoint" error
    config = store.describe_endpoint_config(config_name)
    endpoint = store.endpoints[name]
    reason = _update_failures.pop(name, None)
    if reason:
        endpoint.failure_reason = reason
    else:
        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(
            config["ProductionVariants"]
        )
        endpoint.failure_reason = None
    endpoint.last_modified_time = utcnow()
    return ActionResult({"EndpointArn": endpoint.arn})


def patch_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_components(monkeypatch)
    original_validate = sm_models.FakeEndpointConfig.validate_instance_type
    original_create_model = SageMakerResponse.create_model

    def validate_instance_type(self: Any, instance_type: str) -> None:
        if not instance_type.startswith(NEW_GPU_FAMILIES):
            original_validate(self, instance_type)

    def create_model(self: SageMakerResponse) -> ActionResult:
        result = original_create_model(self)
        model = self.sagemaker_backend._models[self._get_param("ModelName")]
        model.enable_network_isolation = bool(self._get_param("EnableNetworkIsolation"))
        return result

    monkeypatch.setattr(
        sm_models.FakeEndpointConfig, "validate_instance_type", validate_instance_type
    )
    monkeypatch.setattr(SageMakerResponse, "create_model", create_model)
    monkeypatch.setattr(SageMakerResponse, "update_endpoint", _update_endpoint, raising=False)
    _update_failures.clear()
    update_calls.clear()


def set_endpoint_status(name: str, status: str, reason: str | None = None) -> None:
    endpoint = backend().endpoints[name]
    endpoint.endpoint_status = status
    endpoint.failure_reason = reason


# --------------------------------------------------------------- timing, races, duplicates
#
# moto changes an endpoint's state at once and lets a create overwrite an existing name. The
# real service takes minutes per change, refuses an UpdateEndpoint while one is in progress
# and refuses to create a name twice; these patches give moto the same rules, with changes
# that take ``change_seconds[...]`` of wall time (0: at once, moto's own behaviour). A
# change in flight settles when anything looks at the endpoint after its time is up.

change_seconds = {"create": 0.0, "update": 0.0, "delete": 0.0}
_in_flight: dict[str, tuple[float, str, str | None, str | None]] = {}
_service_lock = threading.RLock()  # the service applies one change to a name at a time


def slow_changes(create: float = 0.0, update: float = 0.0, delete: float = 0.0) -> None:
    """Endpoint creates, updates and deletes take this many seconds from now on."""
    change_seconds.update(create=create, update=update, delete=delete)


def finish_changes() -> None:
    """Every create, update and delete in flight is done at the next call."""
    for name, (_, *rest) in list(_in_flight.items()):
        _in_flight[name] = (0.0, *rest)


def _settle(store: Any) -> None:
    now = time.monotonic()
    for name, (deadline, action, config_name, reason) in list(_in_flight.items()):
        if deadline > now:
            continue
        del _in_flight[name]
        endpoint = store.endpoints.get(name)
        if endpoint is None:
            continue
        endpoint.pending_deployment_summary = None
        endpoint.last_modified_time = utcnow()
        if action == "delete":
            del store.endpoints[name]
        elif action == "update" and reason is None:
            config = store.describe_endpoint_config(config_name)
            endpoint.endpoint_config_name = config_name
            endpoint.production_variants = endpoint._process_production_variants(
                config["ProductionVariants"]
            )
            endpoint.endpoint_status, endpoint.failure_reason = "InService", None
        else:  # a create done, or an update rolled back: the old config keeps serving
            endpoint.endpoint_status, endpoint.failure_reason = "InService", reason


def _already_exists(kind: str, arn: str) -> Exception:
    return SageMakerValidationError(message=f'Cannot create already existing {kind} "{arn}".')


def _timed_update(self: SageMakerResponse) -> Any:
    name = self._get_param("EndpointName")
    with _service_lock:
        store = self.sagemaker_backend
        _settle(store)
        endpoint = store.endpoints.get(name)
        if endpoint is not None and endpoint.endpoint_status != "InService":
            update_calls.append({"EndpointName": name, "refused": endpoint.endpoint_status})
            raise SageMakerValidationError(
                message=f'Cannot update in-progress endpoint "{endpoint.arn}".'
            )
        if change_seconds["update"] <= 0:
            return _update_endpoint(self)
        _, config_name = _record_update(self)
        store.describe_endpoint(name)
        store.describe_endpoint_config(config_name)
        endpoint.endpoint_status = "Updating"
        endpoint.pending_deployment_summary = {
            "EndpointConfigName": config_name,
            "StartTime": utcnow(),
        }
        deadline = time.monotonic() + change_seconds["update"]
        _in_flight[name] = (deadline, "update", config_name, _update_failures.pop(name, None))
        return ActionResult({"EndpointArn": endpoint.arn})


def patch_service_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Duplicate names refused, one change at a time, changes that take time (see above)."""
    backend_class = sm_models.SageMakerModelBackend
    originals = {
        name: getattr(backend_class, name)
        for name in (
            "create_model",
            "create_endpoint_config",
            "create_endpoint",
            "describe_endpoint",
            "delete_endpoint",
            "list_endpoints",
        )
    }

    def create_model(self: Any, **params: Any) -> Any:
        with _service_lock:
            if params["model_name"] in self._models:
                arn = self._models[params["model_name"]].arn
                raise _already_exists("model", arn)
            return originals["create_model"](self, **params)

    def create_endpoint_config(self: Any, **params: Any) -> Any:
        with _service_lock:
            name = params["endpoint_config_name"]
            if name in self.endpoint_configs:
                arn = self.endpoint_configs[name].endpoint_config_arn
                raise _already_exists("endpoint configuration", arn)
            return originals["create_endpoint_config"](self, **params)

    def create_endpoint(self: Any, **params: Any) -> Any:
        with _service_lock:
            _settle(self)
            name = params["endpoint_name"]
            if name in self.endpoints:
                raise _already_exists("endpoint", self.endpoints[name].arn)
            endpoint = originals["create_endpoint"](self, **params)
            if change_seconds["create"] > 0:
                endpoint.endpoint_status = "Creating"
                deadline = time.monotonic() + change_seconds["create"]
                _in_flight[name] = (deadline, "create", None, None)
            return endpoint

    def describe_endpoint(self: Any, name: str) -> Any:
        with _service_lock:
            _settle(self)
            return originals["describe_endpoint"](self, name)

    def list_endpoints(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _service_lock:
            _settle(self)
            return originals["list_endpoints"](self, *args, **kwargs)

    def delete_endpoint(self: Any, name: str) -> None:
        with _service_lock:
            _settle(self)
            endpoint = self.endpoints.get(name)
            if endpoint is None or change_seconds["delete"] <= 0:
                _in_flight.pop(name, None)
                return originals["delete_endpoint"](self, name)
            endpoint.endpoint_status = "Deleting"
            _in_flight[name] = (time.monotonic() + change_seconds["delete"], "delete", None, None)

    for name, function in (
        ("create_model", create_model),
        ("create_endpoint_config", create_endpoint_config),
        ("create_endpoint", create_endpoint),
        ("describe_endpoint", describe_endpoint),
        ("list_endpoints", list_endpoints),
        ("delete_endpoint", delete_endpoint),
    ):
        monkeypatch.setattr(backend_class, name, function)
    monkeypatch.setattr(SageMakerResponse, "update_endpoint", _timed_update, raising=False)
    change_seconds.update(create=0.0, update=0.0, delete=0.0)
    _in_flight.clear()


# ------------------------------------------------------------- CloudWatch: percentiles
#
# moto's GetMetricData answers None for percentile statistics (p50, p99); CloudWatch computes
# them from the datapoints' values. Nearest-rank percentiles of the values stored.


def patch_percentiles(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.cloudwatch.models import Statistics

    original = Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        if re.fullmatch(r"p\d+(\.\d+)?", stat):
            values = sorted(self.metric_single_values_list)
            if not values:
                return None
            rank = math.ceil(float(stat[1:]) / 100 * len(values))
            return values[max(rank, 1) - 1]
        return original(self, stat)

    monkeypatch.setattr(Statistics, "get_statistics_for_type", get_statistics_for_type)


# -------------------------------------------- what a live endpoint would have written
#
# A moto endpoint serves no traffic, so CloudWatch has no metrics and no log group for it;
# these write what SageMaker would, through the same client a test gives them.


def put_endpoint_metrics(
    cloudwatch: Any,
    endpoint: str,
    model_latency_ms: list[float],
    overhead_latency_ms: list[float],
    errors_4xx: int = 0,
    errors_5xx: int = 0,
    cpu_percent: float | None = None,
    when: datetime | None = None,
    memory_percent: float | None = None,
    disk_percent: float | None = None,
) -> None:
    """One minute of an endpoint's runtime metrics (latencies in microseconds, as AWS)."""
    when = when or datetime.now(timezone.utc) - timedelta(minutes=2)
    dimensions = [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]

    def datum(name: str, values: list[float], unit: str) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Dimensions": dimensions,
            "Values": values,
            "Unit": unit,
            "Timestamp": when,
        }

    invocations = len(model_latency_ms)
    cloudwatch.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            datum("Invocations", [float(invocations)], "None"),
            datum("ModelLatency", [v * 1000 for v in model_latency_ms], "Microseconds"),
            datum("OverheadLatency", [v * 1000 for v in overhead_latency_ms], "Microseconds"),
            datum("Invocation4XXErrors", [float(errors_4xx)], "None"),
            datum("Invocation5XXErrors", [float(errors_5xx)], "None"),
        ],
    )
    usage = {"CPU": cpu_percent, "Memory": memory_percent, "Disk": disk_percent}
    instance = [
        datum(f"{name}Utilization", [value], "Percent")
        for name, value in usage.items()
        if value is not None
    ]
    if instance:
        cloudwatch.put_metric_data(Namespace="/aws/sagemaker/Endpoints", MetricData=instance)


def write_endpoint_logs(
    logs: Any, endpoint: str, lines: list[tuple[str, float, str]], base_ms: int | None = None
) -> None:
    """``(stream, seconds after base, message)`` lines into the endpoint's log group."""
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    base_ms = base_ms or int(time.time() * 1000) - 60_000
    existing = {g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]}
    if group not in existing:
        logs.create_log_group(logGroupName=group)
    streams = {
        s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]
    }
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for stream, offset, message in lines:
        by_stream.setdefault(stream, []).append(
            {"timestamp": base_ms + int(offset * 1000), "message": message}
        )
    for stream, events in by_stream.items():
        if stream not in streams:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=sorted(events, key=lambda event: event["timestamp"]),
        )


# ------------------------------------------------------------- inference components
#
# moto has no inference-component API (notes/moto-sagemaker.md). This is a small model of it
# that enforces what SageMaker enforces: a component goes on an InService endpoint whose config
# has the execution role and a variant without a model; its model must exist; CopyCount is at
# least 1 at creation; one change at a time; an endpoint that still hosts components cannot be
# deleted; the runtime wants the component header on such an endpoint. Creates, updates and
# deletes take ``component_seconds[...]`` of wall time (0: at once); a rolling update queued
# to fail with ``fail_next_component_update`` rolls back, the old model serving. Requests are
# validated against botocore's service model by the client that sends them.

IC_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
component_seconds = {"create": 0.0, "update": 0.0, "delete": 0.0}
zero_refusing_regions: set[str] = set()
component_calls: list[tuple[str, dict[str, Any]]] = []
_component_failures: dict[str, str] = {}


def fail_next_component_update(component: str, reason: str) -> None:
    """The next rolling update of ``component`` fails and rolls back with ``reason``."""
    _component_failures[component] = reason


def refuse_zero_instances(region: str) -> None:
    """``region`` refuses MinInstanceCount 0, as regions without scale to zero do."""
    zero_refusing_regions.add(region)


def _components(store: Any) -> dict[str, dict[str, Any]]:
    """The components of one moto backend (a reset makes new backends, so they go with it)."""
    return store.__dict__.setdefault("_inference_components", {})


def _settle_components(store: Any) -> None:
    now = time.monotonic()
    components = _components(store)
    for name, item in list(components.items()):
        pending = item.pop("_pending", None)
        if pending is None:
            continue
        if pending["deadline"] > now:
            item["_pending"] = pending
            continue
        item["LastModifiedTime"] = utcnow()
        if pending["action"] == "delete":
            del components[name]
        elif pending["action"] == "update" and pending["reason"]:
            item["InferenceComponentStatus"] = "InService"
            item["FailureReason"] = pending["reason"]
        else:
            if pending["action"] == "update":
                item["Specification"] = pending["specification"]
                item.pop("FailureReason", None)
            item["InferenceComponentStatus"] = "InService"
            runtime = item["RuntimeConfig"]
            runtime["CurrentCopyCount"] = runtime["DesiredCopyCount"]


def _change(item: dict[str, Any], action: str, **pending: Any) -> None:
    """Start a change; it lands at once or after ``component_seconds[action]``."""
    item["InferenceComponentStatus"] = {
        "create": "Creating",
        "update": "Updating",
        "delete": "Deleting",
    }[action]
    deadline = time.monotonic() + component_seconds[action]
    item["_pending"] = {"action": action, "deadline": deadline, "reason": None, **pending}


def _find_component(store: Any, name: str) -> dict[str, Any]:
    _settle_components(store)
    item = _components(store).get(name)
    if item is None:
        arn = f"arn:aws:sagemaker:{store.region_name}:{ACCOUNT}:inference-component/{name}"
        raise SageMakerValidationError(message=f'Could not find inference component "{arn}".')
    return item


def _shown(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if not key.startswith("_")}


def _check_specification(store: Any, specification: dict[str, Any] | None) -> None:
    if not specification or not specification.get("ModelName"):
        raise SageMakerValidationError(message="Specification.ModelName is required.")
    store.describe_model(specification["ModelName"])  # moto's "Could not find model"
    if not specification.get("ComputeResourceRequirements"):
        raise SageMakerValidationError(
            message="ComputeResourceRequirements is required for an inference component."
        )


def _create_inference_component(self: SageMakerResponse) -> Any:
    store, params = self.sagemaker_backend, json.loads(self.body)
    component_calls.append(("create", params))
    name = params["InferenceComponentName"]
    _settle_components(store)
    if name in _components(store):
        arn = _components(store)[name]["InferenceComponentArn"]
        raise _already_exists("inference component", arn)
    endpoint = store.describe_endpoint(params["EndpointName"])
    if endpoint["EndpointStatus"] != "InService":
        raise SageMakerValidationError(
            message=f"Endpoint {params['EndpointName']} is not InService: "
            f"{endpoint['EndpointStatus']}."
        )
    config = store.describe_endpoint_config(endpoint["EndpointConfigName"])
    variants = {v["VariantName"]: v for v in config["ProductionVariants"]}
    variant = variants.get(params.get("VariantName", ""))
    if variant is None:
        raise SageMakerValidationError(
            message=f"Variant {params.get('VariantName')} not found on endpoint "
            f"{params['EndpointName']}."
        )
    if variant.get("ModelName"):
        raise SageMakerValidationError(
            message="Inference components cannot be added to an endpoint whose production "
            "variant has a ModelName."
        )
    _check_specification(store, params.get("Specification"))
    copies = (params.get("RuntimeConfig") or {}).get("CopyCount", 0)
    if copies < 1:
        raise SageMakerValidationError(
            message="RuntimeConfig.CopyCount must be at least 1 when creating an inference "
            "component."
        )
    arn = f"arn:aws:sagemaker:{store.region_name}:{ACCOUNT}:inference-component/{name}"
    item = {
        "InferenceComponentName": name,
        "InferenceComponentArn": arn,
        "EndpointName": params["EndpointName"],
        "EndpointArn": endpoint["EndpointArn"],
        "VariantName": params["VariantName"],
        "Specification": params["Specification"],
        "RuntimeConfig": {"DesiredCopyCount": copies, "CurrentCopyCount": 0},
        "CreationTime": utcnow(),
        "LastModifiedTime": utcnow(),
    }
    _components(store)[name] = item
    item["_tags"] = params.get("Tags", [])
    _change(item, "create")
    _settle_components(store)
    return ActionResult({"InferenceComponentArn": arn})


def _describe_inference_component(self: SageMakerResponse) -> Any:
    item = _find_component(self.sagemaker_backend, self._get_param("InferenceComponentName"))
    return ActionResult(_shown(item))


def _update_inference_component(self: SageMakerResponse) -> Any:
    store, params = self.sagemaker_backend, json.loads(self.body)
    component_calls.append(("update", params))
    name = params["InferenceComponentName"]
    item = _find_component(store, name)
    if item["InferenceComponentStatus"] != "InService":
        arn = item["InferenceComponentArn"]
        raise SageMakerValidationError(
            message=f'Cannot update in-progress inference component "{arn}".'
        )
    specification = {**item["Specification"], **(params.get("Specification") or {})}
    _check_specification(store, specification)
    if "RuntimeConfig" in params:
        item["RuntimeConfig"]["DesiredCopyCount"] = params["RuntimeConfig"]["CopyCount"]
    _change(item, "update", specification=specification)
    item["_pending"]["reason"] = _component_failures.pop(name, None)
    _settle_components(store)
    return ActionResult({"InferenceComponentArn": item["InferenceComponentArn"]})


def _delete_inference_component(self: SageMakerResponse) -> Any:
    store = self.sagemaker_backend
    name = self._get_param("InferenceComponentName")
    component_calls.append(("delete", {"InferenceComponentName": name}))
    item = _find_component(store, name)
    _change(item, "delete")
    _settle_components(store)
    return ActionResult({})


def _list_inference_components(self: SageMakerResponse) -> Any:
    store = self.sagemaker_backend
    _settle_components(store)
    endpoint = self._get_param("EndpointNameEquals")
    contains = self._get_param("NameContains")
    status = self._get_param("StatusEquals")
    summary_keys = (
        "CreationTime",
        "InferenceComponentArn",
        "InferenceComponentName",
        "EndpointArn",
        "EndpointName",
        "VariantName",
        "InferenceComponentStatus",
        "LastModifiedTime",
    )
    rows = [
        {key: item[key] for key in summary_keys}
        for name, item in sorted(_components(store).items())
        if (endpoint is None or item["EndpointName"] == endpoint)
        and (contains is None or contains in name)
        and (status is None or item["InferenceComponentStatus"] == status)
    ]
    return ActionResult({"InferenceComponents": rows})


def _check_component_config(store: Any, params: dict[str, Any]) -> None:
    """What SageMaker refuses in a config for components (a variant without a model)."""
    for variant in params.get("ProductionVariants", []):
        scaling = variant.get("ManagedInstanceScaling") or {}
        if scaling.get("MinInstanceCount") == 0 and store.region_name in zero_refusing_regions:
            raise SageMakerValidationError(
                message="Min instance count needs to be greater than 0 for enabled managed "
                "instance scaling"
            )
        if variant.get("ModelName"):
            if scaling.get("MinInstanceCount") == 0:
                raise SageMakerValidationError(
                    message="MinInstanceCount 0 needs an endpoint that hosts inference "
                    "components (a variant without ModelName)."
                )
            continue
        if not params.get("ExecutionRoleArn"):
            raise SageMakerValidationError(
                message="ExecutionRoleArn is required for an endpoint config whose production "
                "variants have no ModelName (inference components)."
            )
        if not variant.get("InstanceType"):
            raise SageMakerValidationError(
                message="Inference components need a production variant with an InstanceType."
            )


def _runtime_component_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime of an endpoint that hosts components wants the component header."""
    from moto.core.exceptions import JsonRESTError
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    original = SageMakerRuntimeResponse.invoke_endpoint

    def invoke_endpoint(self: Any) -> Any:
        store = backend(self.region)
        name = self._get_param("EndpointName")
        endpoint = store.endpoints.get(name)
        if endpoint is not None:
            config = store.describe_endpoint_config(endpoint.endpoint_config_name)
            if not any(v.get("ModelName") for v in config["ProductionVariants"]):
                headers = {key.lower(): value for key, value in self.headers.items()}
                header = headers.get("x-amzn-sagemaker-inference-component")
                problem = None
                if not header:
                    problem = (
                        "Inference Component Name header is required for endpoints to which "
                        "you plan to deploy inference components. Please include Inference "
                        "Component Name header or consider using SageMaker models."
                    )
                elif header not in _components(store):
                    problem = f"Inference component {header} not found."
                if problem:
                    raise JsonRESTError("ValidationError", problem)
        return original(self)

    monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)


def patch_components(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inference-component API and its rules on moto (see above)."""
    from moto.applicationautoscaling import models as scaling_models
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse

    original_config = SageMakerResponse.create_endpoint_config
    original_delete = SageMakerResponse.delete_endpoint
    original_valid = scaling_models._target_params_are_valid
    original_params = ApplicationAutoScalingResponse._validate_params
    original_variants = sm_models.SageMakerModelBackend.validate_production_variants

    def validate_production_variants(self: Any, variants: list[dict[str, Any]]) -> None:
        """A variant without a model is one for components (checked above); moto wants one."""
        original_variants(self, [variant for variant in variants if "ModelName" in variant])

    def create_endpoint_config(self: SageMakerResponse) -> Any:
        params = json.loads(self.body)
        _check_component_config(self.sagemaker_backend, params)
        result = original_config(self)
        config = self.sagemaker_backend.endpoint_configs[params["EndpointConfigName"]]
        if params.get("ExecutionRoleArn"):  # moto drops it; its describe shows attributes
            config.execution_role_arn = params["ExecutionRoleArn"]
        return result

    def delete_endpoint(self: SageMakerResponse) -> Any:
        name = self._get_param("EndpointName")
        _settle_components(self.sagemaker_backend)
        hosted = [
            c for c, i in _components(self.sagemaker_backend).items() if i["EndpointName"] == name
        ]
        if hosted:
            raise SageMakerValidationError(
                message=f"Endpoint {name} has inference components ({', '.join(sorted(hosted))}): "
                "delete them before the endpoint."
            )
        return original_delete(self)

    def target_params_are_valid(namespace: str, r_id: str, dimension: str) -> bool:
        if dimension == IC_DIMENSION:
            name = r_id.removeprefix("inference-component/")
            if namespace != "sagemaker" or name == r_id:
                raise scaling_models.AWSValidationException(
                    "Unsupported service namespace, resource type or scalable dimension"
                )
            return True
        return original_valid(namespace, r_id, dimension)

    def validate_params(self: Any) -> None:
        """moto's list of dimensions predates components; the namespace must still match."""
        if self._get_param("ScalableDimension") != IC_DIMENSION:
            original_params(self)
        elif self._get_param("ServiceNamespace") != "sagemaker":
            raise scaling_models.AWSValidationException(
                "Unsupported service namespace, resource type or scalable dimension"
            )

    handlers = {
        "create_inference_component": _create_inference_component,
        "describe_inference_component": _describe_inference_component,
        "update_inference_component": _update_inference_component,
        "delete_inference_component": _delete_inference_component,
        "list_inference_components": _list_inference_components,
        "create_endpoint_config": create_endpoint_config,
        "delete_endpoint": delete_endpoint,
    }
    for name, handler in handlers.items():
        monkeypatch.setattr(SageMakerResponse, name, handler, raising=False)
    monkeypatch.setattr(scaling_models, "_target_params_are_valid", target_params_are_valid)
    monkeypatch.setattr(ApplicationAutoScalingResponse, "_validate_params", validate_params)
    monkeypatch.setattr(
        sm_models.SageMakerModelBackend,
        "validate_production_variants",
        validate_production_variants,
    )
    _runtime_component_rules(monkeypatch)
    component_seconds.update(create=0.0, update=0.0, delete=0.0)
    zero_refusing_regions.clear()
    component_calls.clear()
    _component_failures.clear()
