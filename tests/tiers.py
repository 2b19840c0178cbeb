"""The tiers the contract suite runs on, behind one small interface.

=================  ==================================================================
``direct``         ``transform_fn`` of the handler (``tests/handler.py``), called here
``inprocess``      ``LocalEndpoint(server="worker")``: ``POST /invocations`` (container; the
                   label keeps the worker tier's earlier name, which ``server`` accepts)
``inprocess-rt``   the same server through boto3's ``sagemaker-runtime`` client (runtime API)
``mms``            ``LocalEndpoint(server="mms")``, container contract (multi-model-server)
``mms-rt``         the same through boto3
=================  ==================================================================

Test modules import the fixtures (``tier_fixture`` and the two it uses) to use them by name.

Every tier answers with an :class:`Answer` holding the *handler's* status and message: on the
runtime tiers that is the ``OriginalStatusCode``/``OriginalMessage`` of the ``ModelError``
(HTTP 424) boto3 raises, which the answer also records. Statuses differ by the container's
handler service; ``HANDLER_ERRORS_AS`` is the one table of those differences.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from handler import inference
from sagemaker_inference.errors import GenericInferenceToolkitError

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.inference.reranker_contract import JSON

TIERS = ("direct", "inprocess", "inprocess-rt", "mms", "mms-rt")

# The status each container reports for a handler error (None: the handler's own status).
# The Hugging Face serving toolkit (the AWS image, and the mms tier) turns every exception
# into 400 with a message wrapping the original; limits enforced by the runtime front (body
# size) keep their status on every HTTP tier.
HANDLER_ERRORS_AS: dict[str, int | None] = {"direct": None, "inprocess": None, "mms": 400}


def expected_status(kind: str, status: int, origin: str = "handler") -> int:
    """What tier ``kind`` reports for an error raised with ``status`` by ``origin``."""
    replaced = HANDLER_ERRORS_AS[kind]
    return replaced if origin == "handler" and replaced is not None and status >= 400 else status


def mms_skip_reason() -> str | None:
    """Why the mms tier cannot run here (None when it can): only a missing Java skips it."""
    from sagemaker_reranker.deploy.local.mms.backend import unavailable_reason

    return unavailable_reason()


@dataclass(frozen=True)
class Answer:
    """One invocation's outcome as the handler produced it, plus what the wire carried."""

    status: int
    body: bytes
    content_type: str | None = None
    custom_attributes: str | None = None
    wire_status: int | None = None
    error_code: str | None = None

    def scores(self) -> list[float]:
        assert self.status == 200, f"{self.status}: {self.body[:300]!r}"
        return json.loads(self.body)["scores"]

    def message(self) -> str:
        text = self.body.decode("utf-8", errors="replace")
        try:
            payload = json.loads(text)
        except ValueError:
            return text
        if isinstance(payload, dict):
            return str(payload.get("message") or payload.get("Message") or text)
        return text


class Tier:
    """One way of calling the handler; ``kind`` keys the expected-status table."""

    name: str
    kind: str
    http: bool = True  # has the runtime front: /ping, body limits, raw HTTP

    def invoke(
        self,
        body: bytes,
        content_type: str | None = JSON,
        accept: str | None = JSON,
        custom_attributes: str | None = None,
    ) -> Answer:
        raise NotImplementedError

    def claim(self, length: int, body: bytes) -> Answer:
        """Send ``body`` under a Content-Length header claiming ``length`` bytes."""
        raise NotImplementedError


class DirectTier(Tier):
    """``transform_fn`` in this process, with ``model_fn``'s model. A model server calls one
    worker's handler one request at a time, so calls are serialised here too."""

    name = kind = "direct"
    http = False

    def __init__(self, model_dir: Path) -> None:
        from sagemaker_reranker.deploy.local.worker import HandlerContext

        self.model = inference.model_fn(str(model_dir))
        self.context = HandlerContext(str(model_dir))
        self.lock = threading.Lock()

    def invoke(self, body, content_type=JSON, accept=JSON, custom_attributes=None) -> Answer:
        headers = {"X-Amzn-SageMaker-Custom-Attributes": custom_attributes}
        with self.lock:
            self.context.begin({k: v for k, v in headers.items() if v is not None})
            try:
                out = inference.transform_fn(self.model, body, content_type, accept, self.context)
            except GenericInferenceToolkitError as error:
                return Answer(error.status_code, error.message.encode("utf-8"))
            response = self.context.request_processor[0].response_headers
        attributes = response.get("x-amzn-sagemaker-custom-attributes")
        return Answer(200, out, JSON, attributes)


class ContainerTier(Tier):
    """The container contract of a local endpoint: plain HTTP to ``/invocations``."""

    def __init__(self, endpoint: LocalEndpoint, kind: str) -> None:
        self.endpoint = endpoint
        self.kind = kind
        self.name = kind
        self.path = "/invocations"

    def invoke(self, body, content_type=JSON, accept=JSON, custom_attributes=None) -> Answer:
        headers = {
            "Content-Type": content_type,
            "Accept": accept,
            "X-Amzn-SageMaker-Custom-Attributes": custom_attributes,
        }
        return self._send(body, {k: v for k, v in headers.items() if v is not None})

    def claim(self, length: int, body: bytes) -> Answer:
        return self._send(body, {"Content-Type": JSON, "Content-Length": str(length)})

    def _send(self, body: bytes, headers: dict[str, str]) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.endpoint.port, timeout=120)
        try:
            connection.putrequest("POST", self.path, skip_accept_encoding=True)
            headers.setdefault("Content-Length", str(len(body)))
            for key, value in headers.items():
                connection.putheader(key, value)
            connection.endheaders()
            try:
                connection.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (and closed) before reading a refused body
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return self._answer(response, data)

    def _answer(self, response: http.client.HTTPResponse, data: bytes) -> Answer:
        return Answer(
            response.status,
            data,
            response.getheader("Content-Type"),
            response.getheader("X-Amzn-SageMaker-Custom-Attributes"),
            response.status,
        )


class RuntimeTier(ContainerTier):
    """The runtime API of a local endpoint through a real boto3 ``sagemaker-runtime`` client."""

    def __init__(self, endpoint: LocalEndpoint, kind: str) -> None:
        super().__init__(endpoint, kind)
        self.name = f"{kind}-rt"
        self.path = f"/endpoints/{endpoint.endpoint_name}/invocations"
        self.client = endpoint.runtime_client(max_pool_connections=32)

    def invoke(self, body, content_type=JSON, accept=JSON, custom_attributes=None) -> Answer:
        params = {
            "EndpointName": self.endpoint.endpoint_name,
            "Body": body,
            "ContentType": content_type,
            "Accept": accept,
            "CustomAttributes": custom_attributes,
        }
        try:
            reply = self.client.invoke_endpoint(
                **{k: v for k, v in params.items() if v is not None}
            )
        except ClientError as error:
            return runtime_error_answer(error.response)
        return Answer(
            200,
            reply["Body"].read(),
            reply.get("ContentType"),
            reply.get("CustomAttributes"),
            reply["ResponseMetadata"]["HTTPStatusCode"],
        )

    def _answer(self, response: http.client.HTTPResponse, data: bytes) -> Answer:
        answer = super()._answer(response, data)
        code = (response.getheader("x-amzn-ErrorType") or "").split(":")[0] or None
        if code != "ModelError":
            return Answer(answer.status, data, wire_status=answer.status, error_code=code)
        payload = json.loads(data)
        return Answer(
            payload["OriginalStatusCode"],
            payload["OriginalMessage"].encode("utf-8"),
            wire_status=answer.status,
            error_code=code,
        )


def runtime_error_answer(response: dict) -> Answer:
    """A botocore error response as the handler's answer (ModelError) or the runtime's own."""
    code = response["Error"]["Code"]
    wire = response["ResponseMetadata"]["HTTPStatusCode"]
    if code == "ModelError":
        message = response["OriginalMessage"].encode("utf-8")
        return Answer(response["OriginalStatusCode"], message, None, None, wire, code)
    return Answer(wire, response["Error"]["Message"].encode("utf-8"), None, None, wire, code)


class EndpointPool:
    """Local endpoints on the tiny archive, one per server kind, started on first use and
    stopped (with their ports checked closed) at the end of the session."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.endpoints: dict[str, LocalEndpoint] = {}

    def get(self, kind: str) -> LocalEndpoint:
        if kind not in self.endpoints:
            endpoint = LocalEndpoint(model_data=self.archive, server=kind)
            endpoint.start()
            self.endpoints[kind] = endpoint
        return self.endpoints[kind]

    def close(self) -> None:
        for endpoint in self.endpoints.values():
            port = endpoint.port
            endpoint.stop()
            assert not port_open("127.0.0.1", port), f"port {port} still listening"


@pytest.fixture(name="endpoint_pool", scope="session")
def endpoint_pool_fixture(tiny_archive: Path):
    pool = EndpointPool(tiny_archive)
    yield pool
    pool.close()


@pytest.fixture(name="direct_tier", scope="session")
def direct_tier_fixture(tiny_model_dir: Path) -> DirectTier:
    return DirectTier(tiny_model_dir)


def skip_unless_kind_available(kind: str) -> None:
    if kind == "mms":
        reason = mms_skip_reason()
        if reason:
            print(f"\nSKIP mms tier: {reason}")
            pytest.skip(reason)
        # Build the tier's virtualenv once, here, not inside an endpoint's start-up timeout.
        from sagemaker_reranker.deploy.local.mms.venv import ensure_venv

        ensure_venv()


def _param(name: str):
    kind = name.removesuffix("-rt")
    return pytest.param(name, marks=[pytest.mark.slow, pytest.mark.mms] if kind == "mms" else [])


@pytest.fixture(name="tier", scope="session", params=[_param(name) for name in TIERS])
def tier_fixture(request, direct_tier: DirectTier, endpoint_pool: EndpointPool) -> Tier:
    """Each tier in turn (session scoped: each server starts once)."""
    name = request.param
    kind = name.removesuffix("-rt")
    skip_unless_kind_available(kind)
    if kind == "direct":
        return direct_tier
    endpoint = endpoint_pool.get(kind)
    return RuntimeTier(endpoint, kind) if name.endswith("-rt") else ContainerTier(endpoint, kind)
