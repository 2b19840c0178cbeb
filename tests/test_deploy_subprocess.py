"""The installed CLI as a user runs it: real subprocesses against a moto server on 127.0.0.1.

package → deploy → status → invoke → update → delete, through ``AWS_ENDPOINT_URL``, with
fake credentials and no profile or config file. ``ThreadedMotoServer`` runs in a thread of
this test process, so the fixture-level moto shims apply to it. ``invoke`` also runs against
local mode (``--endpoint-url``), where the real handler gives a real ranked answer.
"""

from __future__ import annotations

import json

import pytest
import requests
from aws_fixtures import cli_env, model_args
from aws_fixtures import run_cli as run
from handler import inference

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.deploy.packaging.extract import extract_archive
from sagemaker_reranker.deploy.packaging.manifest import file_sha256

pytestmark = pytest.mark.slow

SECRET = "FAKE/Subprocess+Secret-never-printed-41c2"
DOCS = [
    "The economy grew by 5.7 percent last year, the strongest growth in nearly 40 years.",
    "We will fight inflation by lowering costs, not wages.",
    "The state of our union is strong because you, the American people, are strong.",
    "Buy American: federal projects will use American products.",
]
QUERY = "What is the plan for the economy?"


def test_package_deploy_status_invoke_update_delete(moto_server, tiny_model_dir, tmp_path):
    env = cli_env(tmp_path, moto_server, SECRET)
    packaged = run(env, tmp_path, "package", "--model", str(tiny_model_dir), "-o", "model.tar.gz")
    assert packaged.returncode == 0, packaged.stderr
    sha = file_sha256(tmp_path / "model.tar.gz")

    deployed = run(env, tmp_path, "deploy", "rr", *model_args("model.tar.gz"))
    assert deployed.returncode == 0, deployed.stderr
    assert "endpoint  rr: created (InService)" in deployed.stdout
    assert "isolation on" in deployed.stdout

    again = run(env, tmp_path, "deploy", "rr", *model_args("model.tar.gz"))
    assert again.returncode == 0 and "rr: unchanged (InService)" in again.stdout

    status = run(env, tmp_path, "status", "rr", "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["status"] == "InService"
    assert info["archive_sha256"] == sha
    assert info["network_isolation"] is True
    assert info["variants"][0]["instance_type"] == "ml.g5.xlarge"

    # moto's runtime answers with canned bodies: queue one in the reranker's wire format.
    canned = {
        "results": [
            {"Body": json.dumps({"scores": [0.1, 2.5, -1.0]}), "ContentType": "application/json"}
        ]
    }
    requests.post(
        f"{moto_server}/moto-api/static/sagemaker/endpoint-results", json=canned, timeout=10
    )
    invoked = run(
        env, tmp_path, "invoke", "rr", "-q", "q", "--doc", "a", "--doc", "b", "--doc", "c", "--json"
    )
    assert invoked.returncode == 0, invoked.stderr
    assert [row["document"] for row in json.loads(invoked.stdout)] == ["b", "a", "c"]

    new_type = model_args("model.tar.gz", "--instance-type", "ml.g4dn.xlarge", "--json")
    updated = run(env, tmp_path, "update", "rr", *new_type)
    assert updated.returncode == 0, updated.stderr
    update = json.loads(updated.stdout)
    assert update["action"] == "updated" and update["removed"]
    status = json.loads(run(env, tmp_path, "status", "rr", "--json").stdout)
    assert status["config"] == update["config"]
    assert status["variants"][0]["instance_type"] == "ml.g4dn.xlarge"

    refused = run(env, tmp_path, "delete", "rr")  # stdin is not a terminal here
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    deleted = run(env, tmp_path, "delete", "rr", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted endpoint:rr" in deleted.stdout
    gone = run(env, tmp_path, "status", "rr")
    assert gone.returncode == 1 and gone.stderr.startswith("Error: no endpoint rr")
    listed = run(env, tmp_path, "list", "--json")
    assert json.loads(listed.stdout) == []


def test_failure_is_one_line_with_the_service_message(moto_server, tiny_archive, tmp_path):
    env = cli_env(tmp_path, moto_server, SECRET)
    unknown = model_args(tiny_archive, "--instance-type", "ml.m99.xlarge")
    bad = run(env, tmp_path, "deploy", "rr", *unknown)
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[-1].startswith(
        "Error: deploy of endpoint rr failed: ValidationException: Value 'ml.m99"
    )


def test_invoke_ranks_documents_with_the_real_handler_in_local_mode(tiny_archive, tmp_path):
    reranker = inference.model_fn(str(extract_archive(tiny_archive, tmp_path / "model")))
    expected = reranker.score([[QUERY, doc] for doc in DOCS])
    order = sorted(range(len(DOCS)), key=lambda i: -expected[i])
    env = cli_env(tmp_path, "http://127.0.0.1:9", SECRET)  # any AWS call would fail: none is made
    with LocalEndpoint(model_data=tiny_archive, endpoint_name="local-reranker") as endpoint:
        docs = tmp_path / "docs.txt"
        docs.write_text("\n".join(DOCS), encoding="utf-8")
        args = [
            "invoke",
            "local-reranker",
            "-q",
            QUERY,
            "--docs",
            str(docs),
            "--top-n",
            "3",
            "--endpoint-url",
            endpoint.url,
        ]
        ranked = run(env, tmp_path, *args, "--json")
        table = run(env, tmp_path, *args)
        port = endpoint.port
    assert not port_open("127.0.0.1", port)
    assert ranked.returncode == 0, ranked.stderr
    rows = json.loads(ranked.stdout)
    assert [row["index"] for row in rows] == order[:3]
    assert [row["score"] for row in rows] == pytest.approx(
        [expected[i] for i in order[:3]], abs=1e-4
    )
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["rank", "score", "document"]
    assert lines[1].split()[0] == "1" and DOCS[order[0]][:40] in lines[1]
    assert len(lines) == 4
