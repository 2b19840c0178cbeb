"""``SagemakerRerank``: a LangChain document compressor that reranks with a SageMaker endpoint.

Like LangChain's Cohere and Bedrock rerankers it returns the ``top_n`` documents, best first,
as copies carrying ``metadata["relevance_score"]``, a probability as theirs is (the sigmoid of
the model's raw score); unlike ``CrossEncoderReranker`` it keeps
the score and has a truly asynchronous path (``acompress_documents`` awaits ``ascore``).
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from sagemaker_reranker.client.cross_encoder import SagemakerEndpointCrossEncoder
from sagemaker_reranker.client.scores import sigmoid


class SagemakerRerank(BaseDocumentCompressor):
    """Keeps the ``top_n`` most relevant documents, with their scores in the metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: SagemakerEndpointCrossEncoder
    top_n: int | None = Field(3, ge=0)
    """How many documents to keep; ``None`` keeps all, reordered."""

    @property
    def _normalized(self) -> bool:
        return self.model.normalize == "sigmoid"

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        texts = [document.page_content for document in documents]
        return _scored(documents, self.model.rerank(query, texts, self.top_n), self._normalized)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        texts = [document.page_content for document in documents]
        ranking = await self.model.arerank(query, texts, self.top_n)
        return _scored(documents, ranking, self._normalized)


def _scored(
    documents: Sequence[Document], ranking: list[tuple[int, float]], normalized: bool
) -> list[Document]:
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
