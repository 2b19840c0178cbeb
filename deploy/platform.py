"""What the SageMaker platform fixes for the control plane and local mode: names and the
serving image the endpoint runs, as AWS documents them. The wire's limits and headers are
the contract's (``inference/reranker_contract.py``)."""

VARIANT = "AllTraffic"  # the one production variant this tool creates and local mode reports
CONTAINER = "primary"  # how the runtime names a single container in its messages

# The Hugging Face PyTorch inference image deploy uses by default; local mode's model-server
# tier installs the same transformers version.
TRANSFORMERS_VERSION = "4.51.3"
PYTORCH_VERSION = "2.6.0"
PY_VERSION = "py312"
