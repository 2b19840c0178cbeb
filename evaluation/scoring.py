"""Score every query's candidates through the client, several queries at once, timing each.

Up to ``max_concurrency`` queries are in flight, each one ``score`` call of the production
client (which cuts a large candidate list into several requests itself). The time a query
takes is the wall time of that call, as an application would see it. Queries found in the
store are not sent again; each new one is stored the moment it is answered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from sagemaker_reranker.evaluation.errors import EvalRunError
from sagemaker_reranker.evaluation.runs import Ranking
from sagemaker_reranker.evaluation.store import QueryResult, ScoreStore


@dataclass(frozen=True)
class Work:
    qid: str
    query: str
    docs: list[str]


def plan_work(
    queries: Mapping[str, str], candidates: Mapping[str, Ranking], stored: dict[str, QueryResult]
) -> tuple[list[Work], dict[str, QueryResult]]:
    """What is left to score, and the stored results still valid for these candidates."""
    todo: list[Work] = []
    kept: dict[str, QueryResult] = {}
    for qid, ranking in candidates.items():
        docs = [doc for doc, _ in ranking]
        previous = stored.get(qid)
        if previous is not None and previous.docs == docs:
            kept[qid] = previous
        else:
            todo.append(Work(qid, queries[qid], docs))
    return todo, kept


def score_queries(
    model,
    label: str,
    work: list[Work],
    texts: Mapping[str, str],
    store: ScoreStore,
    concurrency: int,
    advance: Callable[[int], None] = lambda _: None,
) -> list[QueryResult]:
    """Score ``work`` with ``model`` (a ``SagemakerEndpointCrossEncoder``).

    On the first failure no new query is sent, the ones in flight finish (and are stored),
    and an :class:`EvalRunError` says how many queries are saved for a rerun to resume.
    """
    session = uuid.uuid4().hex[:12]
    started = time.perf_counter()

    def one(item: Work) -> QueryResult:
        pairs = [(item.query, texts[doc]) for doc in item.docs]
        begin = time.perf_counter()
        scores = model.score(pairs)
        end = time.perf_counter()
        return QueryResult(item.qid, item.docs, scores, end - begin, session, end - started)

    results: list[QueryResult] = []
    failure: tuple[Work, BaseException] | None = None
    pending = iter(work)
    running: dict[Future, Work] = {}
    with ThreadPoolExecutor(concurrency, thread_name_prefix="eval-query") as pool:
        try:
            while True:
                while failure is None and len(running) < concurrency:
                    item = next(pending, None)
                    if item is None:
                        break
                    running[pool.submit(one, item)] = item
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    item = running.pop(future)
                    error = future.exception()
                    if error is not None:
                        failure = failure or (item, error)
                        continue
                    result = future.result()
                    store.append(result)
                    results.append(result)
                    advance(1)
        finally:
            store.close()
    if failure is not None:
        item, error = failure
        saved = f"; {len(results)} other queries are saved in {store.path}" if store.path else ""
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise EvalRunError(
            f"{label}: query {item.qid!r} failed: {message}{saved}"
            + ("; run the same command again to resume" if store.path else "")
        ) from error
    return results
