"""``SagemakerRerank``: a LangChain document compressor that reranks with a SageMaker endpoint.

Like LangChain's Cohere and Bedrock rerankers it returns the ``top_n`` documents, best first,
as copies carrying ``metadata["relevance_score"]``, a probability as theirs is (the sigmoid of
the model's raw score); unlike ``CrossEncoderReranker`` it keeps
the score and has a truly asynchronous path (``acompress_documents`` awaits ``ascore``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from copy import deepcopy
from functools import partial

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, model_validator

from sagemaker_reranker.client.content_handlers import RerankHandler
from sagemaker_reranker.client.cross_encoder import SagemakerEndpointCrossEncoder
from sagemaker_reranker.client.reading import Deadline
from sagemaker_reranker.client.scores import sigmoid
from sagemaker_reranker.client.splitting import query_pairs

Ranking = list[tuple[int, float]]


class SagemakerRerank(BaseDocumentCompressor):
    """Keeps the ``top_n`` most relevant documents, with their scores in the metadata.

    With ``server_top_n=True`` (the model's ``content_handler`` must be a ``RerankHandler``)
    the endpoint ranks: one rerank request carries ``top_n`` and only the kept documents'
    results come back. Documents that need more than one request (the model's
    ``max_pairs_per_request``, ``max_request_bytes``, ``max_tokens_per_request``) are scored
    all and ranked here, as without it; so is ``top_n=None`` or ``0``. Off by default: of the
    services speaking this shape, some name the field otherwise (Voyage: ``top_k``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: SagemakerEndpointCrossEncoder
    top_n: int | None = Field(3, ge=0)
    """How many documents to keep; ``None`` keeps all, reordered."""
    server_top_n: bool = False
    """Send ``top_n`` to the endpoint, which answers only the kept documents (see above)."""

    @model_validator(mode="after")
    def _server_top_n_needs_the_rerank_shape(self) -> SagemakerRerank:
        if self.server_top_n and not isinstance(self.model.content_handler, RerankHandler):
            raise ValueError(
                "server_top_n needs the model's content_handler to be a RerankHandler, got "
                f"{type(self.model.content_handler).__name__}"
            )
        return self

    @property
    def _normalized(self) -> bool:
        return self.model.normalize == "sigmoid"

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        texts = [document.page_content for document in documents]
        request = self._one_top_n_request(query, texts)
        if request is not None:
            return _scored(documents, request(), normalized=False)
        return _scored(documents, self.model.rerank(query, texts, self.top_n), self._normalized)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        texts = [document.page_content for document in documents]
        loop = asyncio.get_running_loop()
        pool = self.model._executor()
        request = await loop.run_in_executor(pool, self._one_top_n_request, query, texts)
        if request is not None:
            return _scored(documents, await loop.run_in_executor(pool, request), normalized=False)
        ranking = await self.model.arerank(query, texts, self.top_n)
        return _scored(documents, ranking, self._normalized)

    def _one_top_n_request(self, query: str, texts: list[str]) -> Callable[[], Ranking] | None:
        """The call that asks the endpoint for the ``top_n`` ranking, returning ``(index, raw
        score)`` best first; ``None`` where the documents are scored all and ranked here."""
        top_n = self.top_n
        if not self.server_top_n or not top_n:
            return None
        model = self.model
        count, requests = model._prepare(query_pairs(query, texts), None, top_n=top_n)
        if len(requests) != 1:
            return None
        read = partial(model.content_handler.ranked_output, count=count, top_n=top_n)
        return partial(model._invoke, requests[0], Deadline.start(model.timeout), read)


def _scored(documents: Sequence[Document], ranking: Ranking, normalized: bool) -> list[Document]:
    """Copies of the ranked documents (the caller's stay untouched) with their probability
    (``normalized``: the model already applied the sigmoid)."""
    probability = (lambda score: score) if normalized else sigmoid
    ranked = []
    for index, score in ranking:
        original = documents[index]
        metadata = deepcopy(original.metadata)
        metadata["relevance_score"] = probability(score)
        ranked.append(
            Document(page_content=original.page_content, metadata=metadata, id=original.id)
        )
    return ranked
