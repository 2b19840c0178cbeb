"""A small real handler that misbehaves on marker documents, for the local crash tests.

``write_model(dir)`` lays out a model directory whose ``code/inference.py`` is the handler
below; both local backends load it as SageMaker would. Scores are the documents' lengths,
so every good answer is exact. Markers (a document equal to one of them):

``EXIT``   the worker process calls ``os._exit(3)``;
``KILL``   the worker process sends itself SIGKILL;
``MEMORY`` the worker grows by ~200 MB and is then killed as the kernel's OOM killer does
           (SIGKILL: no exception, no cleanup);
``SLOW``   the handler writes ``slow-started`` into the model directory and sleeps for a
           minute (a request in flight while a test kills things).

A file ``die-on-load`` in the model directory makes ``model_fn`` exit, so a worker started
again after a death cannot load the model.
"""

from __future__ import annotations

from pathlib import Path

HANDLER = """
import json
import os
import signal
import time


def model_fn(model_dir):
    if os.path.exists(os.path.join(model_dir, "die-on-load")):
        os._exit(4)
    return {"pid": os.getpid(), "dir": model_dir}


def transform_fn(model, body, content_type, accept):
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    docs = [doc for _, doc in json.loads(body)["pairs"]]
    if "SLOW" in docs:
        with open(os.path.join(model["dir"], "slow-started"), "w") as started:
            started.write(str(os.getpid()))
        time.sleep(60)
    if "EXIT" in docs:
        os._exit(3)
    if "KILL" in docs:
        os.kill(os.getpid(), signal.SIGKILL)
    if "MEMORY" in docs:
        hoard = bytearray(200 * 1024 * 1024)
        hoard[:: 4096] = b"x" * len(hoard[:: 4096])
        os.kill(os.getpid(), signal.SIGKILL)
    return json.dumps({"scores": [float(len(doc)) for doc in docs], "pid": model["pid"]})
"""


def write_model(directory: Path) -> Path:
    (directory / "code").mkdir(parents=True)
    (directory / "code" / "inference.py").write_text(HANDLER, encoding="utf-8")
    return directory


def wait_until_slow_started(model: Path) -> None:
    """Until a SLOW request is inside the handler (bounded)."""
    import time

    for _ in range(600):
        if (model / "slow-started").exists():
            return
        time.sleep(0.1)
    raise AssertionError("the SLOW request never reached the handler")


def body(*docs: str) -> bytes:
    import json

    return json.dumps({"pairs": [["query", doc] for doc in docs]}).encode("utf-8")
