"""LangChain client for a reranker behind a SageMaker endpoint."""

from sagemaker_reranker.client.compressor import SagemakerRerank
from sagemaker_reranker.client.content_handlers import (
    ContentHandler,
    HFTextClassificationHandler,
    PairsHandler,
    RerankHandler,
    TEIHandler,
    TextPairsHandler,
)
from sagemaker_reranker.client.cross_encoder import SagemakerEndpointCrossEncoder
from sagemaker_reranker.client.errors import RerankerEndpointError

__all__ = [
    "ContentHandler",
    "HFTextClassificationHandler",
    "PairsHandler",
    "RerankHandler",
    "RerankerEndpointError",
    "SagemakerEndpointCrossEncoder",
    "SagemakerRerank",
    "TEIHandler",
    "TextPairsHandler",
]
