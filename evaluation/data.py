"""Labelled data in the BEIR layout, read so that memory follows the candidates, not the corpus.

``DIR/corpus.jsonl`` (``_id``, ``title``, ``text``), ``DIR/queries.jsonl`` (``_id``, ``text``)
and ``DIR/qrels/<split>.tsv`` (``query-id corpus-id score``, tab-separated, one header line;
TREC's four-column ``qid 0 docid rel`` is read too). Queries and judgements are small and read
whole; the corpus is only ever streamed: ``load_documents`` keeps the texts of the candidate
documents and nothing else. Every problem is an :class:`EvalInputError` naming the file and,
where there is one, the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from sagemaker_reranker.evaluation.errors import EvalInputError

CORPUS, QUERIES, QRELS = "corpus.jsonl", "queries.jsonl", "qrels"


@dataclass
class Dataset:
    """Queries and judgements of one split; the corpus stays on disk (``corpus_path``)."""

    root: Path
    split: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    unjudged: list[str] = field(default_factory=list)
    """Queries of ``queries.jsonl`` with no judgement in this split: skipped and counted."""

    @property
    def corpus_path(self) -> Path:
        return self.root / CORPUS

    @property
    def judged(self) -> list[str]:
        """The queries evaluated, in ``queries.jsonl`` order."""
        return [qid for qid in self.queries if qid in self.qrels]


def load_dataset(root: Path, split: str) -> Dataset:
    """Queries and qrels of ``split`` under ``root``, checked against each other."""
    root = Path(root)
    if not root.is_dir():
        raise EvalInputError(f"--data {root}: no such directory")
    corpus = root / CORPUS
    if not corpus.is_file():
        raise EvalInputError(f"{corpus}: no such file (the BEIR layout has corpus.jsonl)")
    queries = read_queries(_required(root / QUERIES, "queries.jsonl"))
    qrels = read_qrels(_qrels_path(root, split), queries)
    unjudged = [qid for qid in queries if qid not in qrels]
    return Dataset(root, split, queries, qrels, unjudged)


def _required(path: Path, what: str) -> Path:
    if not path.is_file():
        raise EvalInputError(f"{path}: no such file (the BEIR layout has {what})")
    return path


def _qrels_path(root: Path, split: str) -> Path:
    path = root / QRELS / f"{split}.tsv"
    if path.is_file():
        return path
    splits = sorted(p.stem for p in (root / QRELS).glob("*.tsv")) if (root / QRELS).is_dir() else []
    present = f"splits present: {', '.join(splits)}" if splits else "no qrels/*.tsv at all"
    raise EvalInputError(f"{path}: no such file ({present}); choose one with --split")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line; bad JSON is an error naming the line."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; a generator owns it
    except OSError as error:
        raise EvalInputError(f"{path}: cannot read ({error.strerror})") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise EvalInputError(
                    f"{path} line {number}: not valid JSON ({error.msg}, column {error.colno})"
                ) from None
            if not isinstance(record, dict):
                raise EvalInputError(f"{path} line {number}: expected a JSON object")
            yield number, record


def _field(path: Path, number: int, record: dict, name: str, required: bool = True) -> str:
    value = record.get(name)
    if value is None and not required:
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and name == "_id":
        return str(value)
    if not isinstance(value, str):
        problem = "has no" if value is None else "has a non-string"
        raise EvalInputError(f'{path} line {number}: {problem} "{name}"')
    return value


def read_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for number, record in read_jsonl(path):
        qid = _field(path, number, record, "_id")
        text = _field(path, number, record, "text")
        if qid in queries:
            raise EvalInputError(f"{path} line {number}: query {qid!r} appears twice")
        if not text.strip():
            raise EvalInputError(f"{path} line {number}: query {qid!r} has empty text")
        queries[qid] = text
    if not queries:
        raise EvalInputError(f"{path}: no queries")
    return queries


def read_qrels(path: Path, queries: dict[str, str]) -> dict[str, dict[str, int]]:
    """``{query: {document: grade}}``; a query id ``queries.jsonl`` lacks is an error."""
    qrels: dict[str, dict[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EvalInputError(f"{path}: cannot read ({error})") from None
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 3:
            qid, docid, grade = fields
        elif len(fields) == 4:
            qid, _, docid, grade = fields
        else:
            raise EvalInputError(
                f"{path} line {number}: expected 'query-id corpus-id score' (3 fields, or "
                f"TREC's 'qid 0 docid rel'), got {len(fields)} fields"
            )
        try:
            value = int(grade)
        except ValueError:
            if number == 1:  # the header line
                continue
            raise EvalInputError(
                f"{path} line {number}: the score {grade!r} is not an integer"
            ) from None
        if qid not in queries:
            raise EvalInputError(f"{path} line {number}: query {qid!r} is not in queries.jsonl")
        judged = qrels.setdefault(qid, {})
        if docid in judged:
            raise EvalInputError(
                f"{path} line {number}: document {docid!r} judged twice for query {qid!r}"
            )
        judged[docid] = value
    if not qrels:
        raise EvalInputError(f"{path}: no judgements")
    return qrels


def iter_corpus(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line number, id, text)`` of each document, streamed; the title precedes the text."""
    for number, record in read_jsonl(path):
        docid = _field(path, number, record, "_id")
        text = _field(path, number, record, "text")
        title = _field(path, number, record, "title", required=False)
        yield number, docid, f"{title} {text}" if title else text


def load_documents(path: Path, wanted: dict[str, str]) -> dict[str, str]:
    """The texts of the ``wanted`` documents (id -> where it was asked for), in one pass.

    Only those texts are kept, so memory grows with the candidates. Every wanted id must be
    there (checked here, before anything is scored).
    """
    found: dict[str, str] = {}
    for number, docid, text in iter_corpus(path):
        if docid in wanted:
            if docid in found:
                raise EvalInputError(f"{path} line {number}: document {docid!r} appears twice")
            found[docid] = text
    missing = [docid for docid in wanted if docid not in found]
    if missing:
        first = missing[0]
        raise EvalInputError(
            f"{len(missing)} candidate document(s) are not in {path}, e.g. {first!r} "
            f"({wanted[first]})"
        )
    return found
