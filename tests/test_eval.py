"""``sagemaker-reranker eval``: metrics as the library computes them, rankings a known scorer
implies, the real handler through local mode and a runtime URL, several systems in one run,
resume, and the labelled example set.

Scores come from real servers: the session's local endpoint (real handler, tiny model),
archives served by ``--model-data``, or a loopback runtime stand-in whose scores follow a
known function of the document (``value N`` in its text scores N).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import ir_measures
import pytest
from click.testing import CliRunner, Result
from runtime_responder import Fault, RuntimeResponder

from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.evaluation.runs import ranked, read_run
from sagemaker_reranker.examples import demo, sotu_eval
from sagemaker_reranker.examples.sotu_eval import SOTU_EVAL as SOTU
from sagemaker_reranker.examples.speech import speech_chunks

MEASURES = "nDCG@10,RR@10,R@10,R@100,P@3,AP"

# Documents whose known-function score is their "value"; d3 and d6 tie on purpose.
DOCS = {
    "d1": "the economy grew fast, value 2",
    "d2": "jobs and wages for workers, value 7",
    "d3": "prices of energy and gas, value 3",
    "d4": "the plan for the economy, value 9",
    "d5": "bridges, roads and ports, value 1",
    "d6": "inflation and supply chains, value 3",
    "d7": "a vaccine for every child, value 5",
    "d8": "the border and immigration judges, value 4",
}
QUERIES = {
    "q1": "economy plan",
    "q2": "energy prices",
    "q3": "jobs for workers",
    "q4": "vaccines",
    "q5": "a question nobody judged",
}


def rows(table: dict[str, dict[str, float]]) -> list[tuple]:
    """``{query: {document: value}}`` as ``(query, document, value)`` rows, in order."""
    return [(qid, docid, value) for qid, values in table.items() for docid, value in values.items()]


# Graded judgements: {query: {document: grade}}.
QRELS = rows(
    {
        "q1": {"d4": 2, "d1": 1, "d5": 0},
        "q2": {"d3": 2, "d6": 1},
        "q3": {"d2": 2, "d8": 1},
        "q4": {"d7": 2},
    }
)
# A first stage with no ties: {query: {document: score}}, best first.
RUN = rows(
    {
        "q1": {"d5": 9.0, "d1": 8.0, "d4": 7.5, "d2": 3.0},
        "q2": {"d1": 4.0, "d6": 3.5, "d3": 3.0, "d7": 2.0},
        "q3": {"d2": 5.0, "d8": 4.0, "d5": 1.0},
        "q4": {"d3": 2.0, "d7": 1.0},
        "q5": {"d1": 1.0},
    }
)
JUDGED_PAIRS = sum(1 for qid, _, _ in RUN if qid != "q5")


def write_beir(root: Path, docs=DOCS, queries=QUERIES, qrels=QRELS) -> Path:
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for docid, text in docs.items():
            handle.write(json.dumps({"_id": docid, "title": "", "text": text}) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as handle:
        for qid, text in queries.items():
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{g}" for q, d, g in qrels)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_trec(path: Path, rows) -> Path:
    lines = [f"{q} Q0 {d} {rank} {score} hand" for rank, (q, d, score) in enumerate(rows, 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def value_of(document: str) -> float:
    return float(re.search(r"value (\d+)", document).group(1))


def known_scores(body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
    """A runtime container whose score for a pair is the ``value`` written in the document."""
    pairs = json.loads(body)["pairs"]
    return 200, json.dumps({"scores": [value_of(doc) for _, doc in pairs]}).encode()


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, ["eval", *map(str, args)])


def report_of(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "data")


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    return write_trec(tmp_path / "first.trec", RUN)


@pytest.fixture
def known() -> RuntimeResponder:
    with RuntimeResponder(None, transform=known_scores) as responder:
        yield responder


# ---------------------------------------------------------------- metrics and rankings


def test_metrics_equal_the_library_on_a_hand_made_run(data: Path, run_file: Path) -> None:
    report = report_of(
        cli("--data", data, "--candidates", run_file, "--metrics", MEASURES, "--json")
    )
    qrels = {}
    for qid, docid, grade in QRELS:
        qrels.setdefault(qid, {})[docid] = grade
    measures = [ir_measures.parse_measure(name) for name in MEASURES.split(",")]
    expected = ir_measures.calc_aggregate(measures, qrels, ir_measures.read_trec_run(str(run_file)))
    assert report["first_stage"]["metrics"] == pytest.approx(
        {str(m): v for m, v in expected.items()}, rel=1e-12, abs=0
    )
    # The unjudged query is skipped and counted; the judged ones are all evaluated.
    assert report["queries"] == {"evaluated": 4, "skipped_unjudged": 1}


def test_ties_rank_by_score_then_document_id(tmp_path: Path, data: Path) -> None:
    tied = [("q1", "d5", 1.0), ("q1", "d4", 1.0), ("q1", "d1", 1.0), ("q1", "d2", 0.5)]
    tied += [("q2", "d6", 2.0), ("q2", "d3", 2.0), ("q3", "d2", 1.0), ("q4", "d7", 1.0)]
    forward = write_trec(tmp_path / "forward.trec", tied)
    backward = write_trec(tmp_path / "backward.trec", list(reversed(tied)))
    rankings, _ = read_run(forward, QUERIES)
    assert [doc for doc, _ in rankings["q1"]] == ["d1", "d4", "d5", "d2"]
    assert [doc for doc, _ in rankings["q2"]] == ["d3", "d6"]
    assert read_run(backward, QUERIES)[0] == rankings
    # The metrics are those of that order, whatever order the file lists the ties in.
    untied = {q: {d: float(len(r) - i) for i, (d, _) in enumerate(r)} for q, r in rankings.items()}
    qrels = {}
    for qid, docid, grade in QRELS:
        qrels.setdefault(qid, {})[docid] = grade
    measures = [ir_measures.parse_measure(name) for name in MEASURES.split(",")]
    expected = {str(m): v for m, v in ir_measures.calc_aggregate(measures, qrels, untied).items()}
    for path in (forward, backward):
        report = report_of(
            cli("--data", data, "--candidates", path, "--metrics", MEASURES, "--json")
        )
        assert report["first_stage"]["metrics"] == pytest.approx(expected, rel=1e-12, abs=0)


def test_known_scorer_gives_the_ranking_it_implies_and_the_run_round_trips(
    tmp_path: Path, data: Path, run_file: Path, known: RuntimeResponder
) -> None:
    out = tmp_path / "out"
    report = report_of(
        cli(
            "--data", data, "--candidates", run_file, "--endpoint-url", known.url,
            "--label", "known", "--metrics", MEASURES, "--out", out, "--json",
        )
    )  # fmt: skip
    candidates = {}
    for qid, docid, _ in RUN:
        if qid != "q5":  # unjudged: never sent
            candidates.setdefault(qid, []).append(docid)
    expected = {
        qid: sorted(docs, key=lambda d: (-value_of(DOCS[d]), d)) for qid, docs in candidates.items()
    }
    written = out / "runs" / "known.trec"
    rankings, _ = read_run(written, QUERIES)
    assert {qid: [doc for doc, _ in r] for qid, r in rankings.items()} == expected
    assert expected["q2"][1:3] == ["d3", "d6"]  # the tie, broken by document id
    # The file holds the scores the endpoint gave, and trec_eval tooling reads it back alike.
    for qid, ranking in rankings.items():
        assert [score for _, score in ranking] == [value_of(DOCS[d]) for d in expected[qid]]
    library_run = ir_measures.read_trec_run(str(written))
    library = {}
    for row in library_run:
        library.setdefault(row.query_id, []).append((row.doc_id, row.score))
    assert {q: [d for d, _ in ranked(r)] for q, r in library.items()} == expected
    # Every judged query was sent once, with exactly its candidates.
    sent = sorted(len(json.loads(r.body)["pairs"]) for r in known.requests)
    assert sent == sorted(len(docs) for docs in candidates.values())
    system = report["systems"][0]
    assert system["queries"] == 4 and system["pairs"] == sum(sent)
    assert system["latency_ms"]["p50"] > 0 and system["pairs_per_second"] > 0


def test_first_stage_and_system_outputs_are_written(
    tmp_path: Path, data: Path, run_file: Path, known: RuntimeResponder
) -> None:
    out = tmp_path / "out"
    result = cli(
        "--data", data, "--candidates", run_file, "--endpoint-url", known.url,
        "--price-per-hour", "3.6", "--instances", "2", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "nDCG@10" in result.stdout and "$/1k queries" in result.stdout
    report = json.loads((out / "report.json").read_text())
    system = report["systems"][0]
    expected_cost = 3.6 * 2 * system["wall_seconds"] / 3600 / system["queries"] * 1000
    assert system["cost_per_1000_queries"] == pytest.approx(expected_cost)
    markdown = (out / "report.md").read_text()
    assert system["label"] in markdown and "![quality against p95 latency]" in markdown
    png = (out / "quality_vs_latency.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    from matplotlib.image import imread

    assert imread(out / "quality_vs_latency.png").shape[0] > 100
    first, _ = read_run(out / "runs" / "first-stage.trec", QUERIES)
    assert [d for d, _ in first["q1"]] == ["d5", "d1", "d4", "d2"]


# ---------------------------------------------------------------- real handler, real servers


def test_real_handler_through_endpoint_url(
    tmp_path: Path, data: Path, run_file: Path, endpoint
) -> None:
    out = tmp_path / "out"
    report = report_of(
        cli("--data", data, "--candidates", run_file, "--endpoint-url", endpoint.url,
            "--label", "real", "--out", out, "--json")
    )  # fmt: skip
    assert report["systems"][0]["queries"] == 4
    rankings, _ = read_run(out / "runs" / "real.trec", QUERIES)
    # Each query's ranking is what the same client's scores for its candidates imply.
    model = SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name, endpoint_url=endpoint.url
    )
    try:
        for qid, ranking in rankings.items():
            docs = [doc for query, doc, _ in RUN if query == qid]
            scores = model.score([(QUERIES[qid], DOCS[doc]) for doc in docs])
            assert ranking == ranked(zip(docs, scores, strict=True))
    finally:
        model.close()


def test_two_archives_compared_in_one_run(
    tmp_path: Path,
    data: Path,
    run_file: Path,
    tiny_model_dir: Path,
    tiny_archive: Path,
) -> None:
    from sagemaker_reranker.deploy.packaging.build import package
    from sagemaker_reranker.examples.offline_models import build_offline_model

    other = build_offline_model("tiny", tmp_path / "tiny-seed-1", seed=1)
    second = package(str(other), tmp_path / "other.tar.gz").path
    out = tmp_path / "out"
    result = cli(
        "--data", data, "--candidates", run_file, "--model-data", tiny_archive,
        "--model-data", second, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    labels = [system["label"] for system in report["systems"]]
    assert labels == [tiny_model_dir.resolve().name, "tiny-seed-1"]
    assert all(label in result.stdout for label in labels)
    assert sorted(p.name for p in (out / "runs").glob("*.trec")) == sorted(
        ["first-stage.trec", *(f"{label}.trec" for label in labels)]
    )
    for system in report["systems"]:
        assert system["kind"] == "model-data"
        assert system["queries"] == 4 and system["pairs"] == JUDGED_PAIRS
    # Each archive's local endpoint ran for the run only.
    ports = [int(port) for port in re.findall(r"ready on http://127\.0\.0\.1:(\d+)", result.stderr)]
    assert len(ports) == 2 and not any(port_open("127.0.0.1", port) for port in ports)


# ---------------------------------------------------------------- resume


def test_resume_after_an_interrupted_run_gives_the_same_report(
    tmp_path: Path, data: Path, run_file: Path, known: RuntimeResponder
) -> None:
    args = ["--data", data, "--candidates", run_file, "--endpoint-url", known.url, "--label", "k"]
    args += ["--max-concurrency", "1", "--json"]
    whole = report_of(cli(*args, "--out", tmp_path / "whole"))
    known.requests.clear()

    out = tmp_path / "resumed"
    known.faults.extend([None, None, Fault(400, "ValidationError", message="scripted stop")])
    stopped = cli(*args, "--out", out)
    assert stopped.exit_code == 1
    assert "query" in stopped.stderr and "run the same command again" in stopped.stderr
    assert len(stopped.stderr.strip().splitlines()) == 1
    assert not (out / "report.json").exists() and not (out / "runs").exists()
    (store,) = (out / "scores").glob("*.jsonl")
    assert len(store.read_text().splitlines()) == 1 + 2  # header + the two answered queries
    with open(store, "ab") as handle:  # a write torn by a crash
        handle.write(b'{"qid": "q4", "docs": ["d3"')
    known.requests.clear()

    resumed = report_of(cli(*args, "--out", out))
    assert len(known.requests) == 4 - 2  # finished queries are not scored again
    assert resumed["systems"][0]["resumed_queries"] == 2
    assert resumed["first_stage"]["metrics"] == whole["first_stage"]["metrics"]
    for key in ("queries", "candidates", "measures"):
        assert resumed[key] == whole[key]
    assert resumed["systems"][0]["metrics"] == whole["systems"][0]["metrics"]
    assert resumed["systems"][0]["pairs"] == whole["systems"][0]["pairs"]
    assert (out / "runs" / "k.trec").read_text() == (
        tmp_path / "whole" / "runs" / "k.trec"
    ).read_text()

    known.requests.clear()
    again = report_of(cli(*args, "--out", out))
    assert not known.requests and again["systems"][0]["metrics"] == whole["systems"][0]["metrics"]


# ---------------------------------------------------------------- the labelled example set


def test_example_set_matches_the_speech_and_is_graded() -> None:
    corpus = [json.loads(line) for line in (SOTU / "corpus.jsonl").read_text().splitlines()]
    chunks = speech_chunks()
    assert [doc["_id"] for doc in corpus] == [f"sotu-{i:03d}" for i in range(len(chunks))]
    assert [doc["text"] for doc in corpus] == chunks
    queries = [
        json.loads(line)["_id"] for line in (SOTU / "queries.jsonl").read_text().splitlines()
    ]
    rows = [line.split("\t") for line in (SOTU / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    judged = {qid for qid, _, _ in rows}
    assert len(judged) >= 40 and judged <= set(queries)
    assert {grade for _, _, grade in rows} == {"0", "1", "2"}
    assert {docid for _, docid, _ in rows} <= {doc["_id"] for doc in corpus}
    assert all(any(q == qid and g == "2" for q, _, g in rows) for qid in judged)


def test_make_eval_report_names_the_archive_it_keeps(tmp_path: Path, monkeypatch) -> None:
    """``make eval`` offline (the tiny stand-in, to keep the suite fast): the archive it
    scored is kept in ``--out``, and that is the path the report names."""
    monkeypatch.setattr(demo, "OFFLINE_MODEL", "tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "eval"
    assert (
        sotu_eval.main(["--model", "BAAI/bge-reranker-base", "--out", str(out), "--top-k", "2"])
        == 0
    )
    markdown = (out / "report.md").read_text()
    named = re.findall(r"\(model-data `([^`]+)`\)", markdown)
    assert named == [str(out / "model.tar.gz")]
    assert Path(named[0]).is_file()


def test_example_set_first_stage(tmp_path: Path) -> None:
    report = report_of(cli("--data", SOTU, "--top-k", "20", "--json"))
    assert report["queries"]["evaluated"] >= 40 and report["queries"]["skipped_unjudged"] == 1
    assert 0 < report["first_stage"]["metrics"]["nDCG@10"] <= 1


def test_endpoint_on_aws_through_the_client(aws_env, data: Path, run_file: Path) -> None:
    """``--endpoint NAME``: the client with the AWS region and credentials (moto answers)."""
    import requests
    from moto import mock_aws

    candidates = {}
    for qid, docid, _ in RUN:
        if qid != "q5":
            candidates.setdefault(qid, []).append(docid)
    # The endpoint's scores: the later a candidate, the higher, so the ranking reverses.
    bodies = [
        {"Body": json.dumps({"scores": [float(i) for i in range(len(docs))]})}
        for docs in candidates.values()
    ]
    with mock_aws():
        requests.post(
            "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
            json={"results": [{**b, "ContentType": "application/json"} for b in bodies]},
            timeout=10,
        )
        report = report_of(
            cli("--data", data, "--candidates", run_file, "--endpoint", "my-reranker",
                "--region", "us-east-1", "--max-concurrency", "1", "--metrics", MEASURES, "--json")
        )  # fmt: skip
    (system,) = report["systems"]
    assert (system["label"], system["kind"], system["queries"]) == ("my-reranker", "endpoint", 4)
    reversed_run = {q: {d: float(i) for i, d in enumerate(docs)} for q, docs in candidates.items()}
    qrels = {}
    for qid, docid, grade in QRELS:
        qrels.setdefault(qid, {})[docid] = grade
    measures = [ir_measures.parse_measure(name) for name in MEASURES.split(",")]
    expected = ir_measures.calc_aggregate(measures, qrels, reversed_run)
    assert system["metrics"] == pytest.approx({str(m): v for m, v in expected.items()}, rel=1e-12)


@pytest.mark.parametrize("concurrency", [2, 4])
def test_queries_in_parallel_up_to_max_concurrency(
    concurrency: int, data: Path, run_file: Path
) -> None:
    """The stand-in holds each request until ``concurrency`` are in flight together: the run
    finishes only if queries really go out in parallel, and never more at once."""
    import threading

    gate = threading.Barrier(concurrency, timeout=60)
    with RuntimeResponder(None, transform=known_scores, gate=gate) as scorer:
        report = report_of(
            cli("--data", data, "--candidates", run_file, "--endpoint-url", scorer.url,
                "--max-concurrency", concurrency, "--json")
        )  # fmt: skip
    assert report["systems"][0]["queries"] == 4
    assert scorer.max_in_flight == concurrency


def test_instruction_goes_with_every_request(
    data: Path, run_file: Path, known: RuntimeResponder
) -> None:
    task = "Given a question, find the passage that answers it"
    report_of(
        cli("--data", data, "--candidates", run_file, "--endpoint-url", known.url,
            "--instruction", task, "--json")
    )  # fmt: skip
    assert len(known.requests) == 4
    assert all(json.loads(r.body)["instruction"] == task for r in known.requests)


# ---------------------------------------------------------------- what evaluation depends on


def test_evaluation_reaches_into_deploy_only_for_local_mode_and_packaging() -> None:
    """Evaluation is a client of the endpoint: from deploy/ it takes ``LocalEndpoint`` (to serve
    ``--model-data``) and the archive's manifest (its identity and label), nothing else; the
    command line's click stays in deploy/cli/eval.py."""
    import ast

    import sagemaker_reranker.evaluation as evaluation

    allowed = {
        "sagemaker_reranker.deploy.local.endpoint",
        "sagemaker_reranker.deploy.packaging.manifest",
    }
    sources = sorted(Path(evaluation.__path__[0]).glob("*.py"))
    assert len(sources) > 1
    reached = {}
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.startswith(("sagemaker_reranker.deploy", "click")):
                    reached.setdefault(module, []).append(f"{source.name}:{node.lineno}")
    assert {m: where for m, where in reached.items() if m not in allowed} == {}
