"""Bad input to ``eval``: one line naming the problem, exit code 2, nothing scored or written.

Each case starts from a valid data set, run file and scorer (a loopback runtime that would
answer every request) and breaks one thing; the scorer then must have received no request and
``--out`` must not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from runtime_responder import RuntimeResponder
from test_eval import RUN, known_scores, write_beir, write_trec

from sagemaker_reranker.deploy.cli import main


def replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# The files each case starts from, under the test's folder (its working directory).
CORPUS_FILE = "data/corpus.jsonl"
QUERIES_FILE = "data/queries.jsonl"
QRELS_FILE = "data/qrels/test.tsv"
RUN_FILE = "first.trec"
Breaker = Callable[[], list[str]]  # breaks one thing, returns the arguments it adds


def arguments(*extra: str) -> Breaker:
    return lambda: list(extra)


def edited(edit: Callable[[], object], *extra: str) -> Breaker:
    """A breaker that edits a file, then adds ``extra``."""

    def breaker() -> list[str]:
        edit()
        return list(extra)

    return breaker


def replaced(name: str, number: int, text: str) -> Breaker:
    return edited(lambda: replace_line(Path(name), number, text))


def removed(name: str) -> Breaker:
    return edited(Path(name).unlink)


def written(name: str, text: str, *extra: str) -> Breaker:
    return edited(lambda: Path(name).write_text(text, encoding="utf-8"), *extra)


def _judge_an_unknown_query() -> None:
    with open(QRELS_FILE, "a", encoding="utf-8") as handle:
        handle.write("q99\td1\t1\n")


def _drop_candidates_of_q4() -> None:
    write_trec(Path(RUN_FILE), [row for row in RUN if row[0] != "q4"])


BREAKERS: dict[str, Breaker] = {
    "missing data": arguments("--data", "nowhere"),
    "missing corpus": removed(CORPUS_FILE),
    "missing queries": removed(QUERIES_FILE),
    "missing split": arguments("--split", "dev"),
    "bad corpus json": replaced(CORPUS_FILE, 3, '{"_id": "d3", "text": "unterminated'),
    "bad queries json": replaced(QUERIES_FILE, 2, "[1, 2"),
    "corpus without id": replaced(CORPUS_FILE, 2, json.dumps({"text": "no id here"})),
    "qrels unknown query": edited(_judge_an_unknown_query),
    "qrels two fields": replaced(QRELS_FILE, 3, "q1\td1"),
    "judged query without candidates": edited(_drop_candidates_of_q4),
    "empty run": written(RUN_FILE, "\n"),
    "run with five fields": replaced(RUN_FILE, 2, "q1 Q0 d1 2 8.0"),
    "run score not a number": replaced(RUN_FILE, 3, "q1 Q0 d4 3 high hand"),
    "run missing": removed(RUN_FILE),
    "run unknown query": replaced(RUN_FILE, 1, "q77 Q0 d5 1 9.0 hand"),
    "candidate not in corpus": replaced(RUN_FILE, 4, "q1 Q0 d99 4 3.0 hand"),
    "unknown metric": arguments("--metrics", "nDCG@10,Bogus@3"),
    "metric cutoff zero": arguments("--metrics", "P@0"),
    "out is a file": written("out", "a file"),
    "model data missing": arguments("--model-data", "missing.tar.gz"),
    "model data not gzip": written(
        "model.tar.gz", "not an archive", "--model-data", "model.tar.gz"
    ),
    "url without scheme": arguments("--endpoint-url", "127.0.0.1:8080"),
    "labels do not match": arguments("--label", "a", "--label", "b"),
}
# What the one line says, case by case.
EXPECTED = {
    "missing data": "nowhere: no such directory",
    "missing corpus": "corpus.jsonl: no such file",
    "missing queries": "queries.jsonl: no such file",
    "missing split": "qrels/dev.tsv: no such file (splits present: test)",
    "bad corpus json": "corpus.jsonl line 3: not valid JSON",
    "bad queries json": "queries.jsonl line 2: not valid JSON",
    "corpus without id": 'corpus.jsonl line 2: has no "_id"',
    "qrels unknown query": "line 10: query 'q99' is not in queries.jsonl",
    "qrels two fields": "test.tsv line 3: expected 'query-id corpus-id",
    "judged query without candidates": "query 'q4' has judgements but no candidates",
    "empty run": "first.trec: no run lines",
    "run with five fields": "first.trec line 2: expected 'qid Q0 docid",
    "run score not a number": "got rank '3' and score 'high'",
    "run missing": "first.trec: no such file",
    "run unknown query": "line 1: query 'q77' is not in queries.jsonl",
    "candidate not in corpus": "1 candidate document(s) are not in",
    "unknown metric": "unknown measure 'Bogus@3'",
    "metric cutoff zero": "'P@0': the cutoff after @ must be 1 or more",
    "out is a file": "exists and is not a directory",
    "model data missing": "missing.tar.gz: no such file",
    "model data not gzip": "not a gzip tar archive",
    "url without scheme": "expected http://HOST:PORT",
    "labels do not match": "--label: give it once per system (1",
}


@pytest.fixture(scope="module")
def scorer():
    with RuntimeResponder(None, transform=known_scores) as responder:
        yield responder


@pytest.mark.parametrize("case", list(BREAKERS))
def test_bad_input_is_one_line_exit_2_nothing_written(
    case: str, tmp_path: Path, scorer: RuntimeResponder, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = EXPECTED[case]
    monkeypatch.chdir(tmp_path)
    data = write_beir(tmp_path / "data")
    run = write_trec(tmp_path / RUN_FILE, RUN)
    out = tmp_path / "out"
    extra = BREAKERS[case]()
    args = ["--data", data, "--candidates", run, "--endpoint-url", scorer.url, "--out", out]
    if extra[:1] == ["--data"]:
        args = extra + args[2:]
    else:
        args += extra
    scorer.requests.clear()
    result = CliRunner().invoke(main, ["eval", *map(str, args)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not scorer.requests
    assert out.is_file() if case == "out is a file" else not out.exists()


def test_corpus_error_names_the_candidate_and_its_line(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "data")
    run = write_trec(tmp_path / "first.trec", RUN)
    replace_line(run, 4, "q1 Q0 d99 4 3.0 hand")
    result = CliRunner().invoke(main, ["eval", "--data", str(data), "--candidates", str(run)])
    assert result.exit_code == 2
    assert "e.g. 'd99' (query 'q1', " in result.stderr and "first.trec line 4)" in result.stderr


def test_bm25_query_without_known_words_is_an_error(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "data")
    replace_line(data / "queries.jsonl", 4, json.dumps({"_id": "q4", "text": "zyxxy qwertz"}))
    result = CliRunner().invoke(main, ["eval", "--data", str(data)])
    assert result.exit_code == 2
    assert "query 'q4': no BM25 candidates" in result.stderr
