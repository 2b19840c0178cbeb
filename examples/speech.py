"""The example every demo, test and benchmark of this project uses: a speech and one query.

The text is the 2022 State of the Union address, as in LangChain's "Cross Encoder Reranker"
page; it is split into 500-character chunks with 100 characters of overlap, as that page does.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_QUERY = "What is the plan for the economy?"
SPEECH = Path(__file__).resolve().parent / "data" / "state_of_the_union.txt"
CHUNK_SIZE, CHUNK_OVERLAP = 500, 100
TOP_K = 20  # the first stage's candidates, as the page's retriever (k=20)


def split_speech(path: Path = SPEECH) -> list:
    """The speech's chunks as LangChain ``Document``s (``metadata["source"]`` is the file)."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass --text PATH to the speech")
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    text = path.read_text(encoding="utf-8")
    return splitter.create_documents([text], metadatas=[{"source": str(path)}])


def speech_chunks(path: Path = SPEECH) -> list[str]:
    """The chunks' texts."""
    return [document.page_content for document in split_speech(path)]
