"""CloudWatch alarms on an endpoint's variant: latency, server errors, client errors, saturation.

Every alarm is named ``sagemaker-reranker-{endpoint}-{kind}`` (the operator policy from
``iam-policy`` is scoped to that prefix) and tagged with the endpoint, so ``delete`` and
``gc`` find them again. Putting them is idempotent: an alarm whose description and actions
already match is left alone, so a re-run of ``deploy`` changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sagemaker_reranker.deploy.aws.instances import describe_instance, instance_vcpus
from sagemaker_reranker.deploy.aws.session import Aws, DeployError
from sagemaker_reranker.deploy.aws.spec import ENDPOINT_TAG, instance_kind
from sagemaker_reranker.deploy.platform import VARIANT

ALARM_PREFIX = "sagemaker-reranker-"
RUNTIME_NAMESPACE = "AWS/SageMaker"  # invocations, latencies, errors
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"  # CPU, memory, GPU of the instances
KINDS = ("latency-p99", "5xx-errors", "4xx-rate", "cpu-high", "gpu-high")
# A full request of the client's default blocks (256 pairs, at most 32,768 tokens on CPU)
# takes well under a second on one GPU and about 10 s on 4 CPU threads for a base-size
# cross-encoder; the alarm sits well above that and below the 60 s invocation limit.
DEFAULT_SLO_MS = {"gpu": 2_000, "cpu": 30_000, "neuron": 2_000, "serverless": 30_000}
CLIENT_ERROR_PERCENT = 5.0
UTILISATION_PERCENT = 90.0
TOPIC_RE = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}(\.fifo)?$")


@dataclass(frozen=True)
class AlarmOptions:
    """What the user asked for: alarms or not, the latency objective, where to send them."""

    enabled: bool = True
    latency_slo_ms: int | None = None
    topic: str | None = None


def alarm_name(endpoint: str, kind: str) -> str:
    return f"{ALARM_PREFIX}{endpoint}-{kind}"


def default_latency_slo_ms(instance_type: str | None) -> int:
    """The p99 model latency the alarm allows by default on ``instance_type`` (None: serverless)."""
    if instance_type is None:
        return DEFAULT_SLO_MS["serverless"]
    return DEFAULT_SLO_MS[instance_kind(instance_type)]


def check_options(options: AlarmOptions) -> None:
    """Reject a malformed topic ARN or objective before anything is created."""
    if options.topic is not None and not TOPIC_RE.match(options.topic):
        raise DeployError(
            f"--alarm-topic {options.topic!r} is not an SNS topic ARN "
            "(arn:aws:sns:REGION:ACCOUNT:NAME)"
        )
    if options.latency_slo_ms is not None and not 1 <= options.latency_slo_ms <= 60_000:
        raise DeployError(
            f"--latency-slo-ms {options.latency_slo_ms} must be between 1 and 60000 "
            "(the invocation limit is 60 s)"
        )


def _dimensions(endpoint: str) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": VARIANT}]


def _simple(
    endpoint: str,
    kind: str,
    namespace: str,
    metric: str,
    threshold: float,
    periods: tuple[int, int, int],
    description: str,
    statistic: str | None = None,
    extended: str | None = None,
) -> dict[str, Any]:
    period, evaluations, datapoints = periods
    request: dict[str, Any] = {
        "AlarmName": alarm_name(endpoint, kind),
        "AlarmDescription": f"{description} (sagemaker-reranker, endpoint {endpoint})",
        "Namespace": namespace,
        "MetricName": metric,
        "Dimensions": _dimensions(endpoint),
        "Period": period,
        "EvaluationPeriods": evaluations,
        "DatapointsToAlarm": datapoints,
        "Threshold": threshold,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
    }
    if extended:
        request["ExtendedStatistic"] = extended
    else:
        request["Statistic"] = statistic
    return request


def _client_error_rate(endpoint: str) -> dict[str, Any]:
    """4xx responses as a share of invocations over 5 minutes (metric math)."""

    def stat(query_id: str, metric: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "ReturnData": False,
            "MetricStat": {
                "Metric": {
                    "Namespace": RUNTIME_NAMESPACE,
                    "MetricName": metric,
                    "Dimensions": _dimensions(endpoint),
                },
                "Period": 300,
                "Stat": "Sum",
            },
        }

    return {
        "AlarmName": alarm_name(endpoint, "4xx-rate"),
        "AlarmDescription": (
            f"4xx responses above {CLIENT_ERROR_PERCENT:g}% of invocations over 5 minutes "
            f"(sagemaker-reranker, endpoint {endpoint})"
        ),
        "Metrics": [
            stat("errors", "Invocation4XXErrors"),
            stat("invocations", "Invocations"),
            {
                "Id": "rate",
                "Label": "4xx percent of invocations",
                "Expression": "IF(invocations > 0, 100 * errors / invocations, 0)",
                "ReturnData": True,
            },
        ],
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "Threshold": CLIENT_ERROR_PERCENT,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
    }


def wanted(endpoint: str, instance_type: str | None, options: AlarmOptions) -> list[dict[str, Any]]:
    """The ``put_metric_alarm`` requests for an endpoint on ``instance_type`` (None: serverless).

    CPU and GPU utilisation are summed over an instance's cores and GPUs (0-400 % on 4
    vCPUs), so their thresholds scale with the instance; serverless endpoints have neither.
    """
    slo = options.latency_slo_ms or default_latency_slo_ms(instance_type)
    requests = [
        _simple(
            endpoint,
            "latency-p99",
            RUNTIME_NAMESPACE,
            "ModelLatency",
            slo * 1000.0,  # ModelLatency is in microseconds
            (60, 5, 3),
            f"p99 model latency above {slo} ms in 3 of 5 minutes",
            extended="p99",
        ),
        _simple(
            endpoint,
            "5xx-errors",
            RUNTIME_NAMESPACE,
            "Invocation5XXErrors",
            0.0,
            (300, 1, 1),
            "any 5xx response in 5 minutes",
            statistic="Sum",
        ),
        _client_error_rate(endpoint),
    ]
    if instance_type is not None:
        vcpus = instance_vcpus(instance_type)
        requests.append(
            _simple(
                endpoint,
                "cpu-high",
                INSTANCE_NAMESPACE,
                "CPUUtilization",
                UTILISATION_PERCENT * vcpus,
                (300, 3, 3),
                f"CPU above {UTILISATION_PERCENT:g}% of {vcpus} vCPUs for 15 minutes",
                statistic="Average",
            )
        )
        family = describe_instance(instance_type)
        if family.gpu is not None:
            gpus = family.gpu.count(family.size)
            requests.append(
                _simple(
                    endpoint,
                    "gpu-high",
                    INSTANCE_NAMESPACE,
                    "GPUUtilization",
                    UTILISATION_PERCENT * gpus,
                    (300, 3, 3),
                    f"GPU above {UTILISATION_PERCENT:g}% of {gpus} GPU(s) for 15 minutes",
                    statistic="Average",
                )
            )
    tags = [{"Key": ENDPOINT_TAG, "Value": endpoint}]
    for request in requests:
        request["Tags"] = tags
        request["AlarmActions"] = [options.topic] if options.topic else []
        request["OKActions"] = [options.topic] if options.topic else []
    return requests


def existing(aws: Aws, endpoint: str) -> dict[str, dict[str, Any]]:
    """This tool's alarms of ``endpoint`` that exist, by name."""
    names = [alarm_name(endpoint, kind) for kind in KINDS]
    answer = aws.find("cloudwatch", "describe_alarms", AlarmNames=names) or {}
    return {alarm["AlarmName"]: alarm for alarm in answer.get("MetricAlarms", [])}


def _same(alarm: dict[str, Any], request: dict[str, Any]) -> bool:
    """The description names every setting, so it and the actions decide whether to re-put."""
    return all(
        alarm.get(key) == request.get(key)
        for key in ("AlarmDescription", "AlarmActions", "OKActions")
    )


def check_topic(aws: Aws, topic: str | None) -> None:
    """A topic that does not exist would swallow every notification: say so before deploying."""
    if topic is None or getattr(aws, "assume_missing", False):
        return
    if aws.find("sns", "get_topic_attributes", TopicArn=topic) is None:
        raise DeployError(f"SNS topic {topic} does not exist (create it, or fix --alarm-topic)")


def ensure(aws: Aws, endpoint: str, requests: list[dict[str, Any]], topic: str | None) -> list[str]:
    """Put the alarms that are missing or differ, delete ours no longer wanted; names put.

    Without a topic, an existing alarm keeps the actions it has (an ``update`` that does not
    repeat ``--alarm-topic`` keeps notifying the same topic).
    """
    current = existing(aws, endpoint)
    put = []
    for request in requests:
        alarm = current.get(request["AlarmName"])
        if alarm is not None and topic is None:
            request = {
                **request,
                "AlarmActions": alarm.get("AlarmActions", []),
                "OKActions": alarm.get("OKActions", []),
            }
        if alarm is None or not _same(alarm, request):
            aws.write("cloudwatch", "put_metric_alarm", **request)
            put.append(request["AlarmName"])
    stale = sorted(set(current) - {request["AlarmName"] for request in requests})
    if stale:
        aws.write("cloudwatch", "delete_alarms", AlarmNames=stale)
    return put


def remove(aws: Aws, endpoint: str) -> list[str]:
    """Delete this tool's alarms of ``endpoint``; the names removed."""
    names = sorted(existing(aws, endpoint))
    if names:
        aws.write("cloudwatch", "delete_alarms", AlarmNames=names)
    return names


def states(aws: Aws, endpoint: str) -> list[dict[str, Any]]:
    """Each alarm's state (OK, ALARM, INSUFFICIENT_DATA), why, and since when."""
    rows = []
    for name, alarm in sorted(existing(aws, endpoint).items()):
        updated = alarm.get("StateUpdatedTimestamp")
        rows.append(
            {
                "alarm": name,
                "kind": name.removeprefix(f"{ALARM_PREFIX}{endpoint}-"),
                "state": alarm.get("StateValue"),
                "reason": alarm.get("StateReason"),
                "since": updated.isoformat() if hasattr(updated, "isoformat") else updated,
                "actions": alarm.get("AlarmActions", []),
            }
        )
    return rows
