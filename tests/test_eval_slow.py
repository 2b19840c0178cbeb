"""``eval`` where it takes longer: the model-server tier, a terminal's progress bar, and the
memory of the eval process over a 500,000-document corpus (measured, never timed)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from runtime_responder import RuntimeResponder
from terminal import stderr_on_a_terminal
from test_eval import QUERIES, RUN, known_scores, write_beir, write_trec

from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.evaluation.runs import read_run

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from sagemaker_reranker.deploy.cli import main; main()", "eval"]
GIB = 1024**3


@pytest.mark.mms
def test_model_server_tier_scores_as_the_in_process_tier(tmp_path: Path, tiny_archive, endpoint):
    """One run, two systems: the archive on multi-model-server (``--server mms``) and the same
    archive on the in-process tier (the session's endpoint, through ``--endpoint-url``)."""
    from sagemaker_reranker.deploy.local.mms.backend import unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    data = write_beir(tmp_path / "data")
    run = write_trec(tmp_path / "first.trec", RUN)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["eval", "--data", str(data), "--candidates", str(run), "--server", "mms",
         "--model-data", str(tiny_archive), "--endpoint-url", endpoint.url,
         "--label", "mms", "--label", "inprocess", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [s["label"] for s in report["systems"]] == ["mms", "inprocess"]
    mms, inprocess = (
        read_run(out / "runs" / f"{n}.trec", QUERIES)[0] for n in ("mms", "inprocess")
    )
    assert mms.keys() == inprocess.keys() == {"q1", "q2", "q3", "q4"}
    for qid in mms:
        assert dict(mms[qid]) == pytest.approx(dict(inprocess[qid]), abs=1e-4)


def test_progress_bar_on_a_terminal_and_none_with_json(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "data")
    run = write_trec(tmp_path / "first.trec", RUN)
    with RuntimeResponder(None, transform=known_scores) as scorer:
        args = ["--data", data, "--candidates", run, "--endpoint-url", scorer.url, "--label", "k"]
        terminal = stderr_on_a_terminal([*CLI, *map(str, args)])
        quiet = subprocess.run(
            [*CLI, *map(str, args), "--json"], capture_output=True, text=True, timeout=120
        )
    assert "k  [" in terminal and "4/4" in terminal, terminal
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert json.loads(quiet.stdout)["systems"][0]["queries"] == 4


def length_scores(body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
    pairs = json.loads(body)["pairs"]
    return 200, json.dumps({"scores": [float(len(doc)) for _, doc in pairs]}).encode()


def write_large_set(root: Path, documents: int, queries: int) -> None:
    """Short documents over a 20,000-word vocabulary; each query is three words of one
    document, which is judged relevant."""
    rng = random.Random(7)
    words = [f"w{i}" for i in range(20_000)]
    (root / "qrels").mkdir(parents=True)
    texts = {}
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for index in range(documents):
            text = " ".join(rng.choices(words, k=10))
            if index < queries:
                texts[index] = text
            handle.write(json.dumps({"_id": f"d{index}", "text": text}) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as handle:
        for index, text in texts.items():
            query = " ".join(text.split()[:3])
            handle.write(json.dumps({"_id": f"q{index}", "text": query}) + "\n")
    lines = ["query-id\tcorpus-id\tscore", *(f"q{i}\td{i}\t2" for i in texts)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_memory_of_500k_documents_and_200_queries(tmp_path: Path) -> None:
    """100 candidates for each of 200 queries over 500,000 documents, all scored: the eval
    process's peak RSS stays under 1 GiB with the BM25 first stage, which indexes the corpus,
    and is far lower with a run file, where only the candidates are kept."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak RSS is read from /proc (Linux)")
    data = tmp_path / "large"
    write_large_set(data, 500_000, 200)
    with RuntimeResponder(None, transform=length_scores) as scorer:
        bm25, bm25_peak = _eval_in_a_process(
            tmp_path / "bm25", "--data", data, "--endpoint-url", scorer.url
        )
        run = tmp_path / "bm25" / "out" / "runs" / "first-stage.trec"
        candidates, run_peak = _eval_in_a_process(
            tmp_path / "run", "--data", data, "--candidates", run, "--endpoint-url", scorer.url
        )
        requests = len(scorer.requests)
    mib = 2**20
    print(f"\neval peak RSS: BM25 {bm25_peak / mib:.0f} MiB, run file {run_peak / mib:.0f} MiB")
    assert bm25_peak < GIB and run_peak < bm25_peak / 2
    assert requests == 2 * 200
    for report in (bm25, candidates):
        assert report["queries"]["evaluated"] == 200
        assert report["systems"][0]["pairs"] == 200 * 100
    assert bm25["first_stage"]["metrics"]["R@100"] > 0.5
    assert candidates["systems"][0]["metrics"] == bm25["systems"][0]["metrics"]


# The eval command, reporting its process's peak RSS (VmHWM) at exit. Measured from inside:
# a child's rusage would also count the forked parent's pages before exec.
MEASURED = """
import atexit, sys
def record(path=sys.argv.pop(1)):
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(peak.split()[1])
atexit.register(record)
from sagemaker_reranker.deploy.cli import main
main()
"""


def _eval_in_a_process(folder: Path, *args: object) -> tuple[dict, int]:
    """The report and peak RSS in bytes of one ``eval --json`` in its own process."""
    folder.mkdir()
    peak = folder / "peak-kib"
    command = [sys.executable, "-c", MEASURED, str(peak), "eval", *map(str, args)]
    result = subprocess.run(
        [*command, "--out", str(folder / "out"), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), int(peak.read_text()) * 1024
