"""Print the transcript of docs/operations.md: the real CLI against a moto server on 127.0.0.1.

    .venv/bin/python tests/operations_transcript.py > /tmp/transcript.md

A moto endpoint serves no traffic, so the metrics and container log lines a live endpoint
would have produced are written first by the same fixtures the tests use
(``moto_shims.put_endpoint_metrics``, ``write_endpoint_logs``), and the leftovers of a second
endpoint deleted by other means are dated two hours back (moto stamps them "now"; ``gc``
leaves leftovers younger than 10 minutes alone). Everything else is the CLI's own output.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from aws_fixtures import CLI, ROLE, MotoOptions, cli_env, serve_moto
from moto.cloudwatch.models import cloudwatch_backends
from moto_shims import (
    ACCOUNT,
    backend,
    put_endpoint_metrics,
    write_endpoint_logs,
)

from sagemaker_reranker.deploy.packaging.build import package
from sagemaker_reranker.examples.offline_models import build_offline_model

A, B = "AllTraffic/i-0c1f5e3a9b7d24e16", "AllTraffic/i-08d2a6e4c1b3f5a79"
FOUND = "Inference script implementation found at `inference`."
MODEL_FN = "`model_fn` implementation found. It will be used in place of the default one."
LOADED = "Model model loaded io_fd=02fc00fffe000001-00005f1c-00000000-3bf4f3672127a1c6-ef37cb98"
ACCESS = 'ACCESS_LOG - /169.254.178.2:{} "POST /invocations HTTP/1.1" {}'
LOG_LINES = [
    (A, 0.0, FOUND),
    (A, 0.4, MODEL_FN),
    (A, 2.9, LOADED),
    (B, 1.2, FOUND),
    (B, 1.5, MODEL_FN),
    (B, 3.4, LOADED.replace("ef37cb98", "1c2b3a49")),
    (A, 61.0, ACCESS.format(48370, "200 38")),
    (B, 61.7, ACCESS.format(51122, "200 41")),
    (A, 62.3, ACCESS.format(48374, "400 2")),
]


MARKER = "<!-- not-run: transcript, made by tests/operations_transcript.py -->"


def show(command: list[str], output: str) -> None:
    shown = " ".join(command).replace(str(Path.cwd()) + "/", "")
    print(f"{MARKER}\n```bash\n{shown}\n```\n\n```text\n{output.rstrip()}\n```\n")


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["sagemaker-reranker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        executable=CLI,
    )
    output = done.stderr + done.stdout
    show(["sagemaker-reranker", *args], output)
    return output


def traffic(cloudwatch) -> None:
    """50 minutes of a busy endpoint: ~24 requests a minute, a few 4xx, no 5xx."""
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    for minute in range(2, 52):
        latencies = [rng.lognormvariate(3.6, 0.45) for _ in range(24)]
        if minute % 17 == 0:
            latencies[-1] = 310.0 + minute  # a slow long request now and then
        overhead = [rng.uniform(1.2, 4.5) for _ in latencies]
        put_endpoint_metrics(
            cloudwatch,
            "my-reranker",
            latencies,
            overhead,
            errors_4xx=1 if minute % 9 == 0 else 0,
            cpu_percent=rng.uniform(110, 170),
            memory_percent=rng.uniform(31, 33),
            disk_percent=4.2,
            when=now - timedelta(minutes=minute),
        )


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ops-transcript-"))
    os.chdir(work)
    model = build_offline_model("tiny", work / "my-reranker")
    package(str(model), work / "model.tar.gz")
    options = MotoOptions(service_rules=True, percentiles=True)
    with pytest.MonkeyPatch.context() as monkeypatch, serve_moto(monkeypatch, options) as url:
        env = cli_env(work, url, "fake")
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        try:
            topic = boto3.client("sns").create_topic(Name="reranker-oncall")["TopicArn"]
            deploy = ["--model-data", "model.tar.gz", "--role", ROLE, "--instance-type"]
            run(env, "deploy", "my-reranker", *deploy, "ml.m5.xlarge", "--alarm-topic", topic)
            run(env, "deploy", "old-reranker", *deploy, "ml.m5.large")
            traffic(boto3.client("cloudwatch"))
            logs = boto3.client("logs")
            base = int(time.time() * 1000) - 5 * 60_000
            write_endpoint_logs(logs, "my-reranker", LOG_LINES, base)
            run(env, "status", "my-reranker", "--metrics", "--since", "1h")
            run(env, "logs", "my-reranker", "--since", "10m")
            follow = subprocess.Popen(
                ["sagemaker-reranker", "logs", "my-reranker", "--since", "1m", "--follow"],
                executable=CLI,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            time.sleep(4)
            write_endpoint_logs(logs, "my-reranker", [(A, 0, ACCESS.format(48391, "200 37"))])
            time.sleep(5)
            follow.send_signal(signal.SIGINT)
            output, _ = follow.communicate(timeout=30)
            show(follow.args, f"{output}^C")
            print(f"(exit code {follow.returncode})\n")
            # The other endpoint is deleted by other means (the console, a script).
            boto3.client("sagemaker").delete_endpoint(EndpointName="old-reranker")
            for item in [*backend()._models.values(), *backend().endpoint_configs.values()]:
                item.creation_time -= timedelta(hours=2)
            for alarm in cloudwatch_backends[ACCOUNT]["us-east-1"].alarms.values():
                alarm.configuration_updated_timestamp -= timedelta(hours=2)
            run(env, "list", "--leftovers")
            run(env, "gc", "--dry-run")
            run(env, "gc")
            run(env, "gc", "--yes")
            run(env, "list", "--leftovers")
        finally:
            os.chdir(Path.home())
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
