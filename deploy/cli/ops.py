"""``invoke``, ``autoscale`` and ``batch``: using and sizing a deployed reranker."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from sagemaker_reranker.deploy.aws import autoscaling, component_scaling, components
from sagemaker_reranker.deploy.aws.artifacts import parse_s3_uri
from sagemaker_reranker.deploy.aws.session import Aws, DeployError, wait_until_settled
from sagemaker_reranker.deploy.aws.spec import DEFAULT_INSTANCE, check_endpoint_name, instance_kind
from sagemaker_reranker.deploy.cli.options import BadInput, Result, aws_command
from sagemaker_reranker.deploy.platform import VARIANT

PREVIEW_CHARS = 80


def read_documents(docs_file: Path | None, docs: tuple[str, ...]) -> list[str]:
    """``--doc`` texts plus ``--docs FILE``: a JSON list of strings, else one per non-empty line."""
    documents = list(docs)
    if docs_file is not None:
        try:
            text = docs_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise BadInput(f"cannot read --docs {docs_file}: {error}") from None
        if text.lstrip().startswith("["):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as error:
                raise BadInput(f"--docs {docs_file} is not valid JSON: {error}") from None
            if not isinstance(loaded, list) or not all(isinstance(d, str) for d in loaded):
                raise BadInput(f"--docs {docs_file} must be a JSON list of strings")
            documents.extend(loaded)
        else:
            documents.extend(line for line in text.splitlines() if line.strip())
    if not documents:
        raise BadInput("no documents: pass --docs FILE or --doc TEXT (repeatable)")
    return documents


def _preview(document: str) -> str:
    first = (document.strip().splitlines() or [""])[0]
    return first if len(first) <= PREVIEW_CHARS else first[: PREVIEW_CHARS - 1] + "…"


@aws_command("invoke")
@click.argument("name")
@click.option("--query", "-q", required=True, help="The search query.")
@click.option(
    "--docs",
    "docs_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File of documents: a JSON list of strings, or one document per line.",
)
@click.option("--doc", "docs", multiple=True, help="A document (repeat).")
@click.option("--top-n", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--instruction",
    help="Task instruction for instruction-aware (LLM) rerankers; encoders ignore it.",
)
@click.option(
    "--endpoint-url",
    help="Runtime URL: https, or http://127.0.0.1:PORT for `sagemaker-reranker serve` "
    "(then no AWS credentials or region are needed).",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Allow an http --endpoint-url to a host that is not loopback (sent unencrypted).",
)
@click.option(
    "--component",
    help="The inference component to call, on an endpoint that hosts components.",
)
def invoke_command(
    aws: Aws,
    name: str,
    query: str,
    docs_file: Path | None,
    docs: tuple[str, ...],
    top_n: int,
    instruction: str | None,
    endpoint_url: str | None,
    insecure_http: bool,
    component: str | None,
) -> Result:
    """Rerank documents for a query with a deployed (or local) endpoint.

    \b
    Examples:
      sagemaker-reranker invoke my-reranker -q "What is the plan for the economy?" \\
          --docs passages.txt --top-n 3
      sagemaker-reranker invoke local-reranker -q "capital of France" \\
          --doc "Paris is the capital of France." --doc "Berlin is in Germany." \\
          --endpoint-url http://127.0.0.1:8080
      sagemaker-reranker invoke shared --component bge -q "capital of France" \\
          --doc "Paris is the capital of France."
    """
    from sagemaker_reranker.client import RerankerEndpointError, SagemakerEndpointCrossEncoder
    from sagemaker_reranker.client.runtime import EndpointURLError, runtime_target

    documents = read_documents(docs_file, docs)
    try:
        target = runtime_target(endpoint_url, insecure_http)
    except EndpointURLError as error:
        raise BadInput(error.worded("--endpoint-url", "--insecure-http")) from None
    try:
        model = SagemakerEndpointCrossEncoder(
            endpoint_name=name,
            # A local endpoint needs no region (the client uses a placeholder); AWS does.
            region_name=aws.region_option if target.local else aws.region,
            credentials_profile_name=aws.profile,
            endpoint_url=endpoint_url,
            allow_insecure_http=insecure_http,
            instruction=instruction,
            inference_component_name=component,
        )
        try:
            ranked = model.rerank(query, documents, top_n)
        finally:
            model.close()
    except (RerankerEndpointError, ValueError) as error:
        raise DeployError(str(error)) from None
    rows = [
        {"rank": rank, "index": index, "score": score, "document": documents[index]}
        for rank, (index, score) in enumerate(ranked, start=1)
    ]
    lines = [f"{'rank':>4}  {'score':>9}  document"]
    lines += [f"{r['rank']:>4}  {r['score']:>9.4f}  {_preview(r['document'])}" for r in rows]
    return rows, lines


def _check_scalable(aws: Aws, name: str, variant: str) -> None:
    endpoint = aws.find("sagemaker", "describe_endpoint", EndpointName=name)
    if endpoint is None:
        raise DeployError(f"no endpoint {name} in {aws.region}")
    config = aws.read(
        "sagemaker", "describe_endpoint_config", EndpointConfigName=endpoint["EndpointConfigName"]
    )
    variants = {v["VariantName"]: v for v in config["ProductionVariants"]}
    if variant not in variants:
        raise DeployError(f"endpoint {name} has no variant {variant} (has {', '.join(variants)})")
    if "ServerlessConfig" in variants[variant]:
        raise DeployError(
            f"{name} is serverless: it scales by itself (set --serverless-concurrency instead)"
        )


@aws_command("autoscale", dry_run=True)
@click.argument("name")
@click.option(
    "--min",
    "minimum",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Fewest instances (copies with --component; 0 only there).",
)
@click.option("--max", "maximum", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--target-invocations",
    type=click.FloatRange(min=1),
    default=100,
    show_default=True,
    help="Target invocations per instance (per copy with --component) per minute.",
)
@click.option("--variant", default=VARIANT, show_default=True)
@click.option(
    "--component",
    help="Scale this inference component's copies instead (down to 0 with --min 0: the "
    "next call then starts one).",
)
@click.option("--off", is_flag=True, help="Remove the scaling policy and the scalable target.")
def autoscale_command(
    aws: Aws,
    name: str,
    minimum: int,
    maximum: int,
    target_invocations: float,
    variant: str,
    component: str | None,
    off: bool,
) -> Result:
    """Scale an endpoint's instances on invocations per instance (target tracking).

    \b
    Examples:
      sagemaker-reranker autoscale my-reranker --min 1 --max 4 --target-invocations 100
      sagemaker-reranker autoscale my-reranker --off
      sagemaker-reranker autoscale shared --component bge --min 0 --max 2
    """
    check_endpoint_name(name)
    if component:
        return _autoscale_component(aws, name, component, minimum, maximum, target_invocations, off)
    if minimum == 0:
        raise BadInput(
            "--min 0 goes with --component: only inference components scale to zero "
            "(docs/deploy.md)"
        )
    if off:
        scaling = autoscaling.current(aws, name, variant)
        if scaling is None:
            return {"endpoint": name, "autoscaling": None}, [f"{name}: no autoscaling to remove"]
        autoscaling.remove(aws, scaling)
        done = "would remove autoscaling" if aws.dry_run else "autoscaling removed"
        return {"endpoint": name, "autoscaling": None}, [f"{name}: {done}"]
    if minimum > maximum:
        raise BadInput(f"--min {minimum} is above --max {maximum}")
    _check_scalable(aws, name, variant)
    autoscaling.register(aws, name, variant, minimum, maximum)
    autoscaling.put_target_tracking(aws, name, variant, target_invocations)
    data = {
        "endpoint": name,
        "autoscaling": {"variant": variant, "min": minimum, "max": maximum},
        "target_invocations_per_instance": target_invocations,
    }
    line = (
        f"{name}/{variant}: {'would scale to ' if aws.dry_run else ''}{minimum}-{maximum} "
        f"instances, target {target_invocations:g} invocations per instance per minute"
    )
    return data, [line]


def _autoscale_component(
    aws: Aws, name: str, component: str, minimum: int, maximum: int, target: float, off: bool
) -> Result:
    found = components.describe(aws, component)
    if found is None or found["EndpointName"] != name:
        raise DeployError(f"no component {component} on endpoint {name} in {aws.region}")
    data: dict[str, Any] = {"endpoint": name, "component": component, "autoscaling": None}
    if off:
        removed = component_scaling.remove(aws, name, component)
        done = "would remove" if aws.dry_run else "removed"
        return {**data, "removed": removed}, [
            f"{component}: {done} {', '.join(removed) or 'nothing'}"
        ]
    if minimum > maximum:
        raise DeployError(f"--min {minimum} is above --max {maximum}")
    put = component_scaling.ensure(aws, name, component, minimum, maximum, target)
    data["autoscaling"] = {"min": minimum, "max": maximum, "put": put}
    line = (
        f"{name}/{component}: {'would scale to ' if aws.dry_run else ''}{minimum}-{maximum} "
        f"copies, target {target:g} invocations per copy per minute"
        + ("" if put else " (unchanged)")
    )
    return data, [line]


def transform_request(
    job_name: str,
    model_name: str,
    input_uri: str,
    output_uri: str,
    instance_type: str,
    instance_count: int,
) -> dict[str, Any]:
    """One JSON request per input line (SingleRecord: MultiRecord would pack several lines)."""
    return {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": 6,
        "MaxConcurrentTransforms": 1,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": "application/json",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": output_uri,
            "Accept": "application/json",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
    }


@aws_command("batch", dry_run=True)
@click.option("--model-name", required=True, help="A SageMaker model (see `status NAME`).")
@click.option("--input", "input_uri", required=True, help="s3:// prefix of JSON-lines files.")
@click.option("--output", "output_uri", required=True, help="s3:// prefix for the results.")
@click.option("--instance-type", default=DEFAULT_INSTANCE, show_default=True)
@click.option("--instance-count", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--job-name", help="Default: MODEL-YYYYmmdd-HHMMSS.")
@click.option("--no-wait", is_flag=True, help="Return once the job has started.")
@click.option("--timeout", type=int, default=6 * 3600, show_default=True, help="Seconds to wait.")
def batch_command(
    aws: Aws,
    model_name: str,
    input_uri: str,
    output_uri: str,
    instance_type: str,
    instance_count: int,
    job_name: str | None,
    no_wait: bool,
    timeout: int,
) -> Result:
    """Score a corpus too large for one endpoint with a Batch Transform job.

    Each input line is one request body, e.g. {"query": "...", "texts": ["...", "..."]};
    each output line holds its {"scores": [...]}, in the same order.

    \b
    Example:
      sagemaker-reranker batch --model-name my-reranker-3655e5297b \\
          --input s3://my-bucket/rerank/in/ --output s3://my-bucket/rerank/out/
    """
    for option, uri in (("--input", input_uri), ("--output", output_uri)):
        try:
            parse_s3_uri(uri)
        except DeployError as error:
            raise BadInput(f"{option}: {error}") from None
    instance_kind(instance_type)
    if aws.find("sagemaker", "describe_model", ModelName=model_name) is None:
        raise DeployError(
            f"no model {model_name} in {aws.region}; `status NAME` shows an endpoint's model"
        )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    job = job_name or f"{model_name[:46].rstrip('-')}-{stamp}"
    request = transform_request(
        job, model_name, input_uri, output_uri, instance_type, instance_count
    )
    aws.write("sagemaker", "create_transform_job", **request)
    data = {"job": job, "model": model_name, "output": output_uri, "status": "InProgress"}
    if aws.dry_run:
        return data, [f"transform job {job}: would start; output in {output_uri}"]
    if no_wait:
        return data, [f"transform job {job}: started; output in {output_uri}"]
    final = wait_until_settled(
        lambda: aws.read("sagemaker", "describe_transform_job", TransformJobName=job),
        "TransformJobStatus",
        f"transform job {job}",
        timeout,
        f"follow it with: aws sagemaker describe-transform-job --transform-job-name {job}",
        aws.reporter,
    )
    status = final["TransformJobStatus"]
    if status != "Completed":
        reason = final.get("FailureReason") or "no reason given"
        raise DeployError(f"transform job {job} {status}: {reason}")
    return {**data, "status": status}, [f"transform job {job}: Completed; output in {output_uri}"]
