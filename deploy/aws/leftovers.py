"""What this tool made and what of it nothing uses any more: found by name and tag, removed.

Models and endpoint configs are named ``{endpoint}-{digest}`` and tagged
``sagemaker-reranker:endpoint``; alarms are named ``sagemaker-reranker-{endpoint}-{kind}`` and
carry the same tag. Archives are content-addressed, ``sagemaker-reranker/{sha256}/model.tar.gz``
in the upload bucket, and shared by every model made from the same bytes: one is left over
when no model reads it, or only models that are themselves left over.

A run records what it created (:class:`Created`) so a failure removes exactly that, and never
what an endpoint serves from — which matters when two runs race with the same inputs and so
the same names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from sagemaker_reranker.deploy.aws.alarms import ALARM_PREFIX
from sagemaker_reranker.deploy.aws.artifacts import (
    KEY_PREFIX,
    default_bucket,
    owner_args,
    parse_s3_uri,
)
from sagemaker_reranker.deploy.aws.session import Aws, is_not_found
from sagemaker_reranker.deploy.aws.spec import DIGEST_LENGTH, ENDPOINT_TAG

NAME_KEYS = {
    "model": "ModelName",
    "endpoint_config": "EndpointConfigName",
    "endpoint": "EndpointName",
}
# (kind, list operation, result key, name/arn prefix of the result's items)
LISTINGS = (
    ("endpoint_config", "list_endpoint_configs", "EndpointConfigs", "EndpointConfig"),
    ("model", "list_models", "Models", "Model"),
)
OURS_RE = re.compile(rf"-[0-9a-f]{{{DIGEST_LENGTH}}}$")
ARCHIVE_KEY_RE = re.compile(rf"^{KEY_PREFIX}/[0-9a-f]{{64}}/model\.tar\.gz$")


@dataclass
class Created:
    """What one run created, in order, so that a failure can take back exactly that."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, kind: str, name: str) -> None:
        self.items.append((kind, name))


def delete_quietly(aws: Aws, kind: str, name: str) -> bool:
    """Delete a model/config/endpoint; one already gone is fine (partly-deleted state)."""
    try:
        aws.write("sagemaker", f"delete_{kind}", **{NAME_KEYS[kind]: name})
        return True
    except ClientError as error:
        if is_not_found(error):
            return False
        raise


def _endpoint_tag(aws: Aws, arn: str, service: str = "sagemaker") -> str | None:
    if service == "sagemaker":
        tags = aws.read("sagemaker", "list_tags", ResourceArn=arn).get("Tags", [])
    else:
        tags = aws.read("cloudwatch", "list_tags_for_resource", ResourceARN=arn).get("Tags", [])
    return next((tag["Value"] for tag in tags if tag["Key"] == ENDPOINT_TAG), None)


def owned_resources(aws: Aws, name: str) -> dict[str, list[str]]:
    """Models and configs this tool made for ``name``: by name pattern, confirmed by tag."""
    prefix = re.escape(name[: 63 - DIGEST_LENGTH - 1].rstrip("-"))
    pattern = re.compile(rf"^{prefix}-[0-9a-f]{{{DIGEST_LENGTH}}}$")
    found: dict[str, list[str]] = {"endpoint_config": [], "model": []}
    for kind, operation, key, item_prefix in LISTINGS:
        paginator = aws.client("sagemaker").get_paginator(operation)
        for page in paginator.paginate(NameContains=name[:63]):
            for item in page[key]:
                item_name = item[f"{item_prefix}Name"]
                if pattern.match(item_name) and (
                    _endpoint_tag(aws, item[f"{item_prefix}Arn"]) == name
                ):
                    found[kind].append(item_name)
    return found


def config_models(aws: Aws, config_name: str) -> list[str]:
    config = aws.find("sagemaker", "describe_endpoint_config", EndpointConfigName=config_name)
    variants = (config or {}).get("ProductionVariants", [])
    return [variant.get("ModelName", "") for variant in variants]


def component_models(aws: Aws, endpoint: str) -> set[str]:
    """The models the inference components of ``endpoint`` serve from."""
    used = set()
    for page in _paginate(
        aws, "sagemaker", "list_inference_components", EndpointNameEquals=endpoint
    ):
        for item in page["InferenceComponents"]:
            name = item["InferenceComponentName"]
            answer = aws.find(
                "sagemaker", "describe_inference_component", InferenceComponentName=name
            )
            model = ((answer or {}).get("Specification") or {}).get("ModelName")
            if model:
                used.add(model)
    return used


def in_use(aws: Aws, endpoint: str) -> set[str]:
    """The configs an endpoint serves from or is moving to, and their models."""
    current = aws.find("sagemaker", "describe_endpoint", EndpointName=endpoint)
    if current is None:
        return set()
    configs = {current["EndpointConfigName"]}
    pending = current.get("PendingDeploymentSummary", {}).get("EndpointConfigName")
    if pending:
        configs.add(pending)
    used = set(configs)
    for config in configs:
        models = config_models(aws, config)
        used.update(filter(None, models))
        if "" in models:  # a variant without a model: the endpoint hosts components
            used.update(component_models(aws, endpoint))
    return used


def undo(aws: Aws, created: Created, endpoint: str) -> list[str]:
    """Delete what this run created, newest first, except what the endpoint now uses.

    A concurrent run with the same inputs may have created the same names first, or may be
    serving from the ones this run created: those stay. An endpoint this run created (and
    that failed) goes first, and with it the reason to keep its config and model.
    """
    removed = []
    if ("endpoint", endpoint) in created.items:
        if delete_quietly(aws, "endpoint", endpoint):
            removed.append(f"endpoint:{endpoint}")
        keep: set[str] = set()
    else:
        keep = in_use(aws, endpoint)
    for kind, name in reversed(created.items):
        if kind != "endpoint" and name not in keep and delete_quietly(aws, kind, name):
            removed.append(f"{kind}:{name}")
    return removed


def prune(aws: Aws, name: str, keep: set[str]) -> list[str]:
    """Delete the configs and models of ``name`` that nothing serves any more."""
    removed = []
    keep = keep | in_use(aws, name)
    owned = owned_resources(aws, name)
    for kind in ("endpoint_config", "model"):
        for item in owned[kind]:
            if item not in keep and delete_quietly(aws, kind, item):
                removed.append(f"{kind}:{item}")
    return removed


# ------------------------------------------------------------------ list --leftovers / gc


@dataclass(frozen=True)
class Leftover:
    """A tagged resource no endpoint uses."""

    kind: str  # endpoint_config, model, alarm or archive
    name: str  # an archive's s3:// URI
    endpoint: str  # the endpoint it was made for (from its tag); "-" for an archive
    created: datetime | None
    freed_by: tuple[str, ...] = ()
    """An archive's readers that are left over too: it is unused once they are gone."""

    def age_seconds(self, now: datetime) -> float | None:
        return None if self.created is None else (now - self.created).total_seconds()

    def to_dict(self, now: datetime) -> dict[str, Any]:
        age = self.age_seconds(now)
        return {
            "kind": self.kind,
            "name": self.name,
            "endpoint": self.endpoint,
            "created": self.created.isoformat() if self.created else None,
            "age_seconds": None if age is None else int(age),
        }


def _paginate(aws: Aws, service: str, operation: str, **params: Any):
    yield from aws.client(service).get_paginator(operation).paginate(**params)


def _used_everywhere(aws: Aws) -> tuple[set[str], set[str]]:
    """(names of all endpoints, configs and models any endpoint serves from or moves to)."""
    endpoints, used = set(), set()
    for page in _paginate(aws, "sagemaker", "list_endpoints"):
        for item in page["Endpoints"]:
            endpoints.add(item["EndpointName"])
            used |= in_use(aws, item["EndpointName"])
    return endpoints, used


def _created(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def _alarm_dimension(alarm: dict[str, Any], name: str) -> str | None:
    """The endpoint (or component) an alarm watches, from its metric's dimensions."""
    dimensions = list(alarm.get("Dimensions", []))
    for query in alarm.get("Metrics", []):
        dimensions += query.get("MetricStat", {}).get("Metric", {}).get("Dimensions", [])
    return next((d["Value"] for d in dimensions if d["Name"] == name), None)


def find(aws: Aws, bucket: str | None = None) -> list[Leftover]:
    """Tagged models, endpoint configs and alarms of this tool that no endpoint uses, and the
    archives in ``bucket`` (the default bucket when None) that no other model reads."""
    endpoints, used = _used_everywhere(aws)
    found: list[Leftover] = []
    for kind, operation, key, prefix in LISTINGS:
        for page in _paginate(aws, "sagemaker", operation):
            for item in page[key]:
                name = item[f"{prefix}Name"]
                if name in used or not OURS_RE.search(name):
                    continue
                owner = _endpoint_tag(aws, item[f"{prefix}Arn"])
                if owner is not None:
                    found.append(Leftover(kind, name, owner, _created(item.get("CreationTime"))))
    for page in _paginate(aws, "cloudwatch", "describe_alarms", AlarmNamePrefix=ALARM_PREFIX):
        for alarm in page.get("MetricAlarms", []):
            component = _alarm_dimension(alarm, "InferenceComponentName")
            if component is not None:
                if aws.find(
                    "sagemaker", "describe_inference_component", InferenceComponentName=component
                ):
                    continue
            elif _alarm_dimension(alarm, "EndpointName") in endpoints:
                continue
            owner = _endpoint_tag(aws, alarm["AlarmArn"], service="cloudwatch")
            if owner is not None:
                created = _created(alarm.get("AlarmConfigurationUpdatedTimestamp"))
                found.append(Leftover("alarm", alarm["AlarmName"], owner, created))
    models = {item.name for item in found if item.kind == "model"}
    found += _archives(aws, bucket or default_bucket(aws), models)
    order = {"endpoint_config": 0, "model": 1, "alarm": 2, "archive": 3}
    return sorted(found, key=lambda item: (order[item.kind], item.endpoint, item.name))


class ArchivesUnknown(Exception):
    """Some model could not be read, so no archive can be shown unused."""


def _model_archives(aws: Aws) -> dict[str, set[str]]:
    """Every model in the region by the ``s3://`` archives it reads."""
    readers: dict[str, set[str]] = {}
    for page in _paginate(aws, "sagemaker", "list_models"):
        for item in page["Models"]:
            name = item["ModelName"]
            try:
                model = aws.read("sagemaker", "describe_model", ModelName=name)
            except ClientError as error:
                if is_not_found(error):  # deleted since the listing
                    continue
                code = error.response.get("Error", {}).get("Code", "")
                raise ArchivesUnknown(f"cannot read model {name} ({code})") from None
            containers = [model.get("PrimaryContainer") or {}, *model.get("Containers", [])]
            for container in containers:
                source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
                for uri in (container.get("ModelDataUrl"), source.get("S3Uri")):
                    if uri:
                        readers.setdefault(uri, set()).add(name)
    return readers


def _archives(aws: Aws, bucket: str, leftover_models: set[str]) -> list[Leftover]:
    """Archives under ``KEY_PREFIX`` in ``bucket`` that only left-over models (or none) read.

    With any model unreadable (IAM scoped to other names) nothing is listed: an archive it
    might read cannot be shown unused.
    """
    owner = owner_args(aws, bucket)
    try:
        aws.read("s3", "head_bucket", Bucket=bucket, **owner)
    except ClientError as error:
        if is_not_found(error):
            return []
        code = error.response.get("Error", {}).get("Code", "")
        aws.reporter.note(f"archives in s3://{bucket} left out: cannot read the bucket ({code})")
        return []
    try:
        readers = _model_archives(aws)
    except ArchivesUnknown as why:
        aws.reporter.note(f"archives in s3://{bucket} left out: {why}")
        return []
    found = []
    listing = _paginate(
        aws, "s3", "list_objects_v2", Bucket=bucket, Prefix=f"{KEY_PREFIX}/", **owner
    )
    for page in listing:
        for item in page.get("Contents", []):
            uri = f"s3://{bucket}/{item['Key']}"
            models = readers.get(uri, set())
            if ARCHIVE_KEY_RE.match(item["Key"]) and models <= leftover_models:
                created = _created(item.get("LastModified"))
                found.append(Leftover("archive", uri, "-", created, tuple(sorted(models))))
    return found


def collectable(leftovers: list[Leftover], min_age: float, now: datetime) -> list[Leftover]:
    """The leftovers at least ``min_age`` seconds old; an archive only with its readers."""
    old = [item for item in leftovers if (item.age_seconds(now) or 0) >= min_age]
    going = {item.name for item in old if item.kind == "model"}
    return [item for item in old if set(item.freed_by) <= going]


def collect(aws: Aws, leftovers: list[Leftover]) -> list[str]:
    """Delete ``leftovers``: configs before the models they name, archives after the models
    that read them, alarms 100 to a call."""
    removed = []
    for item in leftovers:
        if item.kind == "archive":
            bucket, key = parse_s3_uri(item.name)
            aws.write("s3", "delete_object", Bucket=bucket, Key=key, **owner_args(aws, bucket))
            removed.append(f"archive:{item.name}")
        elif item.kind != "alarm" and delete_quietly(aws, item.kind, item.name):
            removed.append(f"{item.kind}:{item.name}")
    alarms = [item.name for item in leftovers if item.kind == "alarm"]
    for start in range(0, len(alarms), 100):  # DeleteAlarms takes at most 100 names
        aws.write("cloudwatch", "delete_alarms", AlarmNames=alarms[start : start + 100])
        removed += [f"alarm:{name}" for name in alarms[start : start + 100]]
    return removed
