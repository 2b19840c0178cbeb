"""Application Auto Scaling for endpoint variants: target tracking on invocations per instance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sagemaker_reranker.deploy.aws.session import Aws
from sagemaker_reranker.deploy.aws.spec import ENDPOINT_TAG

SCALING = "application-autoscaling"  # the boto3 client
SERVICE_NAMESPACE = "sagemaker"
INSTANCE_COUNT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def policy_name(endpoint: str, variant: str) -> str:
    return f"{endpoint}-{variant}-invocations"


@dataclass
class Scaling:
    """A registered scalable target and its policies, kept to restore them after an update."""

    endpoint: str
    variant: str
    min_capacity: int
    max_capacity: int
    policies: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "min": self.min_capacity,
            "max": self.max_capacity,
            "policies": [policy["PolicyName"] for policy in self.policies],
        }


def current(aws: Aws, endpoint: str, variant: str) -> Scaling | None:
    rid = resource_id(endpoint, variant)
    targets = aws.read(
        SCALING,
        "describe_scalable_targets",
        ServiceNamespace=SERVICE_NAMESPACE,
        ResourceIds=[rid],
        ScalableDimension=INSTANCE_COUNT_DIMENSION,
    )["ScalableTargets"]
    if not targets:
        return None
    policies = aws.read(
        SCALING,
        "describe_scaling_policies",
        ServiceNamespace=SERVICE_NAMESPACE,
        ResourceId=rid,
        ScalableDimension=INSTANCE_COUNT_DIMENSION,
    )["ScalingPolicies"]
    return Scaling(
        endpoint, variant, targets[0]["MinCapacity"], targets[0]["MaxCapacity"], policies
    )


def register(aws: Aws, endpoint: str, variant: str, minimum: int, maximum: int) -> None:
    aws.write(
        SCALING,
        "register_scalable_target",
        ServiceNamespace=SERVICE_NAMESPACE,
        ResourceId=resource_id(endpoint, variant),
        ScalableDimension=INSTANCE_COUNT_DIMENSION,
        MinCapacity=minimum,
        MaxCapacity=maximum,
        Tags={ENDPOINT_TAG: endpoint},  # applied when the target is first registered
    )


def put_target_tracking(aws: Aws, endpoint: str, variant: str, target: float) -> None:
    aws.write(
        SCALING,
        "put_scaling_policy",
        PolicyName=policy_name(endpoint, variant),
        ServiceNamespace=SERVICE_NAMESPACE,
        ResourceId=resource_id(endpoint, variant),
        ScalableDimension=INSTANCE_COUNT_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(target),
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    )


def remove(aws: Aws, scaling: Scaling) -> None:
    """Delete the policies, then the scalable target (the order the service requires)."""
    rid = resource_id(scaling.endpoint, scaling.variant)
    for policy in scaling.policies:
        aws.write(
            SCALING,
            "delete_scaling_policy",
            PolicyName=policy["PolicyName"],
            ServiceNamespace=SERVICE_NAMESPACE,
            ResourceId=rid,
            ScalableDimension=INSTANCE_COUNT_DIMENSION,
        )
    aws.write(
        SCALING,
        "deregister_scalable_target",
        ServiceNamespace=SERVICE_NAMESPACE,
        ResourceId=rid,
        ScalableDimension=INSTANCE_COUNT_DIMENSION,
    )


def restore(aws: Aws, scaling: Scaling) -> None:
    """Re-register a target removed for an instance-type change, with the same policies."""
    register(aws, scaling.endpoint, scaling.variant, scaling.min_capacity, scaling.max_capacity)
    for policy in scaling.policies:
        params = {
            key: policy[key]
            for key in (
                "PolicyName",
                "PolicyType",
                "TargetTrackingScalingPolicyConfiguration",
                "StepScalingPolicyConfiguration",
            )
            if key in policy
        }
        aws.write(
            SCALING,
            "put_scaling_policy",
            ServiceNamespace=SERVICE_NAMESPACE,
            ResourceId=resource_id(scaling.endpoint, scaling.variant),
            ScalableDimension=INSTANCE_COUNT_DIMENSION,
            **params,
        )
