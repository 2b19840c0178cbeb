"""Scaling an inference component's copies with Application Auto Scaling, down to zero.

The copy count is the scalable target (``inference-component/NAME``,
``sagemaker:inference-component:DesiredCopyCount``), with target tracking on invocations per
copy. Target tracking cannot scale out from zero copies, so a minimum of 0 also gets a step
policy that adds one copy, fired by an alarm on ``NoCapacityInvocationFailures`` (the calls
that found no copy): AWS's "Scale an endpoint to zero instances". The endpoint's managed
instance scaling then starts or releases the instances the copies need.
"""

from __future__ import annotations

from typing import Any

from sagemaker_reranker.deploy.aws.alarms import ALARM_PREFIX
from sagemaker_reranker.deploy.aws.autoscaling import SCALING, SERVICE_NAMESPACE
from sagemaker_reranker.deploy.aws.session import Aws
from sagemaker_reranker.deploy.aws.spec import ENDPOINT_TAG, TAG_PREFIX

COMPONENT_TAG = TAG_PREFIX + "component"
COPY_COUNT_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
COPY_METRIC = "SageMakerInferenceComponentInvocationsPerCopy"
NO_CAPACITY_METRIC = "NoCapacityInvocationFailures"
# Invocations per copy per minute above which target tracking adds a copy (as `autoscale`).
TARGET_INVOCATIONS_PER_COPY = 100.0


def resource_id(component: str) -> str:
    return f"inference-component/{component}"


def target_policy_name(component: str) -> str:
    return f"{component}-invocations-per-copy"


def step_policy_name(component: str) -> str:
    return f"{component}-scale-from-zero"


def alarm_name(endpoint: str, component: str) -> str:
    """Under the endpoint's alarm prefix, which the operator policy is scoped to."""
    return f"{ALARM_PREFIX}{endpoint}-{component}-no-capacity"


def _target(component: str) -> dict[str, str]:
    return {
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": resource_id(component),
        "ScalableDimension": COPY_COUNT_DIMENSION,
    }


def _tags(endpoint: str, component: str) -> dict[str, str]:
    return {ENDPOINT_TAG: endpoint, COMPONENT_TAG: component}


def register_request(endpoint: str, component: str, minimum: int, maximum: int) -> dict[str, Any]:
    return {
        **_target(component),
        "MinCapacity": minimum,
        "MaxCapacity": maximum,
        "Tags": _tags(endpoint, component),
    }


def target_tracking_request(component: str, target: float) -> dict[str, Any]:
    return {
        **_target(component),
        "PolicyName": target_policy_name(component),
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(target),
            "PredefinedMetricSpecification": {"PredefinedMetricType": COPY_METRIC},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    }


def step_request(component: str) -> dict[str, Any]:
    """One copy as soon as a call finds none."""
    return {
        **_target(component),
        "PolicyName": step_policy_name(component),
        "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": {
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Maximum",
            "Cooldown": 60,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
    }


def alarm_request(endpoint: str, component: str, policy_arn: str) -> dict[str, Any]:
    return {
        "AlarmName": alarm_name(endpoint, component),
        "AlarmDescription": (
            f"a call found no copy of component {component}: add one (sagemaker-reranker, "
            f"endpoint {endpoint})"
        ),
        "Namespace": "AWS/SageMaker",
        "MetricName": NO_CAPACITY_METRIC,
        "Dimensions": [{"Name": "InferenceComponentName", "Value": component}],
        "Statistic": "Maximum",
        "Period": 30,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "missing",
        "AlarmActions": [policy_arn],
        "Tags": [{"Key": key, "Value": value} for key, value in _tags(endpoint, component).items()],
    }


def current(aws: Aws, component: str) -> dict[str, Any] | None:
    """The component's scalable target (min, max) and its policies' names; None if none."""
    targets = aws.read(SCALING, "describe_scalable_targets", **_plural(_target(component)))[
        "ScalableTargets"
    ]
    if not targets:
        return None
    policies = aws.read(SCALING, "describe_scaling_policies", **_target(component))
    return {
        "min": targets[0]["MinCapacity"],
        "max": targets[0]["MaxCapacity"],
        "policies": sorted(policy["PolicyName"] for policy in policies["ScalingPolicies"]),
    }


def _plural(target: dict[str, str]) -> dict[str, Any]:
    """DescribeScalableTargets takes a list of resource ids."""
    resource = target.pop("ResourceId")
    return {**target, "ResourceIds": [resource]}


def _alarm(aws: Aws, endpoint: str, component: str) -> dict[str, Any] | None:
    name = alarm_name(endpoint, component)
    answer = aws.find("cloudwatch", "describe_alarms", AlarmNames=[name])
    alarms = (answer or {}).get("MetricAlarms", [])
    return alarms[0] if alarms else None


def ensure(
    aws: Aws,
    endpoint: str,
    component: str,
    minimum: int,
    maximum: int,
    target: float = TARGET_INVOCATIONS_PER_COPY,
) -> list[str]:
    """Target, target tracking and, for a minimum of 0, the step policy and its alarm; what
    already matches is left alone (so a re-run changes nothing). The names of what was put."""
    found = None if aws.assume_missing else current(aws, component)
    wanted = {target_policy_name(component)}
    if minimum == 0:
        wanted.add(step_policy_name(component))
    alarm = _alarm(aws, endpoint, component)
    if (
        found
        and (found["min"], found["max"]) == (minimum, maximum)
        and set(found["policies"]) == wanted
        and (alarm is not None) == (minimum == 0)
    ):
        return []
    requests = [
        register_request(endpoint, component, minimum, maximum),
        target_tracking_request(component, target),
    ]
    if minimum == 0:
        requests.append(step_request(component))
    put, policy_arn = [], f"<ARN of scaling policy {step_policy_name(component)}>"
    for params in requests:
        operation = "put_scaling_policy" if "PolicyType" in params else "register_scalable_target"
        answer = aws.write(SCALING, operation, **params)
        put.append(params.get("PolicyName") or params["ResourceId"])
        if answer and params.get("PolicyType") == "StepScaling":
            policy_arn = answer["PolicyARN"]
    if found and minimum > 0 and step_policy_name(component) in found["policies"]:
        aws.write(
            SCALING,
            "delete_scaling_policy",
            PolicyName=step_policy_name(component),
            **_target(component),
        )
    if minimum == 0:
        request = alarm_request(endpoint, component, policy_arn)
        aws.write("cloudwatch", "put_metric_alarm", **request)
        put.append(request["AlarmName"])
    elif alarm is not None:
        aws.write("cloudwatch", "delete_alarms", AlarmNames=[alarm_name(endpoint, component)])
    return put


def remove(aws: Aws, endpoint: str, component: str) -> list[str]:
    """Policies, then the target (the order the service requires), then the alarm."""
    removed = []
    found = current(aws, component)
    if found:
        for policy in found["policies"]:
            aws.write(SCALING, "delete_scaling_policy", PolicyName=policy, **_target(component))
        aws.write(SCALING, "deregister_scalable_target", **_target(component))
        removed.append(f"scalable-target:{resource_id(component)}")
    if _alarm(aws, endpoint, component):
        aws.write("cloudwatch", "delete_alarms", AlarmNames=[alarm_name(endpoint, component)])
        removed.append(f"alarm:{alarm_name(endpoint, component)}")
    return removed
