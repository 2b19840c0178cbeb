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

from typing import Any

import pytest
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker import models as sm_models
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


def _update_endpoint(self: SageMakerResponse) -> Any:
    name = self._get_param("EndpointName")
    config_name = self._get_param("EndpointConfigName")
    update_calls.append(
        {
            "EndpointName": name,
            "EndpointConfigName": config_name,
            "RetainAllVariantProperties": self._get_param("RetainAllVariantProperties"),
        }
    )
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
