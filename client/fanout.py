"""Waiting for the requests of one call, which succeeds whole or fails whole.

The first failure cancels the requests that have not started and is raised; scores are never
returned for part of the input.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import FIRST_EXCEPTION, Future, wait

from sagemaker_reranker.client.reading import Deadline

NO_DEADLINE = Deadline(None)


async def gather_or_first_error(
    tasks: list[asyncio.Future], deadline: Deadline = NO_DEADLINE, name: str | None = None
) -> list[list[float]]:
    """Results in order; on the first failure, or at ``deadline``, cancel the tasks still
    waiting and raise (the deadline's error, for endpoint ``name``)."""
    if not tasks:
        return []
    done, pending = await asyncio.wait(
        tasks, timeout=deadline.remaining(), return_when=asyncio.FIRST_EXCEPTION
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [task.exception() for task in tasks if task in done and task.exception()]
    if errors:
        raise errors[0]
    if pending:
        raise deadline.error(name)
    return [task.result() for task in tasks]


def results_or_first_error(
    futures: list[Future], deadline: Deadline = NO_DEADLINE, name: str | None = None
) -> list[list[float]]:
    """Results in order; on the first failure, or at ``deadline``, cancel what has not
    started and raise (the deadline's error, for endpoint ``name``)."""
    done, pending = wait(futures, timeout=deadline.remaining(), return_when=FIRST_EXCEPTION)
    for future in pending:
        future.cancel()
    for future in futures:
        if future in done and future.exception() is not None:
            raise future.exception()
    if pending:
        raise deadline.error(name)
    return [future.result() for future in futures]
