"""A BM25 first stage (``bm25s``) when no run file gives the candidates.

BM25 has to see the whole corpus, so here memory does grow with it: the corpus is streamed
once through the tokenizer, keeping per document only its id and its token ids (no text), and
``bm25s`` turns those into a sparse score matrix (float32 scores, int32 indices: about 12 bytes
per distinct term of a document). The token lists are dropped once the index is built; the
candidates' texts are read in a second pass (``data.load_documents``). Measured figures are in
docs/eval.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sagemaker_reranker.evaluation.data import iter_corpus
from sagemaker_reranker.evaluation.errors import EvalInputError
from sagemaker_reranker.evaluation.runs import Ranking, ranked


@dataclass(frozen=True)
class Bm25Result:
    rankings: dict[str, Ranking]
    origin: dict[str, str]
    documents: int
    vocabulary: int


def bm25_candidates(corpus: Path, queries: Mapping[str, str], top_k: int) -> Bm25Result:
    """The ``top_k`` documents per query with a positive BM25 score, ranked (score, then id).

    A query none of whose terms occur in the corpus has no candidates: an error naming it.
    """
    import bm25s

    tokenizer = bm25s.tokenization.Tokenizer(lower=True, stopwords="en")
    ids: list[str] = []

    def texts():
        for _, docid, text in iter_corpus(corpus):
            ids.append(docid)
            yield text

    token_ids = list(tokenizer.streaming_tokenize(texts(), update_vocab=True))
    if not ids:
        raise EvalInputError(f"{corpus}: no documents")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(docid for docid in ids if docid in seen or seen.add(docid))
        raise EvalInputError(f"{corpus}: document {duplicate!r} appears twice")
    vocabulary = tokenizer.get_vocab_dict()
    index = bm25s.BM25()
    index.index((token_ids, vocabulary), show_progress=False)
    del token_ids
    empty = vocabulary.get("")
    rankings: dict[str, Ranking] = {}
    origin: dict[str, str] = {}
    for qid, text in queries.items():
        known = next(tokenizer.streaming_tokenize([text], update_vocab="never"))
        terms = [term for term in known if term != empty]
        if not terms:
            raise EvalInputError(
                f"query {qid!r}: no BM25 candidates (none of its words occurs in {corpus.name}); "
                "pass candidates with --candidates RUN"
            )
        scores = index.get_scores_from_ids(terms)
        rankings[qid] = _top(scores, ids, top_k)
        if not rankings[qid]:
            raise EvalInputError(f"query {qid!r}: no BM25 candidates; pass --candidates RUN")
        for docid, _ in rankings[qid]:
            origin[docid] = f"BM25 candidate of query {qid!r}"
    return Bm25Result(rankings, origin, len(ids), len(vocabulary))


def _top(scores: np.ndarray, ids: list[str], k: int) -> Ranking:
    """The best ``k`` positive scores; every document tied with the k-th is considered, so the
    cut falls where the (score, id) order puts it."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:
        kth = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
        positive = positive[scores[positive] >= kth]
    return ranked((ids[i], float(scores[i])) for i in positive)[:k]
