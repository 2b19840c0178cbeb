"""sagemaker-reranker: a SageMaker-hosted cross-encoder reranker for LangChain."""
