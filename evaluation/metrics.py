"""Retrieval quality with ``ir-measures`` (trec_eval's implementations through pytrec_eval).

Measures are named as ir-measures names them (``nDCG@10``, ``RR@10``, ``R@100``, ``P@5``,
``AP``...), computed in this process by its pytrec_eval provider (trec_eval's code), or
msmarco's (``RR@k``), compat's or judged's. Each ranking is handed over with scores that
strictly decrease along our order (``runs.ranked``), so the library evaluates exactly the
ranking this tool reports, ties included, rather than re-breaking ties its own way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sagemaker_reranker.evaluation.errors import EvalInputError

DEFAULT_METRICS = ("nDCG@10", "RR@10", "R@10", "R@100")


def parse_metrics(names: Sequence[str]) -> list:
    """ir-measures measure objects for ``names`` (comma-separated items allowed)."""
    measures = []
    for item in names:
        for name in _split(item):
            measure = _measure(name)
            if measure not in measures:
                measures.append(measure)
    if not measures:
        raise EvalInputError("--metrics: no measure given")
    return measures


def _measure(name: str):
    import ir_measures

    try:
        measure = ir_measures.parse_measure(name)
    except (ValueError, NameError):
        raise EvalInputError(
            f"--metrics: unknown measure {name!r} (ir-measures names, e.g. nDCG@10, RR@10, "
            "R@100, P@5, AP)"
        ) from None
    cutoff = measure.params.get("cutoff")
    # trec_eval aborts the whole process on a cutoff below 1.
    if cutoff is not None and (not isinstance(cutoff, int) or cutoff < 1):
        raise EvalInputError(f"--metrics: {name!r}: the cutoff after @ must be 1 or more")
    if not _providers().supports(measure):
        raise EvalInputError(
            f"--metrics: {name!r} has no in-process implementation in ir-measures "
            "(pytrec_eval, msmarco, judged, compat)"
        )
    return measure


def _providers():
    """ir-measures' default order without the providers that run outside this process
    (gdeval is a Perl script) or need more packages."""
    import ir_measures

    return ir_measures.providers.FallbackProvider(
        [ir_measures.pytrec_eval, ir_measures.compat, ir_measures.judged, ir_measures.msmarco]
    )


def _split(item: str) -> list[str]:
    """Comma-separated names; commas inside a measure's parentheses stay with it."""
    names, depth, current = [], 0, ""
    for char in item:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            names.append(current)
            current = ""
        else:
            current += char
    names.append(current)
    return [name.strip() for name in names if name.strip()]


def evaluate(
    measures: list, qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Mean of each measure over the queries of ``rankings`` (document ids, best first)."""
    run = {
        qid: {doc: float(len(docs) - position) for position, doc in enumerate(docs)}
        for qid, docs in rankings.items()
    }
    judged = {qid: dict(qrels[qid]) for qid in rankings}
    values = _providers().calc_aggregate(measures, judged, run)
    return {str(measure): float(values.get(measure, 0.0)) for measure in measures}
