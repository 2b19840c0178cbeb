"""One evaluation, in order: check every input, find candidates, score, measure, write.

All input checks (options, files, formats, ids) run before the first system is started, so a
bad input ends the run with nothing scored and nothing written. Under ``--out`` the per-query
scores are stored as they arrive (``store``); the runs, report and plot are written at the
end, each whole or not at all.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from sagemaker_reranker.evaluation.data import Dataset, load_dataset, load_documents
from sagemaker_reranker.evaluation.errors import EvalInputError
from sagemaker_reranker.evaluation.metrics import DEFAULT_METRICS, evaluate, parse_metrics
from sagemaker_reranker.evaluation.report import (
    Report,
    SystemReport,
    cost_per_1000,
    latency_summary,
    markdown,
)
from sagemaker_reranker.evaluation.runs import Ranking, ranked, read_run, write_atomically
from sagemaker_reranker.evaluation.runs import write_run as write_run_file
from sagemaker_reranker.evaluation.scoring import plan_work, score_queries
from sagemaker_reranker.evaluation.store import QueryResult, ScoreStore
from sagemaker_reranker.evaluation.systems import (
    ClientSettings,
    SystemSpec,
    check_spec,
    open_system,
    short_hash,
)

DEFAULT_TOP_K = 100
PLOT, REPORT_MD, REPORT_JSON, RUNS, SCORES = (
    "quality_vs_latency.png",
    "report.md",
    "report.json",
    "runs",
    "scores",
)


@dataclass
class EvalConfig:
    data: Path
    split: str = "test"
    candidates: Path | None = None
    top_k: int = DEFAULT_TOP_K
    metrics: tuple[str, ...] = DEFAULT_METRICS
    systems: list[SystemSpec] = field(default_factory=list)
    settings: ClientSettings = field(default_factory=ClientSettings)
    out: Path | None = None


def _no_progress(total: int, label: str) -> AbstractContextManager[Callable[[int], None]]:
    @contextmanager
    def bar() -> Iterator[Callable[[int], None]]:
        yield lambda _: None

    return bar()


def require_extra(config: EvalConfig) -> None:
    """The ``eval`` extra's libraries this run needs, or one line on how to install them."""
    needed = ["ir_measures"]
    if config.candidates is None:
        needed.append("bm25s")
    if config.out is not None and config.systems:
        needed.append("matplotlib")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise EvalInputError(
            f"eval needs {', '.join(missing)}: pip install 'sagemaker-reranker[eval]'"
        )


def run_eval(
    config: EvalConfig,
    note: Callable[[str], None] = lambda _: None,
    progress: Callable[[int, str], AbstractContextManager] = _no_progress,
) -> Report:
    """Evaluate the first stage and every system of ``config``; the report, files written."""
    require_extra(config)
    measures = parse_metrics(config.metrics)
    for spec in config.systems:
        check_spec(spec, config.settings)
    if config.out is not None and config.out.exists() and not config.out.is_dir():
        raise EvalInputError(f"--out {config.out}: exists and is not a directory")
    dataset = load_dataset(config.data, config.split)
    name, rankings, origin = _candidates(config, dataset)
    texts = load_documents(dataset.corpus_path, origin)
    stores = {spec.label: _store(config, spec) for spec in config.systems}
    stored = {label: store.load() for label, store in stores.items()}

    first_docs = {qid: [doc for doc, _ in ranking] for qid, ranking in rankings.items()}
    sizes = [len(ranking) for ranking in rankings.values()]
    report = Report(
        data=str(config.data),
        split=config.split,
        measures=[str(m) for m in measures],
        first_stage={
            "name": name,
            "metrics": evaluate(measures, dataset.qrels, first_docs),
            "run_file": None,
        },
        queries={
            "evaluated": len(rankings),
            "skipped_unjudged": len(dataset.unjudged),
        },
        candidates={
            "top_k": config.top_k,
            "mean": sum(sizes) / len(sizes),
            "max": max(sizes),
            "documents": len(texts),
        },
        instruction=config.settings.instruction,
    )
    reranked: dict[str, dict[str, Ranking]] = {}
    for spec in config.systems:
        todo, kept = plan_work(dataset.queries, rankings, stored[spec.label])
        if kept:
            note(f"{spec.label}: {len(kept)} queries already scored in {stores[spec.label].path}")
        new: list[QueryResult] = []
        if todo:
            with (
                open_system(spec, config.settings, note) as model,
                progress(len(todo), spec.label) as advance,
            ):
                new = score_queries(
                    model,
                    spec.label,
                    todo,
                    texts,
                    stores[spec.label],
                    config.settings.max_concurrency,
                    advance,
                )
        results = {**kept, **{result.qid: result for result in new}}
        reranked[spec.label] = {
            qid: ranked(zip(results[qid].docs, results[qid].scores, strict=True))
            for qid in rankings
        }
        report.systems.append(
            _system_report(spec, measures, dataset, report, reranked[spec.label], results, kept)
        )
    if config.out is not None:
        _write_outputs(config.out, report, rankings, reranked, config.systems)
    return report


def _candidates(config: EvalConfig, dataset: Dataset) -> tuple[str, dict, dict]:
    """The first stage's name, its rankings of the judged queries, and each document's origin."""
    if config.candidates is not None:
        rankings, origin = read_run(config.candidates, dataset.queries, config.top_k)
        name = f"run {config.candidates.name} (top {config.top_k})"
        source = str(config.candidates)
    else:
        from sagemaker_reranker.evaluation.first_stage import bm25_candidates

        judged = {qid: dataset.queries[qid] for qid in dataset.judged}
        result = bm25_candidates(dataset.corpus_path, judged, config.top_k)
        rankings, origin = result.rankings, result.origin
        name = f"BM25 top {config.top_k}"
        source = "the BM25 first stage"
    for qid in dataset.judged:
        if not rankings.get(qid):
            raise EvalInputError(f"query {qid!r} has judgements but no candidates in {source}")
    judged_rankings = {qid: rankings[qid] for qid in dataset.judged}
    kept = {doc for ranking in judged_rankings.values() for doc, _ in ranking}
    return name, judged_rankings, {doc: origin[doc] for doc in origin if doc in kept}


def _store(config: EvalConfig, spec: SystemSpec) -> ScoreStore:
    header = {"system": spec.key, "instruction": config.settings.instruction}
    if config.out is None:
        return ScoreStore(None, header)
    name = f"{spec.slug}-{short_hash(orjson.dumps(header).decode())}.jsonl"
    return ScoreStore(config.out / SCORES / name, header)


def _system_report(
    spec: SystemSpec,
    measures: list,
    dataset: Dataset,
    report: Report,
    rankings: dict[str, Ranking],
    results: dict[str, QueryResult],
    kept: dict[str, QueryResult],
) -> SystemReport:
    metrics = evaluate(measures, dataset.qrels, {q: [d for d, _ in r] for q, r in rankings.items()})
    first = report.first_stage["metrics"]
    pairs = sum(len(result.docs) for result in results.values())
    sessions: dict[str, float] = {}
    for result in results.values():
        sessions[result.session] = max(sessions.get(result.session, 0.0), result.elapsed)
    wall = sum(sessions.values())
    cost = cost_per_1000(spec.price_per_hour, spec.instances, wall, len(results))
    return SystemReport(
        label=spec.label,
        kind=spec.kind,
        target=spec.target,
        metrics=metrics,
        delta={m: metrics[m] - first[m] for m in metrics},
        queries=len(results),
        pairs=pairs,
        resumed_queries=len(kept),
        latency_ms=latency_summary([result.seconds for result in results.values()]),
        wall_seconds=wall,
        pairs_per_second=pairs / wall if wall > 0 else 0.0,
        price_per_hour=spec.price_per_hour,
        instances=spec.instances,
        cost_per_1000_queries=cost,
    )


def _write_outputs(
    out: Path,
    report: Report,
    first: dict[str, Ranking],
    reranked: dict[str, dict[str, Ranking]],
    systems: list[SystemSpec],
) -> None:
    from sagemaker_reranker.evaluation.plot import plot_png

    runs = out / RUNS
    write_run_file(runs / "first-stage.trec", first, "first-stage")
    report.first_stage["run_file"] = str(runs / "first-stage.trec")
    for spec, system in zip(systems, report.systems, strict=True):
        path = runs / f"{spec.slug}.trec"
        write_run_file(path, reranked[spec.label], spec.slug)
        system.run_file = str(path)
    plot = None
    if report.systems:
        write_atomically(out / PLOT, plot_png(report))
        plot = PLOT
        report.files["plot"] = str(out / PLOT)
    report.files["markdown"] = str(out / REPORT_MD)
    report.files["json"] = str(out / REPORT_JSON)
    write_atomically(out / REPORT_MD, markdown(report, plot))
    write_atomically(
        out / REPORT_JSON,
        orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS),
    )
