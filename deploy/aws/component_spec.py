"""Inference components: the requests that put several rerankers on one endpoint and let it
scale to zero instances.

An endpoint for components has a config with the execution role and a variant without a
model: the variant carries the instance type, managed instance scaling (minimum 0 with
``--scale-to-zero``) and least-outstanding-requests routing. Each component names its model,
the compute one copy takes (sized from the archive as ``deploy`` sizes instances) and its copy
count, at least 1 at creation. Scaling to zero is Application Auto Scaling's work afterwards:
the component's copy count as a scalable target with minimum 0, target tracking on
invocations per copy, and a step policy fired by an alarm on ``NoCapacityInvocationFailures``
to come back from zero (AWS: "Scale an endpoint to zero instances").

Names: models and configs are ``{endpoint}-{digest}`` like a plain endpoint's (so the
operator policy's endpoint prefix covers them, and ``delete``/``gc`` find them by the same
pattern); a component's model is also tagged with the component's name.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from sagemaker_reranker.deploy.aws.component_scaling import COMPONENT_TAG
from sagemaker_reranker.deploy.aws.instances import describe_instance, instance_vcpus
from sagemaker_reranker.deploy.aws.session import DeployError
from sagemaker_reranker.deploy.aws.sizing import (
    RUNTIME_RESERVE,
    ModelFootprint,
    cpu_env,
    dtype_bytes,
)
from sagemaker_reranker.deploy.aws.spec import (
    DIGEST_LENGTH,
    ENDPOINT_TAG,
    NAME_RE,
    DeploySpec,
    create_endpoint_request,
    instance_kind,
)
from sagemaker_reranker.deploy.platform import VARIANT

ROUTING = "LEAST_OUTSTANDING_REQUESTS"
# What some regions answer to MinInstanceCount 0 (they do not offer scale to zero).
ZERO_REFUSED = "Min instance count needs to be greater than 0"
# One copy on a CPU instance is one model-server worker with this many threads: two copies fit
# an xlarge (4 vCPUs), as the plain endpoint's one worker per 4 vCPUs would not leave room.
CPU_CORES_PER_COPY = 2


def check_component_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise DeployError(
            f"{name!r} is not a valid component name: letters, digits and single hyphens, "
            "at most 63 characters, starting with a letter or digit"
        )


def compute(spec: DeploySpec) -> dict[str, Any]:
    """``ComputeResourceRequirements`` of one copy: a GPU on GPU instances, cores on CPU ones,
    memory for the weights at the dtype the handler loads them in plus the runtime."""
    instance_type = spec.instance_type or ""
    kind = instance_kind(instance_type)
    footprint = ModelFootprint.of(spec.model_data.manifest, spec.model_data.size)
    weights = footprint.memory(dtype_bytes(kind, spec.env)) or footprint.archive_bytes or 0
    memory_mb = max(128, math.ceil((weights + RUNTIME_RESERVE) / 2**20))
    host = describe_instance(instance_type).memory_gib
    if host is not None and memory_mb > host * 1024 * 0.8:
        raise DeployError(
            f"one copy of the model needs about {memory_mb} MB, more than {instance_type}'s "
            f"{host} GiB of memory leaves the container; choose a larger instance type"
        )
    requirements: dict[str, Any] = {"MinMemoryRequiredInMb": memory_mb}
    if kind == "cpu":
        requirements["NumberOfCpuCoresRequired"] = float(
            min(CPU_CORES_PER_COPY, instance_vcpus(instance_type))
        )
    else:
        requirements["NumberOfAcceleratorDevicesRequired"] = 1.0
    return requirements


def component_env(spec: DeploySpec) -> dict[str, str]:
    """The plain endpoint's environment, with one worker per copy on CPU (a copy is the unit
    SageMaker places and scales)."""
    env = dict(spec.env)
    if spec.instance_type and instance_kind(spec.instance_type) == "cpu":
        cores = min(CPU_CORES_PER_COPY, instance_vcpus(spec.instance_type))
        env.update(cpu_env(cores, workers=1))  # threads, MKL and wait policy kept in step
    return env


def _digest(content: Any) -> str:
    blob = json.dumps(content, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:DIGEST_LENGTH]


def _name(endpoint: str, digest: str) -> str:
    return f"{endpoint[: 63 - DIGEST_LENGTH - 1].rstrip('-')}-{digest}"


@dataclass
class ComponentSpec:
    """One component on an endpoint for components: what ``deploy --component`` creates."""

    base: DeploySpec
    """The model (image, archive, environment, role) and the instance type, as ``deploy``
    builds them; its environment is already the component's."""
    component: str
    copies: int
    scale_to_zero: bool
    max_instances: int

    @property
    def endpoint(self) -> str:
        return self.base.endpoint

    @property
    def compute(self) -> dict[str, Any]:
        return compute(self.base)

    @property
    def startup(self) -> dict[str, int]:
        settings = self.base.container_settings
        keys = ("ModelDataDownloadTimeoutInSeconds", "ContainerStartupHealthCheckTimeoutInSeconds")
        return {key: settings[key] for key in keys if key in settings}

    @property
    def model_name(self) -> str:
        """Content-named like a plain endpoint's model; the component's name is part of it, so
        two components with the same archive have a model each."""
        return _name(self.endpoint, _digest([self.base.digest, self.component]))

    def _variant(self) -> dict[str, Any]:
        variant: dict[str, Any] = {
            "VariantName": VARIANT,
            "InstanceType": self.base.instance_type,
            "InitialInstanceCount": 1,
            "ManagedInstanceScaling": {
                "Status": "ENABLED",
                "MinInstanceCount": 0 if self.scale_to_zero else 1,
                "MaxInstanceCount": self.max_instances,
            },
            "RoutingConfig": {"RoutingStrategy": ROUTING},
        }
        volume = self.base.container_settings.get("VolumeSizeInGB")
        if volume:
            variant["VolumeSizeInGB"] = volume
        return variant

    @property
    def config_name(self) -> str:
        content = {"variant": self._variant(), "role": self.base.role, "kms": self.base.kms_key}
        return _name(self.endpoint, _digest(content))

    def _endpoint_tags(self) -> list[dict[str, str]]:
        merged = {ENDPOINT_TAG: self.endpoint, **self.base.user_tags}
        return [{"Key": key, "Value": value} for key, value in merged.items()]

    def model_tags(self) -> list[dict[str, str]]:
        ours = {tag["Key"]: tag["Value"] for tag in self.base.tags()}
        ours[COMPONENT_TAG] = self.component
        return [{"Key": key, "Value": value} for key, value in ours.items()]

    def model_request(self) -> dict[str, Any]:
        return {
            **self.base.model_request(),
            "ModelName": self.model_name,
            "Tags": self.model_tags(),
        }

    def config_request(self) -> dict[str, Any]:
        request: dict[str, Any] = {
            "EndpointConfigName": self.config_name,
            "ProductionVariants": [self._variant()],
            "ExecutionRoleArn": self.base.role,
            "Tags": self._endpoint_tags(),
        }
        if self.base.kms_key:
            request["KmsKeyId"] = self.base.kms_key
        if self.base.vpc:
            request["VpcConfig"] = self.base.vpc
        return request

    def endpoint_request(self) -> dict[str, Any]:
        return create_endpoint_request(self.endpoint, self.config_name, self._endpoint_tags())

    def specification(self) -> dict[str, Any]:
        specification: dict[str, Any] = {
            "ModelName": self.model_name,
            "ComputeResourceRequirements": self.compute,
        }
        if self.startup:
            specification["StartupParameters"] = self.startup
        return specification

    def component_request(self) -> dict[str, Any]:
        return {
            "InferenceComponentName": self.component,
            "EndpointName": self.endpoint,
            "VariantName": VARIANT,
            "Specification": self.specification(),
            "RuntimeConfig": {"CopyCount": self.copies},
            "Tags": [
                {"Key": ENDPOINT_TAG, "Value": self.endpoint},
                {"Key": COMPONENT_TAG, "Value": self.component},
            ],
        }

    def update_request(self) -> dict[str, Any]:
        """A rolling update, one copy at a time: the old copies serve until the new ones are
        healthy, and SageMaker rolls back to them if the new ones fail."""
        one_copy = {"Type": "COPY_COUNT", "Value": 1}
        return {
            "InferenceComponentName": self.component,
            "Specification": self.specification(),
            "DeploymentConfig": {
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": one_copy,
                    "WaitIntervalInSeconds": 60,
                    "RollbackMaximumBatchSize": one_copy,
                }
            },
        }

    @property
    def max_copies(self) -> int:
        return max(self.copies, self.max_instances)
