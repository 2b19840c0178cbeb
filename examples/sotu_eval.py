"""``make eval``: the labelled State of the Union set, reranked by the demo's model.

Packages the model as ``make demo`` does (``BAAI/bge-reranker-base`` unless ``--model`` or
``MODEL`` says otherwise; offline, the MiniLM-L6 encoder with an untrained head, labelled as
such), then runs ``sagemaker-reranker eval`` on ``examples/data/sotu-eval`` with a BM25
first stage of 20 candidates per query, one query at a time, writing the report and plot to
``--out``, beside the archive it evaluated (``model.tar.gz``, which the report names). Run
``python -m sagemaker_reranker.examples.sotu_eval``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from sagemaker_reranker.examples.demo import example_parser, package_model, quiet_libraries
from sagemaker_reranker.examples.speech import TOP_K

SOTU_EVAL = Path(__file__).resolve().parent / "data" / "sotu-eval"
OFFLINE_LABEL = "minilm offline (untrained head)"


def run(model: str, out: Path, top_k: int = TOP_K) -> int:
    from sagemaker_reranker.deploy.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="reranker-eval-") as scratch:
        packaged, label = package_model(model, Path(scratch))
        # The report names the archive it scored: it lives on with the report, not in scratch.
        out.mkdir(parents=True, exist_ok=True)
        archive = shutil.move(packaged, out / "model.tar.gz")
        print(f"reranker: {label}", flush=True)
        short = label if label == model else OFFLINE_LABEL
        # Local mode answers one request at a time: one query in flight keeps the latency
        # the model's own, without time spent waiting behind other queries.
        args = ["eval", "--data", str(SOTU_EVAL), "--top-k", str(top_k), "--max-concurrency", "1"]
        args += ["--model-data", str(archive), "--label", short, "--out", str(out)]
        try:
            cli.main(args, prog_name="sagemaker-reranker")
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".work/eval"), help="output folder")
    parser.add_argument("--top-k", type=int, default=TOP_K, help="BM25 candidates per query")
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        return run(args.model, args.out, args.top_k)
    except Exception as error:  # one line for the user, not a traceback
        print(f"eval failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
