"""TREC run files (``qid Q0 docid rank score tag``) and the one rule that orders a ranking.

A ranking is ordered by score, highest first, and equal scores by document id, so a run with
ties ranks the same way on every read and on every machine. trec_eval itself would break ties
by document id in *descending* order; the metrics are therefore computed on this order
explicitly (``metrics.evaluate``), never on raw tied scores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from sagemaker_reranker.evaluation.errors import EvalInputError

# One query's candidates, best first: (document id, score).
Ranking = list[tuple[str, float]]
RUN_FORMAT = "expected 'qid Q0 docid rank score tag'"


def ranked(scores: Iterable[tuple[str, float]]) -> Ranking:
    """``(docid, score)`` pairs ordered by score (highest first), then document id."""
    return sorted(((doc, float(score)) for doc, score in scores), key=lambda p: (-p[1], p[0]))


def read_run(
    path: Path, queries: Mapping[str, str], top_k: int | None = None
) -> tuple[dict[str, Ranking], dict[str, str]]:
    """The rankings of a run file (``top_k`` per query) and where each document came from.

    The second value maps every kept document id to ``"<file> line N"`` for error messages.
    Lines must have six fields with an integer rank and a finite score; a query id that
    ``queries`` lacks, or a document listed twice for one query, is an error.
    """
    if not Path(path).is_file():
        raise EvalInputError(f"--candidates {path}: no such file")
    scores: dict[str, dict[str, float]] = {}
    lines: dict[tuple[str, str], int] = {}
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as error:
        raise EvalInputError(f"{path}: cannot read ({error.strerror})") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                fields = line.split()
                if not fields:
                    continue
                qid, docid, score = _parse_line(path, number, fields)
                if qid not in queries:
                    raise EvalInputError(
                        f"{path} line {number}: query {qid!r} is not in queries.jsonl"
                    )
                per_query = scores.setdefault(qid, {})
                if docid in per_query:
                    raise EvalInputError(
                        f"{path} line {number}: document {docid!r} listed twice for query {qid!r}"
                    )
                per_query[docid] = score
                lines[qid, docid] = number
        except UnicodeDecodeError:
            raise EvalInputError(f"{path}: not UTF-8 text") from None
    if not scores:
        raise EvalInputError(f"{path}: no run lines ({RUN_FORMAT})")
    rankings = {qid: ranked(docs.items())[:top_k] for qid, docs in scores.items()}
    origin = {
        doc: f"query {qid!r}, {path} line {lines[qid, doc]}"
        for qid, ranking in rankings.items()
        for doc, _ in ranking
    }
    return rankings, origin


def _parse_line(path: Path, number: int, fields: list[str]) -> tuple[str, str, float]:
    if len(fields) != 6:
        raise EvalInputError(f"{path} line {number}: {RUN_FORMAT}, got {len(fields)} fields")
    qid, _, docid, rank, score, _ = fields
    try:
        int(rank)
        value = float(score)
    except ValueError:
        raise EvalInputError(
            f"{path} line {number}: {RUN_FORMAT} (rank an integer, score a number), "
            f"got rank {rank!r} and score {score!r}"
        ) from None
    if not math.isfinite(value):
        raise EvalInputError(f"{path} line {number}: the score {score!r} is not finite")
    return qid, docid, value


def run_lines(rankings: Mapping[str, Ranking], tag: str) -> Iterable[str]:
    """TREC lines; scores as Python writes floats (shortest exact), so a re-read ranks alike."""
    for qid, ranking in rankings.items():
        for rank, (docid, score) in enumerate(ranking, start=1):
            yield f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n"


def write_run(path: Path, rankings: Mapping[str, Ranking], tag: str) -> None:
    """Write a run file whole or not at all (temp file, then rename)."""
    write_atomically(path, "".join(run_lines(rankings, tag)))


def write_atomically(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    data = content.encode("utf-8") if isinstance(content, str) else content
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
