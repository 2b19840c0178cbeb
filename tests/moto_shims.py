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
