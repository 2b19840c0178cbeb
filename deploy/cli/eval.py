"""``sagemaker-reranker eval``: quality, latency and cost of rerankers on labelled data."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from sagemaker_reranker.deploy.cli.options import BadInput, server_option
from sagemaker_reranker.evaluation.errors import EvalInputError, EvalRunError
from sagemaker_reranker.evaluation.metrics import DEFAULT_METRICS
from sagemaker_reranker.evaluation.runner import DEFAULT_TOP_K, EvalConfig, run_eval
from sagemaker_reranker.evaluation.systems import (
    SYSTEM_KINDS,
    ClientSettings,
    SystemSpec,
    default_label,
    with_unique_labels,
)

# Each system kind is the option that names one (--endpoint-url: kind endpoint-url), keyed
# by click's parameter name.
SYSTEM_OPTIONS = {kind.replace("-", "_"): kind for kind in SYSTEM_KINDS}


class _SystemsInOrder(click.Command):
    """Records the order in which system options appear, so --label/--price-per-hour values
    pair with systems as written (click groups a repeated option's values per option)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        parser = self.make_parser(ctx)
        _, _, order = parser.parse_args(args=list(args))
        ctx.meta["system_order"] = [p.name for p in order if p.name in SYSTEM_OPTIONS]
        return super().parse_args(ctx, args)


def _specs(ctx: click.Context, params: dict) -> list[SystemSpec]:
    values = {name: list(params[name]) for name in SYSTEM_OPTIONS}
    ordered = [(SYSTEM_OPTIONS[n], values[n].pop(0)) for n in ctx.meta.get("system_order", [])]
    labels = _per_system("--label", params["label"], len(ordered))
    prices = _per_system("--price-per-hour", params["price_per_hour"], len(ordered))
    instances = _per_system("--instances", params["instances"], len(ordered))
    components = _per_system("--component", params["component"], len(ordered))
    specs = []
    for index, (kind, target) in enumerate(ordered):
        component = components[index] if components else None
        if component and kind == "model-data":
            raise BadInput(
                "--component names a component of an --endpoint or --endpoint-url; "
                f"--model-data {target} is served on its own"
            )
        label = labels[index] if labels else default_label(kind, target, params["endpoint_name"])
        label = f"{label}/{component}" if component and not labels else label
        specs.append(
            SystemSpec(
                kind,
                target,
                label,
                endpoint_name=params["endpoint_name"],
                price_per_hour=prices[index] if prices else None,
                instances=instances[index] if instances else 1,
                component=component,
            )
        )
    return with_unique_labels(specs)


def _per_system(option: str, values: tuple, systems: int) -> list:
    """One value for every system, one per system in order, or none."""
    if not values:
        return []
    if len(values) == 1 and option != "--label":
        return list(values) * systems
    if len(values) != systems:
        raise BadInput(
            f"{option}: give it once per system ({systems}, in the order of "
            f"--model-data/--endpoint/--endpoint-url), got {len(values)}"
            + ("" if option == "--label" else ", or once for all")
        )
    return list(values)


@contextmanager
def _bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    with click.progressbar(
        length=total, label=label, file=sys.stderr, show_eta=True, show_pos=True
    ) as bar:
        yield bar.update


@contextmanager
def _no_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    yield lambda _: None


@click.command("eval", cls=_SystemsInOrder)
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Labelled data in the BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.",
)
@click.option("--split", default="test", show_default=True, help="The qrels file to use.")
@click.option(
    "--candidates",
    type=click.Path(path_type=Path),
    help="TREC run file (qid Q0 docid rank score tag) with the first stage's candidates; "
    "without it, BM25 over corpus.jsonl finds them.",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=DEFAULT_TOP_K,
    show_default=True,
    help="Candidates per query to rerank.",
)
@click.option(
    "--model-data",
    multiple=True,
    help="model.tar.gz, served by local mode for the run (repeatable).",
)
@click.option("--endpoint", multiple=True, help="SageMaker endpoint name on AWS (repeatable).")
@click.option(
    "--endpoint-url",
    multiple=True,
    help="Runtime-compatible server, e.g. http://127.0.0.1:8080 (repeatable); a loopback "
    "URL needs no AWS account.",
)
@click.option(
    "--endpoint-name",
    default="local-reranker",
    show_default=True,
    help="The endpoint name an --endpoint-url server serves.",
)
@click.option(
    "--component",
    multiple=True,
    help="The inference component to call on an --endpoint/--endpoint-url that hosts "
    "components (once for all, or once per system).",
)
@click.option("--label", multiple=True, help="Names for the systems, one each, in order.")
@server_option("Local mode's model container for --model-data.")
@click.option("--instruction", help="Task instruction for instruction-aware rerankers.")
@click.option(
    "--metrics",
    multiple=True,
    default=[",".join(DEFAULT_METRICS)],
    show_default=True,
    help="ir-measures names, comma-separated or repeated (nDCG@10, RR@10, R@100, P@5, AP...).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Queries in flight at once (the client's max_concurrency).",
)
@click.option(
    "--price-per-hour",
    type=click.FloatRange(min=0),
    multiple=True,
    help="USD per instance hour, for the cost per 1,000 queries (once, or once per system).",
)
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    multiple=True,
    help="Instances behind the endpoint (once, or once per system; default 1).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write the reranked runs, report.md/.json and the plot here; a rerun resumes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, nothing else.")
@click.option("--region", help="AWS region for --endpoint (default: as boto3 finds it).")
@click.option("--profile", help="AWS profile for --endpoint.")
@click.pass_context
def eval_command(ctx: click.Context, **params) -> None:
    """Measure rerankers on labelled data: quality against the first stage, latency, cost.

    \b
    Examples:
      sagemaker-reranker eval --data my-beir-set --model-data model.tar.gz --out eval-out
      sagemaker-reranker eval --data my-beir-set --candidates bm25.trec --top-k 50 \\
          --model-data minilm.tar.gz --model-data bge.tar.gz --label minilm --label bge
      sagemaker-reranker eval --data my-beir-set --endpoint my-reranker \\
          --price-per-hour 1.41 --json
      sagemaker-reranker eval --data my-beir-set --endpoint shared --component bge
    """
    as_json = params["as_json"]
    specs = _specs(ctx, params)
    config = EvalConfig(
        data=params["data"],
        split=params["split"],
        candidates=params["candidates"],
        top_k=params["top_k"],
        metrics=tuple(params["metrics"]),
        systems=specs,
        settings=ClientSettings(
            region=params["region"],
            profile=params["profile"],
            server=params["server"],
            max_concurrency=params["max_concurrency"],
            instruction=params["instruction"],
        ),
        out=params["out"],
    )
    interactive = not as_json and sys.stderr.isatty()

    def note(message: str) -> None:
        if not as_json:
            click.echo(message, err=True)

    try:
        report = run_eval(config, note=note, progress=_bar if interactive else _no_bar)
    except EvalInputError as error:
        raise BadInput(str(error)) from None
    except EvalRunError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        where = f"; the queries scored so far are kept in {config.out}" if config.out else ""
        click.echo(f"Error: interrupted{where}", err=True)
        ctx.exit(130)
    if as_json:
        import orjson

        click.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    from sagemaker_reranker.evaluation.report import summary_line, table

    click.echo(summary_line(report))
    click.echo(table(report))
    if report.files:
        click.echo(f"wrote {', '.join(sorted(set(report.files.values())))} and runs/*.trec")
