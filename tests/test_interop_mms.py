"""The client against the model-server tier: multi-model-server with the Hugging Face serving
toolkit, as in the AWS image, behind the local runtime front.

- the HF text-classification handler against the toolkit's own default pipeline
  (``HF_TASK=text-classification``, no ``code/inference.py``): raw logits, input order;
- our handler there: every handler error arrives as a 400 wrapping the original, as on AWS,
  and the client reports the original status and message.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from handler import inference

from sagemaker_reranker.client import (
    HFTextClassificationHandler,
    RerankerEndpointError,
    SagemakerEndpointCrossEncoder,
)
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.mms import backend as mms
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.deploy.local.server import LocalServer, LocalSettings

pytestmark = [pytest.mark.slow, pytest.mark.mms]

QUERY = "what is the plan for the economy?"
DOCS = [
    "we will lower costs for american families",
    "infrastructure jobs for workers",
    "the price of energy " * 200,  # far over 512 tokens: the pipeline must truncate
    "tax credit",
]
PAIRS = [(QUERY, doc) for doc in DOCS] * 3


@pytest.fixture(scope="module", autouse=True)
def model_server_available() -> None:
    reason = mms.unavailable_reason()
    if reason:
        print(f"\nSKIP model-server tier: {reason}")
        pytest.skip(reason)


def runtime_client(url: str):
    import boto3

    return boto3.client(
        "sagemaker-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def hf_pipeline(tiny_model_dir: Path):
    """The toolkit's default pipeline under MMS, behind the project's runtime front."""
    assert not (tiny_model_dir / "code").exists()
    probe = json.dumps({"inputs": [{"text": QUERY, "text_pair": "probe"}]}).encode()
    backend = mms.MmsBackend(tiny_model_dir, env={"HF_TASK": "text-classification"}, probe=probe)
    server = LocalServer(backend, LocalSettings(endpoint_name="hf-pipeline"))
    server.load()
    assert backend.health() == (True, "healthy"), backend.health()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    port = server.server_address[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        backend.stop()
        thread.join(timeout=10)
    assert not port_open("127.0.0.1", port)


def test_hf_text_classification_handler_gets_raw_scores_in_order(hf_pipeline, tiny_model_dir):
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="hf-pipeline",
        client=runtime_client(hf_pipeline),
        content_handler=HFTextClassificationHandler(),
        max_pairs_per_request=5,
    )
    scores = model.score(PAIRS)
    expected = inference.model_fn(str(tiny_model_dir)).score(PAIRS)
    # transformers 4.x in the container vs 5.x here: equal to float noise.
    assert scores == pytest.approx(expected, abs=1e-5)


def test_hf_container_errors_are_unwrapped_to_the_handlers_status(tiny_archive: Path):
    with LocalEndpoint(model_data=tiny_archive, server="mms") as endpoint:
        model = SagemakerEndpointCrossEncoder(
            endpoint_name=endpoint.endpoint_name,
            client=endpoint.runtime_client(),
            max_pairs_per_request=5000,
        )
        assert len(model.score(PAIRS)) == len(PAIRS)
        with pytest.raises(RerankerEndpointError) as raised:
            model.score([("q", "d")] * 1500)  # over RERANKER_MAX_PAIRS (1024)
    error = raised.value
    assert error.original_status == 400  # what the HF toolkit reports for every error
    assert error.status == 413  # what the handler raised, parsed back
    assert error.message.startswith("request has 1500 pairs, over the limit of 1024")
    assert not error.retryable
