"""``sagemaker-reranker invoke`` and the ``-v``/``--debug`` switches, in-process through click,
against the loopback runtime stand-in in front of the real handler and model."""

from __future__ import annotations

import json
import re

import pytest
from aws_fixtures import Cli
from runtime_responder import Fault, RuntimeResponder

from sagemaker_reranker.deploy.cli.verbosity import REDACTED, redact
from sagemaker_reranker.deploy.local.net import free_port

QUERY = "what is the plan for the economy"
DOCS = ["jobs and wages for workers", "the weather is mild", "lower energy costs for families"]
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY-secret-0002"
TOKEN = "FwoGZXIvYXdzEJr-session-token-0002"
cli = Cli()


def invoke(*args: str, docs: list[str] = DOCS) -> list[str]:
    return ["invoke", "reranker", "-q", QUERY, *[a for d in docs for a in ("--doc", d)], *args]


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:8080", "--endpoint-url must be a URL with http:// or https:// and a host"),
        ("http://10.0.0.1:8080", "is plain http to a host that is not loopback"),
        ("http://127.0.0.1:http", "--endpoint-url has an invalid port"),
    ],
)
def test_a_bad_endpoint_url_is_one_line_and_exit_2(url, problem):
    result = cli(*invoke("--endpoint-url", url))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert problem in result.stderr and "pydantic" not in result.stderr
    if "plain http" in problem:
        assert "--insecure-http" in result.stderr


def test_no_documents_is_bad_input(tmp_path):
    none = cli("invoke", "reranker", "-q", QUERY, "--endpoint-url", "http://127.0.0.1:9")
    assert none.exit_code == 2 and "no documents: pass --docs FILE or --doc TEXT" in none.stderr
    empty = tmp_path / "docs.txt"
    empty.write_text("\n\n", encoding="utf-8")
    blank = cli("invoke", "reranker", "-q", QUERY, "--docs", str(empty))
    assert blank.exit_code == 2 and "no documents" in blank.stderr
    bad = tmp_path / "docs.json"
    bad.write_text('["a", 1]', encoding="utf-8")
    wrong = cli("invoke", "reranker", "-q", QUERY, "--docs", str(bad))
    assert wrong.exit_code == 2 and "must be a JSON list of strings" in wrong.stderr


def test_invoke_has_no_dry_run():
    """It changes nothing on AWS: a dry run of it would only pretend."""
    result = cli(*invoke("--dry-run", "--endpoint-url", "http://127.0.0.1:9"))
    assert result.exit_code == 2 and "No such option '--dry-run'" in result.stderr


# ---------------------------------------------------------------------------- calls


def test_an_unreachable_local_endpoint_fails_at_once_in_one_line():
    result = cli("-v", *invoke("--endpoint-url", f"http://127.0.0.1:{free_port()}"))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Could not connect" in lines[0]
    assert "is the local endpoint running?" in lines[0]


def test_verbose_shows_the_retry_notices_and_no_document_text(responder):
    responder.faults.extend([Fault(429, "ThrottlingException")] * 2)
    loud = cli("-v", *invoke("--endpoint-url", responder.url, "--json"))
    assert loud.exit_code == 0, loud.stderr
    retries = [line for line in loud.stderr.splitlines() if "retry" in line]
    assert len(retries) == 2 and "retry 1 of 4" in retries[0]
    assert not any(doc in loud.stderr for doc in DOCS)
    scores = [row["score"] for row in json.loads(loud.stdout)]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    responder.faults.extend([Fault(429, "ThrottlingException")] * 2)
    quiet = cli(*invoke("--endpoint-url", responder.url, "--json"))
    assert quiet.exit_code == 0 and "retry" not in quiet.stderr


def test_instruction_reaches_the_request(reranker):
    bodies: list[dict] = []

    def record(body, content_type, accept):
        bodies.append(json.loads(body))
        return 200, json.dumps({"scores": [0.0] * len(bodies[-1]["pairs"])}).encode()

    with RuntimeResponder(reranker, transform=record) as responder:
        result = cli(*invoke("--endpoint-url", responder.url, "--instruction", "Find the plan"))
    assert result.exit_code == 0, result.stderr
    assert bodies[0]["instruction"] == "Find the plan"


def test_debug_shows_the_wire_log_without_credentials(responder, aws_env, monkeypatch):
    """A signed request (plain http to a non-loopback address, allowed explicitly; 0.0.0.0
    reaches this machine) with a session token: botocore logs its headers after signing."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    url = f"http://0.0.0.0:{responder.port}"
    result = cli("--debug", *invoke("--endpoint-url", url, "--insecure-http", "--json"))
    assert result.exit_code == 0, result.stderr
    authorization = dict(responder.requests[0].headers)["Authorization"]
    signature = re.search(r"Signature=(\w+)", authorization).group(1)
    assert dict(responder.requests[0].headers)["X-Amz-Security-Token"] == TOKEN
    log = result.stderr
    assert "Sending http request" in log and "/endpoints/reranker/invocations" in log
    assert f"'Authorization': b'{REDACTED}'" in log
    for secret in (SECRET, TOKEN, signature):
        assert secret not in log
    assert "botocore.auth" not in log  # the signer's own records are left out whole


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "headers={'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=ab12', "
            "'X-Amz-Security-Token': b'tok/en+=', 'Content-Type': b'application/json'}",
            "'Content-Type': b'application/json'",
        ),
        ("authorization: AWS4-HMAC-SHA256 Credential=AKIA/x", "authorization: "),
        ("https://h/x?X-Amz-Signature=ab12&X-Amz-Credential=AKIA%2Fx&a=1", "&a=1"),
        ('{"X-Amz-Security-Token": "tok"}', '"X-Amz-Security-Token": '),
    ],
)
def test_redaction(text, kept):
    cleaned = redact(text)
    assert REDACTED in cleaned and kept in cleaned
    for secret in ("ab12", "tok", "AKIA"):
        assert secret not in cleaned
