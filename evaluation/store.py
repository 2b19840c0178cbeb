"""Per-query results on disk, one JSON line each, so an interrupted run resumes.

``--out DIR/scores/<system>-<hash>.jsonl``: a header line naming the system (and instruction)
the scores belong to, then one line per scored query, appended and flushed as each query
finishes. A line is either whole or, if the process died while writing it, a tail without a
newline, which the next run cuts off. A stored query is reused only if its candidates are the
same documents in the same order; otherwise it is scored again.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from sagemaker_reranker.evaluation.errors import EvalInputError

FORMAT = "sagemaker-reranker-eval-scores/1"


@dataclass(frozen=True)
class QueryResult:
    """One query's reranker scores, aligned with ``docs``, and how the client saw it."""

    qid: str
    docs: list[str]
    scores: list[float]
    seconds: float
    """Wall time of the client's ``score`` call for this query."""
    session: str
    """The run that scored it (a resumed evaluation has several)."""
    elapsed: float
    """Seconds from that run's first request to this query's answer."""


class ScoreStore:
    """The results of one system; with ``path`` None they live in memory only."""

    def __init__(self, path: Path | None, header: dict) -> None:
        self.path = path
        self.header = {"format": FORMAT, **header}
        self._handle = None

    def load(self) -> dict[str, QueryResult]:
        """The stored results (last one per query wins); a torn last line is cut off."""
        if self.path is None or not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
        lines = data[:end].splitlines()
        if not lines:
            return {}
        try:
            header = orjson.loads(lines[0])
        except orjson.JSONDecodeError:
            header = None
        if header != self.header:
            raise EvalInputError(
                f"{self.path} holds scores of another system or settings; remove it or use "
                "another --out"
            )
        results: dict[str, QueryResult] = {}
        for number, line in enumerate(lines[1:], start=2):
            try:
                result = QueryResult(**orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError):
                raise EvalInputError(
                    f"{self.path} line {number}: not a stored result; remove the file to "
                    "score again"
                ) from None
            results[result.qid] = result
        return results

    def append(self, result: QueryResult) -> None:
        if self.path is None:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.is_file() or self.path.stat().st_size == 0
            self._handle = open(self.path, "ab")  # noqa: SIM115 - closed in close()
            if fresh:
                self._write(self.header)
        self._write(asdict(result))

    def _write(self, record: dict) -> None:
        # One write per line: a crash leaves at most a torn last line, cut off on load.
        self._handle.write(orjson.dumps(record) + b"\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
