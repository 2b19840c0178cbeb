"""``status``, ``list``, ``logs`` and ``gc``: watching a live endpoint and cleaning up after it."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import click

from sagemaker_reranker.deploy.aws import leftovers, logs, metrics
from sagemaker_reranker.deploy.aws.instances import instance_vcpus
from sagemaker_reranker.deploy.aws.session import Aws
from sagemaker_reranker.deploy.aws.spec import check_endpoint_name
from sagemaker_reranker.deploy.aws.status import list_endpoints, status
from sagemaker_reranker.deploy.cli.options import BadInput, Result, aws_command, confirm
from sagemaker_reranker.deploy.redaction import shown

BUCKET_OPTION = click.option(
    "--bucket",
    help="The bucket `deploy --bucket` uploaded archives to (default: the SageMaker default "
    "bucket, sagemaker-{region}-{account}).",
)
# gc leaves alone what is younger: it may belong to a deploy or update still running.
DEFAULT_MIN_AGE = "10m"


def _seconds(option: str, text: str) -> int:
    try:
        return metrics.parse_duration(text)
    except ValueError as error:
        raise BadInput(f"{option}: {error}") from None


def _figure(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def _metric_lines(info: dict[str, Any], since: str) -> list[str]:
    figures = info["metrics"]
    model, overhead = figures["model_latency_ms"], figures["overhead_latency_ms"]
    lines = [
        f"metrics over the last {since} ({figures['window']['start']} to "
        f"{figures['window']['end']}):",
        f"  {'invocations':<28}{figures['invocations']:,}",
        f"  {'model latency p50 / p99':<28}{_figure(model['p50'])} / {_figure(model['p99'])} ms",
        f"  {'overhead latency p50 / p99':<28}{_figure(overhead['p50'])} / "
        f"{_figure(overhead['p99'])} ms",
        f"  {'4xx / 5xx errors':<28}{figures['errors_4xx']:,} / {figures['errors_5xx']:,}",
    ]
    for variant in info["variants"]:
        if variant["instance_type"]:
            desired = variant.get("desired_instances") or variant["instances"]
            lines.append(
                f"  {'instances':<28}{variant['instances']} running, {desired} desired "
                f"({variant['instance_type']})"
            )
    usage = figures["utilization_percent"]
    instance_type = next((v["instance_type"] for v in info["variants"]), None)
    for key, label in (
        ("cpu", "cpu"),
        ("memory", "memory"),
        ("gpu", "gpu"),
        ("gpu_memory", "gpu memory"),
        ("disk", "disk"),
    ):
        if usage[key] is None and key.startswith("gpu"):
            continue
        scale = ""
        if key == "cpu" and instance_type and usage[key] is not None:
            vcpus = instance_vcpus(instance_type)
            scale = f" (of {100 * vcpus}%: summed over {vcpus} vCPUs)"
        lines.append(f"  {label:<28}{_figure(usage[key], '%')}{scale}")
    return lines


def _component_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per component: status, copies, scaling, model and archive."""
    lines = []
    for row in rows:
        scaling = row["scaling"]
        scaled = f", scaling {scaling['min']}-{scaling['max']} copies" if scaling else ""
        lines.append(
            f"{'component':<18}{row['component']}: {row['status']}, copies "
            f"{row['copies_current']}/{row['copies_desired']}{scaled}, model {row['model']} "
            f"({row['model_data']})"
        )
        if row.get("failure_reason"):
            lines.append(f"{'':<18}last change failed: {row['failure_reason']}")
    return lines


@aws_command("status")
@click.argument("name")
@click.option(
    "--metrics",
    "with_metrics",
    is_flag=True,
    help="Add traffic, latency, errors and utilisation from CloudWatch (one GetMetricData).",
)
@click.option(
    "--since",
    default="1h",
    show_default=True,
    help="Window of --metrics: 90s, 10m, 1h, 2d.",
)
def status_command(aws: Aws, name: str, with_metrics: bool, since: str) -> Result:
    """Show an endpoint's state, instances, image, archive, autoscaling and alarms.

    \b
    Examples:
      sagemaker-reranker status my-reranker --json
      sagemaker-reranker status my-reranker --metrics --since 6h
    """
    check_endpoint_name(name)
    seconds = _seconds("--since", since)
    info = status(aws, name)
    if with_metrics:
        info["metrics"] = metrics.endpoint_metrics(aws, name, seconds)
    hidden = ("variants", "autoscaling", "alarms", "metrics", "components")
    shown = {key: value for key, value in info.items() if key not in hidden}
    lines = [f"{key:<18}{'-' if value is None else value}" for key, value in shown.items()]
    for variant in info["variants"]:
        where = variant["serverless"] or f"{variant['instances']} x {variant['instance_type']}"
        managed = variant.get("managed_scaling")
        if managed:
            where += f", managed {managed['MinInstanceCount']}-{managed['MaxInstanceCount']}"
        model = f"model {variant['model']}" if variant["model"] else "inference components"
        lines.append(f"{'variant':<18}{variant['variant']}: {where} ({model})")
    lines += _component_lines(info.get("components", []))
    scaling = info["autoscaling"]
    lines.append(
        f"{'autoscaling':<18}"
        + (f"{scaling['min']}-{scaling['max']} instances" if scaling else "off")
    )
    if not info["alarms"]:
        lines.append(f"{'alarms':<18}none")
    for alarm in info["alarms"]:
        lines.append(f"{'alarm':<18}{alarm['kind']:<13}{alarm['state']}")
    if with_metrics:
        lines += _metric_lines(info, since)
    return info, lines


@aws_command("list")
@click.option("--name-contains", help="Only endpoints whose name contains this.")
@click.option(
    "--leftovers",
    "show_leftovers",
    is_flag=True,
    help="Instead: models, endpoint configs, alarms and archives of this tool that nothing uses.",
)
@BUCKET_OPTION
def list_command(
    aws: Aws, name_contains: str | None, show_leftovers: bool, bucket: str | None
) -> Result:
    """List the endpoints in the region with their status, or what is left over.

    Leftovers are what an interrupted or failed deploy/update, a delete, or a delete by other
    means left behind: models, endpoint configs and alarms no endpoint uses, and archives in
    S3 no other model reads. `gc` removes them.

    \b
    Examples:
      sagemaker-reranker list --name-contains reranker
      sagemaker-reranker list --leftovers
    """
    if show_leftovers:
        now = datetime.now(timezone.utc)
        found = leftovers.find(aws, bucket)
        rows = [item.to_dict(now) for item in found]
        if not rows:
            return rows, ["no leftovers"]
        width = max(56, *(len(row["name"]) + 2 for row in rows))
        lines = [f"{'KIND':<17}{'NAME':<{width}}{'ENDPOINT':<32}AGE"]
        lines += [
            f"{row['kind']:<17}{row['name']:<{width}}{row['endpoint']:<32}"
            f"{_age(row['age_seconds'])}"
            for row in rows
        ]
        return rows, lines
    rows = list_endpoints(aws, name_contains)
    if not rows:
        return rows, ["no endpoints"]
    lines = [f"{'ENDPOINT':<40}{'STATUS':<16}CREATED"]
    lines += [f"{row['endpoint']:<40}{row['status']:<16}{row['created']}" for row in rows]
    return rows, lines


def _made_for(item: leftovers.Leftover) -> str:
    if item.kind != "archive":
        return f" (endpoint {item.endpoint})"
    return f" (read by {', '.join(item.freed_by)}, also going)" if item.freed_by else ""


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@aws_command("gc", dry_run=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--min-age",
    default=DEFAULT_MIN_AGE,
    show_default=True,
    help="Leave younger leftovers alone: they may belong to a deploy still running (0s: none).",
)
@BUCKET_OPTION
def gc_command(aws: Aws, yes: bool, min_age: str, bucket: str | None) -> Result:
    """Delete what `list --leftovers` shows: models, configs, alarms and archives nothing uses.

    An archive goes only with the left-over models that read it, never while a younger one
    still does.

    Run it with --dry-run first. Asks before deleting unless --yes; without a terminal
    (scripts, CI) --yes is required.

    \b
    Examples:
      sagemaker-reranker gc --dry-run
      sagemaker-reranker gc --yes
    """
    age = 0 if min_age.strip() in ("0", "0s") else _seconds("--min-age", min_age)
    now = datetime.now(timezone.utc)
    found = leftovers.find(aws, bucket)
    old = leftovers.collectable(found, age, now)
    young = len(found) - len(old)
    if young:
        aws.reporter.note(f"leaving {young} leftover(s) younger than {min_age} alone")
    if not old:
        return {"removed": [], "kept_recent": young}, ["nothing to collect"]
    confirm(
        f"Delete these {len(old)} leftover(s)?",
        f"refusing to delete {len(old)} leftover(s) without confirmation: pass --yes "
        "(see them first with --dry-run)",
        yes,
        aws.dry_run,
        shown=[f"  {item.kind} {item.name}{_made_for(item)}" for item in old],
    )
    removed = leftovers.collect(aws, old)
    verb = "would delete" if aws.dry_run else "deleted"
    return {"removed": removed, "kept_recent": young}, [f"{verb} {item}" for item in removed]


@aws_command("logs")
@click.argument("name")
@click.option("--since", default="10m", show_default=True, help="How far back: 90s, 10m, 1h, 2d.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    help="At most this many lines per read (the latest ones).",
)
def logs_command(aws: Aws, name: str, since: str, follow: bool, limit: int) -> Result:
    """Print the endpoint's container logs, all instances merged by time.

    Reads the CloudWatch log group /aws/sagemaker/Endpoints/NAME. With --follow it keeps
    polling for new lines; Ctrl-C ends it (exit code 0). With --json each line is a JSON
    object (one per line).

    \b
    Examples:
      sagemaker-reranker logs my-reranker --since 1h
      sagemaker-reranker logs my-reranker --follow
    """
    check_endpoint_name(name)
    start_ms = int((time.time() - _seconds("--since", since)) * 1000)
    as_json = click.get_current_context().params.get("as_json", False)

    def show(event: logs.LogEvent) -> None:
        click.echo(json.dumps(event.to_dict()) if as_json else shown(event.line()))

    def dropped(count: int) -> None:
        aws.reporter.note(f"{count} earlier line(s) not shown (at most --limit {limit} per read)")

    if not follow:
        read = logs.read(aws, name, start_ms, limit)
        if read.dropped:
            dropped(read.dropped)
        if as_json:
            return [event.to_dict() for event in read.events], []
        return None, [event.line() for event in read.events] or [f"no log lines since {since}"]
    try:
        for event in logs.follow(aws, name, start_ms, limit, dropped):
            show(event)
    except KeyboardInterrupt:
        raise click.exceptions.Exit(0) from None
    return None, []  # not reached: following ends only on Ctrl-C
