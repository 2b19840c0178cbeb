"""``sagemaker-reranker serve`` run as a user runs it: a fresh shell, curl, boto3, Ctrl-C."""

from __future__ import annotations

import json
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest

from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
from sagemaker_reranker.deploy.local.net import free_port, port_open
from sagemaker_reranker.deploy.packaging.build import write_archive

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
URL = re.compile(r"http://127\.0\.0\.1:(\d+)")
EXAMPLE_TEXT = "lower costs for families"  # document text of the printed curl example


class Serve:
    """A ``serve`` process in a fresh environment; its output read line by line."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.home, self.tmp = tmp_path / "home", tmp_path / "tmp"
        self.home.mkdir(parents=True)
        self.tmp.mkdir()
        env = {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            "HF_HUB_OFFLINE": "1",
        }
        self.process = subprocess.Popen(
            ["bash", "-c", 'exec sagemaker-reranker serve "$@"', "serve", *args],
            cwd=self.home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.output = {"stdout": [], "stderr": []}
        for name in ("stdout", "stderr"):
            stream = getattr(self.process, name)
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream) -> None:
        for line in stream:
            self.output[name].append(line)
            self.lines.put((name, line))

    def wait_for(self, pattern: str, timeout: float = 300) -> str:
        """The first output line matching ``pattern`` (fails if the process ends first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _, line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, f"serve exited early:\n{self.text()}"
                continue
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.text()}")

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.finish()

    def finish(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def text(self) -> str:
        time.sleep(0.2)  # let the reader threads drain the pipes
        return "".join(self.output["stdout"]) + "".join(self.output["stderr"])

    def assert_clean(self, port: int | None) -> None:
        """Nothing left listening, no temp dir left behind."""
        if port is not None:
            assert not port_open("127.0.0.1", port), f"port {port} still listening"
        assert list(self.tmp.iterdir()) == [], "temp dirs left behind"


def test_serve_answers_curl_and_boto3_and_stops_on_sigterm(tiny_archive: Path, tmp_path) -> None:
    serve = Serve(
        tmp_path, "--model-data", str(tiny_archive), "--port", "0", "--endpoint-name", "demo"
    )
    port = int(URL.search(serve.wait_for(r"^Serving .* at http://")).group(1))
    curl = serve.wait_for(r"^\s+curl ").strip()
    client = serve.wait_for(r"^\s+SagemakerEndpointCrossEncoder\(").strip()
    if shutil.which("curl"):
        done = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["scores"]) == 1

    runtime = boto3.session.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
    ).client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port}")
    body = json.dumps({"query": "what is the plan?", "texts": ["jobs", "the price of energy"]})
    reply = runtime.invoke_endpoint(
        EndpointName="demo", Body=body, ContentType="application/json", CustomAttributes="id=42"
    )
    assert len(json.loads(reply["Body"].read())["scores"]) == 2
    assert reply["CustomAttributes"] == "id=42"
    # The printed client line runs as printed: no keys or region to invent for local calls.
    assert len(eval(client, {"SagemakerEndpointCrossEncoder": SagemakerEndpointCrossEncoder})) == 1
    with pytest.raises(runtime.exceptions.ModelError, match=r"\(415\).*unsupported content type"):
        runtime.invoke_endpoint(EndpointName="demo", Body=b"a,b", ContentType="text/csv")

    assert serve.stop(signal.SIGTERM) == 0
    output = serve.text()
    assert "POST /endpoints/demo/invocations 200 pairs=2" in output
    assert EXAMPLE_TEXT not in output.split("Ctrl-C stops the endpoint.")[-1]
    assert "price of energy" not in output
    serve.assert_clean(port)


def test_serve_exits_nonzero_with_the_reason_when_the_model_fails(tiny_archive, tmp_path) -> None:
    port = free_port()
    args = ("--model-data", str(tiny_archive), "--port", str(port), "--env", "RERANKER_DTYPE=int4")
    serve = Serve(tmp_path, *args)
    assert serve.finish() == 1
    output = serve.text()
    assert "the model failed to load: model_fn failed: ValueError: RERANKER_DTYPE" in output
    assert "Serving" not in output
    serve.assert_clean(port)


def test_serve_keep_alive_stays_up_unhealthy_and_stops_on_ctrl_c(tiny_model_dir, tmp_path) -> None:
    serve = Serve(
        tmp_path,
        "--model-dir",
        str(tiny_model_dir),
        "--port",
        "0",
        "--keep-alive",
        "--env",
        "RERANKER_DTYPE=int4",
    )
    port = int(URL.search(serve.wait_for(r"--keep-alive: http://")).group(1))
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=30)
    assert failure.value.code == 500
    assert "RERANKER_DTYPE" in json.loads(failure.value.read())["reason"]
    assert serve.stop(signal.SIGINT) == 0
    assert not (tiny_model_dir / "code").exists(), "the user's model dir was written to"
    serve.assert_clean(port)


def test_serve_warns_before_binding_beyond_loopback(tiny_archive: Path, tmp_path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface: the warning shows, then binding fails.
    serve = Serve(tmp_path, "--model-data", str(tiny_archive), "--host", "192.0.2.1", "--port", "0")
    assert serve.finish() != 0
    output = serve.text()
    assert "warning: binding to 192.0.2.1" in output and "no authentication" in output
    assert "cannot listen on 192.0.2.1" in output
    serve.assert_clean(None)


def test_serve_refuses_ambiguous_or_bad_arguments(tiny_archive: Path, tmp_path) -> None:
    serve = Serve(tmp_path, "--model-data", str(tiny_archive), "--model-dir", str(tmp_path))
    assert serve.finish() == 2 and "exactly one of --model-data or --model-dir" in serve.text()
    serve = Serve(tmp_path / "second", "--model-data", str(tiny_archive), "--env", "NOPE")
    assert serve.finish() == 2 and "NAME=VALUE" in serve.text()


def test_serve_on_a_taken_port_says_so_in_one_line(tiny_archive: Path, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = Serve(tmp_path, "--model-data", str(tiny_archive), "--port", str(port))
        assert serve.finish() == 2
        assert "".join(serve.output["stdout"]) == ""
        assert "".join(serve.output["stderr"]) == (
            f"Error: port {port} on 127.0.0.1 is already in use; pick another with --port, "
            "or --port 0 for a free one\n"
        )
    serve.assert_clean(None)


def _cut(archive: Path, target: Path) -> Path:
    """The archive's first 60%: its manifest reads fine, the weights end early."""
    data = archive.read_bytes()
    target.write_bytes(data[: len(data) * 6 // 10])
    return target


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda archive, path: path.write_bytes(b"not a gzip file") and path, r"is not a"),
        (_cut, r"truncated|cannot be read"),
    ],
    ids=["not-gzip", "cut-off"],
)
def test_serve_on_a_damaged_archive_is_one_line(tiny_archive, tmp_path, make, words) -> None:
    archive = make(tiny_archive, tmp_path / "model.tar.gz")
    serve = Serve(tmp_path / "run", "--model-data", str(archive), "--port", "0")
    assert serve.finish() == 2
    errors = "".join(serve.output["stderr"])
    assert errors.startswith("Error: ") and errors.count("\n") == 1, errors
    assert str(archive) in errors and re.search(words, errors), errors
    assert "Traceback" not in serve.text()
    serve.assert_clean(None)


def test_serve_refuses_an_archive_with_no_weights_and_no_hub_model(tmp_path) -> None:
    archive = write_archive(tmp_path / "model.tar.gz", {}, "dir:my-model", None)
    serve = Serve(tmp_path / "run", "--model-data", str(archive.path), "--port", "0")
    assert serve.finish() == 2
    assert "has no weights and names no hub model (dir:my-model)" in serve.text()
    serve.assert_clean(None)


def test_serve_log_has_no_progress_bars(tiny_archive: Path, tmp_path) -> None:
    serve = Serve(tmp_path, "--model-data", str(tiny_archive), "--port", "0")
    port = int(URL.search(serve.wait_for(r"^Serving .* at http://")).group(1))
    assert serve.stop(signal.SIGINT) == 0
    log = "".join(serve.output["stderr"])
    assert "model loaded" in log  # the log is there ...
    assert "\r" not in log and "it/s]" not in log  # ... without a redrawn bar
    serve.assert_clean(port)
