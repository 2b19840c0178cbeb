"""What the SageMaker platform fixes, in one place for the control plane and local mode.

Names, limits and the serving image the endpoint runs, as AWS documents them; and how this
tool names itself to AWS.
"""

import importlib.metadata
from functools import lru_cache

VARIANT = "AllTraffic"  # the one production variant this tool creates and local mode reports
CONTAINER = "primary"  # how the runtime names a single container in its messages
MAX_BODY_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's real-time payload limit
INVOCATION_TIMEOUT = 60.0  # seconds a container has to answer on AWS
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
JSON = "application/json"

# The Hugging Face PyTorch inference image deploy uses by default; local mode's model-server
# tier installs the same transformers version.
TRANSFORMERS_VERSION = "4.51.3"
PYTORCH_VERSION = "2.6.0"
PY_VERSION = "py312"


@lru_cache(maxsize=1)
def user_agent() -> str:
    """``sagemaker-reranker/<version>``: named in every request, as AWS asks tools to do."""
    try:
        version = importlib.metadata.version("sagemaker-reranker")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"sagemaker-reranker/{version}"
