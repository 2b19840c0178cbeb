"""The ``inprocess`` backend: the handler run by ``sagemaker_inference`` in this process."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from sagemaker_reranker.deploy.local.backend import (
    BackendResponse,
    InvocationTimeout,
    container_headers,
)
from sagemaker_reranker.deploy.platform import CUSTOM_ATTRIBUTES, JSON

logger = logging.getLogger("sagemaker_reranker.local")


class HandlerContext:
    """The part of multi-model-server's ``mms.context.Context`` that handlers use.

    MMS keeps one context per worker and swaps in each request's headers before calling the
    handler service; ``sagemaker_inference`` stores the first context it sees and passes that
    object to ``transform_fn`` on every later call, so it must be this same, updated object.
    """

    def __init__(self, model_dir: str) -> None:
        self.system_properties = {"model_dir": model_dir, "gpu_id": None, "batch_size": 1}
        self.request_processor: list[RequestProcessor] = []

    def begin(self, headers: dict[str, str]) -> None:
        """Start a new request: its headers in, no response status or headers yet."""
        self.request_processor = [RequestProcessor(headers)]

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.request_processor[idx].get_request_properties().get(key)

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].response_headers[key.lower()] = value

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.request_processor[idx].status = code


class RequestProcessor:
    """One request's headers and the response status and headers the handler sets."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers
        self.status = 200
        self.response_headers: dict[str, str] = {}

    def get_request_properties(self) -> dict[str, str]:
        return self._headers


def _client_safe_transformer():
    """``sagemaker_inference``'s Transformer with one change: its error responses.

    The stock ``handle_error`` puts a Python traceback in the response body; this one answers
    ``{"message": ...}`` in JSON. And the toolkit
    decodes ``application/json`` bodies to ``str`` itself, before ``transform_fn`` runs, so
    a client's invalid UTF-8 raises ``UnicodeDecodeError`` inside the toolkit, which it
    reports as a 500 (likewise a ``RecursionError`` from nesting): client errors, so 400.
    For invalid UTF-8 the handler gets the raw bytes, as the Hugging Face container passes
    them, and names the problem in its own words.
    Everything else (dispatch, decoding, content types) stays the toolkit's own code.
    """
    from sagemaker_inference.errors import GenericInferenceToolkitError
    from sagemaker_inference.transformer import Transformer

    class ClientSafeTransformer(Transformer):
        def transform(self, data, context):
            self._bodies = [item.get("body") for item in data]
            return super().transform(data, context)

        def handle_error(self, context, inference_exception, trace):
            error = sys.exc_info()[1]  # called from inside Transformer.transform's except
            if isinstance(error, UnicodeDecodeError):
                inference_exception = self._verdict_on_raw_body(context, error)
            elif isinstance(error, RecursionError):
                inference_exception = GenericInferenceToolkitError(
                    400, "request body is nested too deeply"
                )
            status = inference_exception.status_code
            if status >= 500:
                logger.warning("handler error %d: %s", status, type(error).__name__)
                logger.debug("%s", trace)
            context.set_response_status(code=status, phrase=inference_exception.phrase)
            # JSON, as the local front's own errors and the model server's are.
            context.set_response_content_type(0, JSON)
            return [json.dumps({"message": inference_exception.message})]

        def _verdict_on_raw_body(self, context, error: UnicodeDecodeError):
            headers = context.request_processor[0].get_request_properties()
            try:
                self._transform_fn(
                    self._model,
                    self._bodies[0],
                    headers.get("Content-Type"),
                    headers.get("Accept"),
                )
            except GenericInferenceToolkitError as verdict:
                return verdict
            except Exception:  # a handler that cannot take bytes: say what the toolkit saw
                pass
            return GenericInferenceToolkitError(400, f"request body is not UTF-8: {error}")

    return ClientSafeTransformer()


class InProcessBackend:
    """``code/inference.py`` run by ``sagemaker_inference``'s ``DefaultHandlerService``.

    One worker thread owns the handler service and its context and serves requests one at a
    time from a queue, as one MMS worker does (the model's tokenizer is not safe to share
    between threads). A request that times out leaves the worker to finish it; later requests
    wait behind it within their own timeout.
    """

    def __init__(self, model_dir: Path) -> None:
        from sagemaker_inference.default_handler_service import DefaultHandlerService

        self._context = HandlerContext(str(model_dir))
        self._service = DefaultHandlerService(transformer=_client_safe_transformer())
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handler")
        self._failure: str | None = "model not loaded"

    def start(self) -> None:
        try:
            self._worker.submit(self._service.initialize, self._context).result()
        except Exception as error:  # any model_fn failure: report it, keep serving /ping
            self._failure = f"model_fn failed: {type(error).__name__}: {error}"
            logger.error("%s", self._failure)
            logger.debug("%s", traceback.format_exc())
        else:
            self._failure = None

    def health(self) -> tuple[bool, str]:
        return (self._failure is None, self._failure or "healthy")

    def invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None,
        timeout: float,
    ) -> BackendResponse:
        headers = container_headers(content_type, accept, custom_attributes)
        future = self._worker.submit(self._handle, body, headers)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()  # only stops it if still queued; a running forward pass finishes
            raise InvocationTimeout(f"no answer within {timeout:g} s") from None

    def _handle(self, body: bytes, headers: dict[str, str]) -> BackendResponse:
        self._context.begin(headers)
        (result,) = self._service.handle([{"body": body}], self._context)
        processor = self._context.request_processor[0]
        response_headers = processor.response_headers
        return BackendResponse(
            status=processor.status,
            body=result if isinstance(result, bytes) else str(result).encode("utf-8"),
            content_type=response_headers.get("content-type", "text/plain; charset=utf-8"),
            custom_attributes=response_headers.get(CUSTOM_ATTRIBUTES.lower()),
        )

    def stop(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
