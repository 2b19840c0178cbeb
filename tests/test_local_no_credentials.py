"""Local use with no AWS account: no credentials, no region, no config, no profile.

Each check runs in a subprocess whose environment holds only PATH and a HOME that is an empty
folder, against the real local endpoint (real server process, real handler). The expected
scores come from the same endpoint through `LocalEndpoint.runtime_client()`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from aws_fixtures import CLI, start_cli

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import free_port, port_open
from sagemaker_reranker.examples.speech import SPEECH

QUERY = "what is the plan for the economy"
DOCS = ["jobs and wages", "the weather is mild", "lower energy costs for families"]
TIMEOUT = 120
EVAL_DATA = SPEECH.parent / "sotu-eval"  # the labelled example set `make eval` uses


def empty_env(home: Path, **extra: str) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home), **extra}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-c", textwrap.dedent(code)], env, cwd)


@pytest.fixture(scope="module")
def expected(endpoint: LocalEndpoint) -> list[float]:
    body = json.dumps({"pairs": [[QUERY, doc] for doc in DOCS]})
    answer = endpoint.runtime_client().invoke_endpoint(
        EndpointName=endpoint.endpoint_name, ContentType="application/json", Body=body
    )
    return json.loads(answer["Body"].read())["scores"]


def test_cli_invoke_needs_no_aws_setup(endpoint, expected, tmp_path):
    env = empty_env(tmp_path / "home")
    args = [CLI, "invoke", endpoint.endpoint_name, "-q", QUERY, "--top-n", "3", "--json"]
    args += [arg for doc in DOCS for arg in ("--doc", doc)]
    done = run([*args, "--endpoint-url", endpoint.url], env, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {row["index"]: row["score"] for row in rows} == pytest.approx(dict(enumerate(expected)))
    assert [row["score"] for row in rows] == sorted(expected, reverse=True)


def test_client_with_endpoint_url_needs_no_aws_setup(endpoint, expected, tmp_path):
    code = f"""
        import json
        from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
        model = SagemakerEndpointCrossEncoder(
            endpoint_name={endpoint.endpoint_name!r}, endpoint_url={endpoint.url!r}
        )
        print(json.dumps([model.region_name, model.score([({QUERY!r}, d) for d in {DOCS!r}])]))
    """
    done = python(code, empty_env(tmp_path / "home"), tmp_path)
    assert done.returncode == 0, done.stderr
    region, scores = json.loads(done.stdout)
    assert region and scores == pytest.approx(expected)


def test_the_endpoint_variable_points_our_client_at_local_mode(endpoint, expected, tmp_path):
    """AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME alone is enough for this client (no endpoint_url)."""
    env = empty_env(tmp_path / "home", AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=endpoint.url)
    code = f"""
        import json
        from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
        model = SagemakerEndpointCrossEncoder(endpoint_name={endpoint.endpoint_name!r})
        print(json.dumps(model.score([({QUERY!r}, d) for d in {DOCS!r}])))
    """
    done = python(code, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == pytest.approx(expected)


def test_the_endpoint_variable_points_any_boto3_client_at_local_mode(endpoint, expected, tmp_path):
    """A stock boto3 client, as LangChain's builds it (no endpoint_url in the code): botocore
    signs every request, so it needs a region and placeholder keys, and nothing else."""
    env = empty_env(
        tmp_path / "home",
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=endpoint.url,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
    )
    body = json.dumps({"pairs": [[QUERY, doc] for doc in DOCS]})
    code = f"""
        import json, boto3
        runtime = boto3.client("sagemaker-runtime")
        answer = runtime.invoke_endpoint(
            EndpointName={endpoint.endpoint_name!r}, ContentType="application/json", Body={body!r}
        )
        print(json.dumps([runtime.meta.endpoint_url, json.loads(answer["Body"].read())["scores"]]))
    """
    done = python(code, env, tmp_path)
    assert done.returncode == 0, done.stderr
    url, scores = json.loads(done.stdout)
    assert url == endpoint.url and scores == pytest.approx(expected)


def test_no_credentials_are_invented_for_aws(tmp_path):
    """Without a loopback URL the client stays a signed AWS client: no region is a clear
    error, and with one the requests are signed with whatever boto3 finds (here: nothing)."""
    code = """
        from botocore import UNSIGNED
        from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
        try:
            SagemakerEndpointCrossEncoder(endpoint_name="e")
        except ValueError as error:
            print("refused:", " ".join(str(error).split()))
        model = SagemakerEndpointCrossEncoder(endpoint_name="e", region_name="eu-west-1")
        config = model.client.meta.config
        print("unsigned" if config.signature_version is UNSIGNED else "signed")
        print(model.client._request_signer._credentials)  # what boto3 found: nothing
        print(model.client.meta.endpoint_url)
    """
    done = python(code, empty_env(tmp_path / "home"), tmp_path)
    assert done.returncode == 0, done.stderr
    refused, signing, credentials, url = done.stdout.splitlines()
    assert "no AWS region" in refused
    assert signing == "signed" and credentials == "None"
    assert url == "https://runtime.sagemaker.eu-west-1.amazonaws.com"


def test_serve_then_invoke_need_no_aws_setup(tiny_archive, tmp_path):
    """``serve`` started with an empty environment answers ``invoke --endpoint-url``."""
    env = empty_env(tmp_path / "home")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serving = ["serve", "--model-data", str(tiny_archive), "--port", str(port)]
    serve = start_cli(env, tmp_path, *serving, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not _healthy(url):
            assert serve.poll() is None, serve.stdout.read()
            assert time.monotonic() < deadline, "serve did not become healthy"
            time.sleep(0.2)
        args = [CLI, "invoke", "local-reranker", "-q", QUERY, "--json", "--endpoint-url", url]
        done = run([*args, *(arg for doc in DOCS for arg in ("--doc", doc))], env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)) == len(DOCS)
    finally:
        serve.send_signal(signal.SIGINT)
        output = serve.communicate(timeout=TIMEOUT)[0]
    assert serve.returncode == 0, output
    assert "Traceback" not in output
    assert not port_open("127.0.0.1", port)


def test_eval_with_a_local_archive_needs_no_aws_setup(tiny_archive, tmp_path):
    """``eval --model-data`` starts local mode and scores through the client, with no AWS."""
    env = empty_env(tmp_path / "home", HF_HUB_OFFLINE="1")
    args = [CLI, "eval", "--data", str(EVAL_DATA), "--top-k", "3", "--model-data"]
    done = run([*args, str(tiny_archive), "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "Unable to locate credentials" not in done.stderr
    assert report  # the systems' metrics: what they are is test_eval's concern


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
