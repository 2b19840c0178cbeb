"""What an evaluation found, as data (``--json``), a terminal table and Markdown.

Latency is per query, the wall time of the client's ``score`` call; pairs/s is every pair
scored over the wall time of the scoring (summed over the runs of a resumed evaluation). The
cost of 1,000 queries is what the instances cost for the time this run needed per query:
``price_per_hour × instances × wall hours ÷ queries × 1000``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PERCENTILES = (50, 95, 99)


@dataclass
class SystemReport:
    label: str
    kind: str
    target: str
    metrics: dict[str, float]
    delta: dict[str, float]
    """Each metric minus the first stage's."""
    queries: int
    pairs: int
    resumed_queries: int
    latency_ms: dict[str, float]
    wall_seconds: float
    pairs_per_second: float
    price_per_hour: float | None = None
    instances: int = 1
    cost_per_1000_queries: float | None = None
    run_file: str | None = None


@dataclass
class Report:
    data: str
    split: str
    measures: list[str]
    first_stage: dict
    queries: dict[str, int]
    candidates: dict
    systems: list[SystemReport] = field(default_factory=list)
    instruction: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def latency_summary(seconds: list[float]) -> dict[str, float]:
    import numpy as np

    if not seconds:
        return {f"p{p}": 0.0 for p in PERCENTILES}
    values = np.percentile(np.asarray(seconds) * 1000.0, PERCENTILES)
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, values, strict=True)}


def cost_per_1000(
    price_per_hour: float | None, instances: int, wall_seconds: float, queries: int
) -> float | None:
    if price_per_hour is None or queries == 0:
        return None
    return price_per_hour * instances * (wall_seconds / 3600.0) / queries * 1000.0


def summary_line(report: Report) -> str:
    q = report.queries
    skipped = f", {q['skipped_unjudged']} skipped (no judgements)" if q["skipped_unjudged"] else ""
    c = report.candidates
    return (
        f"{q['evaluated']} queries evaluated{skipped}; candidates: {report.first_stage['name']}, "
        f"{c['mean']:.1f} per query on average (at most {c['max']})"
    )


def _rows(report: Report) -> tuple[list[str], list[list[str]]]:
    header = ["system", *report.measures, "p50 ms", "p95 ms", "p99 ms", "pairs/s"]
    costed = any(s.cost_per_1000_queries is not None for s in report.systems)
    if costed:
        header.append("$/1k queries")
    dash = ["-"] * (4 + costed)
    first = report.first_stage["metrics"]
    rows = [[report.first_stage["name"], *(f"{first[m]:.4f}" for m in report.measures), *dash]]
    for system in report.systems:
        row = [system.label]
        row += [f"{system.metrics[m]:.4f} ({system.delta[m]:+.4f})" for m in report.measures]
        row += [f"{system.latency_ms[f'p{p}']:.1f}" for p in PERCENTILES]
        row.append(f"{system.pairs_per_second:.0f}")
        if costed:
            cost = system.cost_per_1000_queries
            row.append("-" if cost is None else f"{cost:.4f}")
        rows.append(row)
    return header, rows


def table(report: Report) -> str:
    """The terminal table: the first stage, then each reranker with its change in brackets."""
    header, rows = _rows(report)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def markdown(report: Report, plot_name: str | None) -> str:
    header, rows = _rows(report)
    lines = [
        "# Reranker evaluation",
        "",
        f"Data: `{report.data}`, split `{report.split}`. {summary_line(report)}.",
    ]
    if report.instruction is not None:
        lines.append(f"Instruction: `{report.instruction}`.")
    lines += [
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", *(["---:"] * (len(header) - 1))]) + "|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    lines += [
        "",
        "Metrics by ir-measures; the change against the first stage in brackets. Latency is "
        "per query, as the client saw it (one `score` call for all of a query's candidates); "
        "pairs/s is all pairs over the wall time of the scoring.",
    ]
    if any(s.cost_per_1000_queries is not None for s in report.systems):
        lines.append(
            "Cost per 1,000 queries = price per hour × instances × the wall time this run "
            "took per query × 1,000."
        )
    for system in report.systems:
        earlier = system.resumed_queries
        resumed = f", {earlier} from an earlier run" if earlier else ""
        lines.append(
            f"- **{system.label}** ({system.kind} `{system.target}`): {system.queries} queries"
            f"{resumed}, {system.pairs} pairs, {system.wall_seconds:.1f} s of scoring."
        )
    if plot_name:
        lines += ["", f"![quality against p95 latency]({plot_name})"]
    return "\n".join(lines) + "\n"
