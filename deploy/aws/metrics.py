"""An endpoint's traffic, latency, errors and instance load over a window, in one request.

One ``GetMetricData`` call asks for every figure with the window as its period, so each
comes back as a single datapoint over the whole window, percentiles included (percentiles
of several datapoints cannot be combined afterwards).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from sagemaker_reranker.deploy.aws.alarms import INSTANCE_NAMESPACE, RUNTIME_NAMESPACE
from sagemaker_reranker.deploy.aws.session import Aws, DeployError
from sagemaker_reranker.deploy.platform import VARIANT

DURATION_RE = re.compile(r"^(\d+)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# CloudWatch keeps 1-hour datapoints for 455 days; nothing older can be asked for.
MAX_WINDOW = 455 * 86400

# (id, namespace, metric, statistic, scale): latencies are reported in microseconds.
QUERIES = (
    ("invocations", RUNTIME_NAMESPACE, "Invocations", "Sum", 1.0),
    ("model_p50", RUNTIME_NAMESPACE, "ModelLatency", "p50", 1e-3),
    ("model_p99", RUNTIME_NAMESPACE, "ModelLatency", "p99", 1e-3),
    ("overhead_p50", RUNTIME_NAMESPACE, "OverheadLatency", "p50", 1e-3),
    ("overhead_p99", RUNTIME_NAMESPACE, "OverheadLatency", "p99", 1e-3),
    ("errors_4xx", RUNTIME_NAMESPACE, "Invocation4XXErrors", "Sum", 1.0),
    ("errors_5xx", RUNTIME_NAMESPACE, "Invocation5XXErrors", "Sum", 1.0),
    ("cpu", INSTANCE_NAMESPACE, "CPUUtilization", "Average", 1.0),
    ("memory", INSTANCE_NAMESPACE, "MemoryUtilization", "Average", 1.0),
    ("gpu", INSTANCE_NAMESPACE, "GPUUtilization", "Average", 1.0),
    ("gpu_memory", INSTANCE_NAMESPACE, "GPUMemoryUtilization", "Average", 1.0),
    ("disk", INSTANCE_NAMESPACE, "DiskUtilization", "Average", 1.0),
)
UTILISATION = ("cpu", "memory", "gpu", "gpu_memory", "disk")


def parse_duration(text: str) -> int:
    """``90s``, ``10m``, ``1h``, ``2d`` in seconds."""
    match = DURATION_RE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 10m, 1h or 2d")
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds > MAX_WINDOW:
        raise ValueError(f"{text!r} reaches back further than CloudWatch keeps metrics (455d)")
    return seconds


def window(seconds: int, now: datetime | None = None) -> tuple[datetime, datetime, int]:
    """(start, end, period): whole minutes ending at the next minute, period = the window."""
    now = now or datetime.now(timezone.utc)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    period = max(60, -(-seconds // 60) * 60)
    return end - timedelta(seconds=period), end, period


def _query(endpoint: str, spec: tuple[str, str, str, str, float], period: int) -> dict[str, Any]:
    query_id, namespace, metric, stat, _ = spec
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "EndpointName", "Value": endpoint},
                    {"Name": "VariantName", "Value": VARIANT},
                ],
            },
            "Period": period,
            "Stat": stat,
        },
    }


def _value(values: list[float], stat: str) -> float | None:
    """One figure from the datapoints CloudWatch returned (one, unless the window straddles
    its alignment): sums add; for the rest the highest, the conservative reading."""
    if not values:
        return None
    return float(sum(values)) if stat == "Sum" else float(max(values))


def endpoint_metrics(aws: Aws, endpoint: str, seconds: int) -> dict[str, Any]:
    """Invocations, p50/p99 model and overhead latency (ms), 4xx/5xx counts and mean
    utilisation (%, summed over cores or GPUs as CloudWatch reports it) over ``seconds``."""
    start, end, period = window(seconds)
    answer = aws.read(
        "cloudwatch",
        "get_metric_data",
        MetricDataQueries=[_query(endpoint, spec, period) for spec in QUERIES],
        StartTime=start,
        EndTime=end,
        ScanBy="TimestampDescending",
    )
    results = {item["Id"]: item for item in answer.get("MetricDataResults", [])}
    figures: dict[str, float | None] = {}
    for query_id, _, _, stat, scale in QUERIES:
        item = results.get(query_id, {})
        if item.get("StatusCode") not in (None, "Complete"):
            raise DeployError(
                f"CloudWatch returned {item['StatusCode']} for {query_id}: "
                f"{'; '.join(m.get('Value', '') for m in item.get('Messages', []))}"
            )
        value = _value(item.get("Values", []), stat)
        figures[query_id] = None if value is None else round(value * scale, 3)
    return {
        "window": {"start": start.isoformat(), "end": end.isoformat(), "seconds": period},
        "invocations": int(figures["invocations"] or 0),
        "model_latency_ms": {"p50": figures["model_p50"], "p99": figures["model_p99"]},
        "overhead_latency_ms": {"p50": figures["overhead_p50"], "p99": figures["overhead_p99"]},
        "errors_4xx": int(figures["errors_4xx"] or 0),
        "errors_5xx": int(figures["errors_5xx"] or 0),
        "utilization_percent": {key: figures[key] for key in UTILISATION},
    }
