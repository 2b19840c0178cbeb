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


def _missing_data(t: Path, data: Path, run: Path) -> list:
    return ["--data", t / "nowhere"]


def _missing_corpus(t: Path, data: Path, run: Path) -> list:
    (data / "corpus.jsonl").unlink()
    return []


def _missing_queries(t: Path, data: Path, run: Path) -> list:
    (data / "queries.jsonl").unlink()
    return []


def _missing_split(t: Path, data: Path, run: Path) -> list:
    return ["--split", "dev"]


def _bad_corpus_json(t: Path, data: Path, run: Path) -> list:
    replace_line(data / "corpus.jsonl", 3, '{"_id": "d3", "text": "unterminated')
    return []


def _bad_queries_json(t: Path, data: Path, run: Path) -> list:
    replace_line(data / "queries.jsonl", 2, "[1, 2")
    return []


def _corpus_without_id(t: Path, data: Path, run: Path) -> list:
    replace_line(data / "corpus.jsonl", 2, json.dumps({"text": "no id here"}))
    return []


def _qrels_unknown_query(t: Path, data: Path, run: Path) -> list:
    with open(data / "qrels" / "test.tsv", "a", encoding="utf-8") as handle:
        handle.write("q99\td1\t1\n")
    return []


def _qrels_two_fields(t: Path, data: Path, run: Path) -> list:
    replace_line(data / "qrels" / "test.tsv", 3, "q1\td1")
    return []


def _judged_query_without_candidates(t: Path, data: Path, run: Path) -> list:
    write_trec(run, [row for row in RUN if row[0] != "q4"])
    return []


def _empty_run(t: Path, data: Path, run: Path) -> list:
    run.write_text("\n", encoding="utf-8")
    return []


def _run_five_fields(t: Path, data: Path, run: Path) -> list:
    replace_line(run, 2, "q1 Q0 d1 2 8.0")
    return []


def _run_score_not_a_number(t: Path, data: Path, run: Path) -> list:
    replace_line(run, 3, "q1 Q0 d4 3 high hand")
    return []


def _run_missing(t: Path, data: Path, run: Path) -> list:
    run.unlink()
    return []


def _run_unknown_query(t: Path, data: Path, run: Path) -> list:
    replace_line(run, 1, "q77 Q0 d5 1 9.0 hand")
    return []


def _candidate_not_in_corpus(t: Path, data: Path, run: Path) -> list:
    replace_line(run, 4, "q1 Q0 d99 4 3.0 hand")
    return []


def _unknown_metric(t: Path, data: Path, run: Path) -> list:
    return ["--metrics", "nDCG@10,Bogus@3"]


def _metric_cutoff_zero(t: Path, data: Path, run: Path) -> list:
    return ["--metrics", "P@0"]


def _out_is_a_file(t: Path, data: Path, run: Path) -> list:
    return []


def _model_data_missing(t: Path, data: Path, run: Path) -> list:
    return ["--model-data", t / "missing.tar.gz"]


def _model_data_not_gzip(t: Path, data: Path, run: Path) -> list:
    (t / "model.tar.gz").write_text("not an archive", encoding="utf-8")
    return ["--model-data", t / "model.tar.gz"]


def _url_without_scheme(t: Path, data: Path, run: Path) -> list:
    return ["--endpoint-url", "127.0.0.1:8080"]


def _labels_do_not_match(t: Path, data: Path, run: Path) -> list:
    return ["--label", "a", "--label", "b"]


CASES: dict[str, tuple[Callable, str]] = {
    "missing data": (_missing_data, "nowhere: no such directory"),
    "missing corpus": (_missing_corpus, "corpus.jsonl: no such file"),
    "missing queries": (_missing_queries, "queries.jsonl: no such file"),
    "missing split": (_missing_split, "qrels/dev.tsv: no such file (splits present: test)"),
    "bad corpus json": (_bad_corpus_json, "corpus.jsonl line 3: not valid JSON"),
    "bad queries json": (_bad_queries_json, "queries.jsonl line 2: not valid JSON"),
    "corpus without id": (_corpus_without_id, 'corpus.jsonl line 2: has no "_id"'),
    "qrels unknown query": (_qrels_unknown_query, "line 10: query 'q99' is not in queries.jsonl"),
    "qrels two fields": (_qrels_two_fields, "test.tsv line 3: expected 'query-id corpus-id"),
    "judged query without candidates": (
        _judged_query_without_candidates,
        "query 'q4' has judgements but no candidates",
    ),
    "empty run": (_empty_run, "first.trec: no run lines"),
    "run with five fields": (_run_five_fields, "first.trec line 2: expected 'qid Q0 docid"),
    "run score not a number": (_run_score_not_a_number, "got rank '3' and score 'high'"),
    "run missing": (_run_missing, "first.trec: no such file"),
    "run unknown query": (_run_unknown_query, "line 1: query 'q77' is not in queries.jsonl"),
    "candidate not in corpus": (
        _candidate_not_in_corpus,
        "1 candidate document(s) are not in",
    ),
    "unknown metric": (_unknown_metric, "unknown measure 'Bogus@3'"),
    "metric cutoff zero": (_metric_cutoff_zero, "'P@0': the cutoff after @ must be 1 or more"),
    "out is a file": (_out_is_a_file, "exists and is not a directory"),
    "model data missing": (_model_data_missing, "missing.tar.gz: no such file"),
    "model data not gzip": (_model_data_not_gzip, "not a gzip tar archive"),
    "url without scheme": (_url_without_scheme, "expected http://HOST:PORT"),
    "labels do not match": (_labels_do_not_match, "--label: give it once per system (1"),
}


@pytest.fixture(scope="module")
def scorer():
    with RuntimeResponder(None, transform=known_scores) as responder:
        yield responder


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_nothing_written(
    case: str, tmp_path: Path, scorer: RuntimeResponder
) -> None:
    breaker, expected = CASES[case]
    data = write_beir(tmp_path / "data")
    run = write_trec(tmp_path / "first.trec", RUN)
    out = tmp_path / "out"
    if case == "out is a file":
        out.write_text("a file", encoding="utf-8")
    extra = breaker(tmp_path, data, run)
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
