"""The picture people compare rerankers by: quality against p95 latency, one point per system.

Drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global state); the
first stage, which adds no reranking latency, is the dashed line every point is measured from.
"""

from __future__ import annotations

import io

from sagemaker_reranker.evaluation.report import Report


def plot_png(report: Report) -> bytes:
    """PNG bytes of the plot for ``report`` (its first measure on the y axis)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    measure = report.measures[0]
    figure = Figure(figsize=(7, 4.5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    baseline = report.first_stage["metrics"][measure]
    axes.axhline(baseline, color="0.45", linestyle="--", linewidth=1)
    axes.annotate(
        f"{report.first_stage['name']} (first stage): {baseline:.3f}",
        xy=(0.01, baseline),
        xycoords=("axes fraction", "data"),
        xytext=(0, 4),
        textcoords="offset points",
        fontsize=8,
        color="0.35",
    )
    for index, system in enumerate(report.systems):
        x, y = system.latency_ms["p95"], system.metrics[measure]
        axes.scatter([x], [y], s=60, zorder=3, color=f"C{index % 10}")
        axes.annotate(
            f"{system.label}\n{y:.3f} ({system.delta[measure]:+.3f}), p95 {x:.0f} ms",
            xy=(x, y),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=8,
        )
    values = [baseline, *(s.metrics[measure] for s in report.systems)]
    low, high = min(values), max(values)
    pad = max(0.05, (high - low) * 0.25)
    axes.set_ylim(max(0.0, low - pad), min(1.0, high + pad) if high <= 1.0 else high + pad)
    latencies = [max(s.latency_ms["p95"], 0.01) for s in report.systems] or [1.0]
    scale = ""
    if min(latencies) * 20 < max(latencies):  # an order of magnitude apart: log scale
        axes.set_xscale("log")
        axes.set_xlim(min(latencies) / 2, max(latencies) * 6)
        scale = ", log scale"
    else:
        axes.set_xlim(0, max(latencies) * 1.45 + 1)
    axes.set_xlabel(f"p95 latency per query (ms, as the client saw it{scale})")
    axes.set_ylabel(measure)
    axes.set_title(
        f"{measure} against p95 latency ({report.queries['evaluated']} queries, "
        f"split {report.split})",
        fontsize=10,
    )
    axes.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
