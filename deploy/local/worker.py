"""The ``worker`` backend: the handler run by ``sagemaker_inference`` in a worker process.

The toolkit's handler service runs ``code/inference.py`` in one worker process this backend
starts and supervises (see :class:`WorkerBackend`), with no model server between: the front
stays up when the handler's process dies, answers the request in flight with a 500, and
starts the worker again.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from sagemaker_reranker.deploy.local.backend import BackendResponse, Invocation, InvocationTimeout
from sagemaker_reranker.inference.reranker_contract import CUSTOM_ATTRIBUTES, HANDLER_DIR, JSON

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
        self.message: str | None = None  # an error's, as the handler service worded it

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
            context.request_processor[0].message = inference_exception.message
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


class _Handler:
    """The toolkit's handler service and its one context, as one MMS worker holds them."""

    def __init__(self, model_dir: str) -> None:
        from sagemaker_inference.default_handler_service import DefaultHandlerService

        self.context = HandlerContext(model_dir)
        self.service = DefaultHandlerService(transformer=_client_safe_transformer())

    def load(self) -> str | None:
        """Run ``model_fn`` (with the handler's warm-up); why it failed, or None."""
        try:
            self.service.initialize(self.context)
        except Exception as error:  # any model_fn failure: report it, keep serving /ping
            logger.debug("%s", traceback.format_exc())
            return f"model_fn failed: {type(error).__name__}: {error}"
        return None

    def handle(self, body: bytes, headers: dict[str, str]) -> BackendResponse:
        self.context.begin(headers)
        (result,) = self.service.handle([{"body": body}], self.context)
        processor = self.context.request_processor[0]
        response_headers = processor.response_headers
        return BackendResponse(
            status=processor.status,
            body=result if isinstance(result, bytes) else str(result).encode("utf-8"),
            content_type=response_headers.get("content-type", "text/plain; charset=utf-8"),
            custom_attributes=response_headers.get(CUSTOM_ATTRIBUTES.lower()),
            message=processor.message,
        )


def _worker_main(connection: Connection, model_dir: str, env: dict[str, str]) -> None:
    """The worker process: load the model, then answer requests until the pipe closes.

    ``env`` and ``model_dir/code`` on the import path make this process the model's own
    container, whichever model the front's process was started for (components share it).
    """
    os.environ.update(env)
    sys.path.insert(0, str(Path(model_dir) / HANDLER_DIR))
    # The front owns the worker's life: Ctrl-C and SIGTERM reach the front, which stops it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s",
    )
    handler = _Handler(model_dir)
    connection.send(("loaded", handler.load()))
    while True:
        try:
            body, headers = connection.recv()
        except (EOFError, OSError):  # the front went away
            return
        connection.send(handler.handle(body, headers))


def _how_it_died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        oom = " (as the kernel's out-of-memory killer does)" if name == "SIGKILL" else ""
        return f"was killed by {name}{oom}"
    return f"exited with code {exitcode}"


class WorkerBackend:
    """``code/inference.py`` run by ``sagemaker_inference``'s ``DefaultHandlerService``.

    The handler runs in one worker process, as in one MMS worker, and serves one request at a
    time: a single thread here talks to it, so requests queue in order (the model's tokenizer
    is not safe to share between threads). A request that times out leaves the worker to
    finish it; later requests wait behind it within their own timeout.

    A worker that dies (``os._exit`` in the handler, a signal, the kernel's OOM killer) costs
    the request it was answering a 500 that says so, at once; the worker is then started
    again, loading the model anew, and the requests behind it are answered by the new one.
    If the new worker cannot load the model, ``health`` reports why (``/ping`` unhealthy).
    """

    def __init__(self, model_dir: Path, env: dict[str, str] | None = None) -> None:
        self.model_dir = str(model_dir)
        self.env = dict(env or {})
        self._spawner = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handler")
        self._failure: str | None = "model not loaded"
        self._stopped = False
        self._restart_queued = False
        self.restarts = 0

    def start(self) -> None:
        self._failure = self._worker.submit(self._spawn).result()
        if self._failure:
            logger.error("%s", self._failure)

    def health(self) -> tuple[bool, str]:
        if self._failure is None and not self._alive():
            self._queue_restart()  # died while idle: start the next one now
        return (self._failure is None, self._failure or "healthy")

    def invoke(self, request: Invocation, timeout: float) -> BackendResponse:
        future = self._worker.submit(self._handle, request.body, request.headers())
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()  # only stops it if still queued; a running forward pass finishes
            raise InvocationTimeout(f"no answer within {timeout:g} s") from None

    def stop(self) -> None:
        self._stopped = True
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._end_worker()

    # ------------------------------------------------------------- the worker thread

    def _alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _spawn(self) -> str | None:
        """Start a worker and wait until it loaded the model; why not, or None."""
        ours, theirs = self._spawner.Pipe()
        process = self._spawner.Process(
            target=_worker_main,
            args=(theirs, self.model_dir, self.env),
            name="reranker-handler",
            daemon=True,
        )
        process.start()
        theirs.close()
        try:
            _, failure = ours.recv()
        except (EOFError, OSError):
            process.join(timeout=5)
            how = _how_it_died(process.exitcode)
            failure = f"the handler's worker process {how} while loading the model"
        if failure is None:
            self._process, self._connection = process, ours
            return None
        ours.close()
        process.kill()
        process.join(timeout=5)
        return failure

    def _queue_restart(self) -> None:
        """Start the next worker on the worker thread, before requests queued after now."""
        if not (self._restart_queued or self._stopped):
            self._restart_queued = True
            self._worker.submit(self._ensure_worker)

    def _ensure_worker(self) -> str | None:
        """A live worker, started again if the last one died; why there is none, or None."""
        self._restart_queued = False
        if self._failure is not None or self._stopped:
            return self._failure or "stopped"
        if self._alive():
            return None
        how = _how_it_died(self._process.exitcode if self._process else None)
        self._end_worker()
        self.restarts += 1
        logger.warning("the handler's worker process %s: starting a new one", how)
        failure = self._spawn()
        if failure:
            self._failure = f"the handler's worker process {how}; a new one failed: {failure}"
            logger.error("%s", self._failure)
        return failure

    def _handle(self, body: bytes, headers: dict[str, str]) -> BackendResponse:
        problem = self._ensure_worker()
        if problem:
            return BackendResponse.error(503, f"the model is not loaded: {problem}")
        connection, process = self._connection, self._process
        try:
            connection.send((body, headers))
            ready = wait([connection, process.sentinel])
            if connection in ready:
                return connection.recv()
        except (EOFError, OSError):
            pass
        process.join(timeout=5)
        how = _how_it_died(process.exitcode)
        logger.error("the handler's worker process %s while answering a request", how)
        self._queue_restart()
        return BackendResponse.error(
            500,
            f"the handler's worker process {how} while answering this request; a new one "
            "is starting",
        )

    def _end_worker(self) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            connection.close()  # a live worker reads EOF and exits
        if process is not None:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
