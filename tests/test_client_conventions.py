"""The client follows boto3's and LangChain's conventions: credentials as secrets read from the
environment, a botocore ``config``, ``endpoint_kwargs``, no client or secret in a dump, content
handlers written for LangChain, the request's ``instruction``, and where it may send documents.

Requests go to the loopback runtime stand-in in front of the real handler and model.
"""

from __future__ import annotations

import io
import json
import logging
import warnings

import pytest
from botocore import UNSIGNED
from botocore.config import Config
from handler import inference
from pydantic import SecretStr
from runtime_responder import RuntimeResponder, handler_body
from test_client_core import QUERY

from sagemaker_reranker.client import (
    PairsHandler,
    RerankerEndpointError,
    SagemakerEndpointCrossEncoder,
    TEIHandler,
    TextPairsHandler,
)
from sagemaker_reranker.client.runtime import check_endpoint_url, is_loopback_host

DOCS = [f"document {i}: " + "jobs and energy costs " * (i % 5) for i in range(12)]
PAIRS = [(QUERY, doc) for doc in DOCS]
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY-secret-0001"
TOKEN = "FwoGZXIvYXdzEJr-session-token-0001"
KEY_ID = "AKIAEXAMPLEKEY000001"


@pytest.fixture(scope="module")
def reference(reranker) -> list[float]:
    body = json.dumps({"pairs": PAIRS})
    answer = handler_body(reranker, body, "application/json", "application/json")
    return json.loads(answer)["scores"]


def injected(responder: RuntimeResponder, **options) -> SagemakerEndpointCrossEncoder:
    return SagemakerEndpointCrossEncoder(
        endpoint_name="reranker", client=responder.runtime_client(), **options
    )


def echo_scores(calls: list[dict]):
    """A container that records each request's body and Accept and scores every pair 0.5."""

    def answer(body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
        request = json.loads(body)
        calls.append({"body": request, "accept": accept, "content_type": content_type})
        count = len(request.get("pairs") or request.get("text_pairs") or request.get("texts"))
        if "texts" in request:
            return 200, json.dumps([{"index": i, "score": 0.5} for i in range(count)]).encode()
        return 200, json.dumps({"scores": [0.5] * count}).encode()

    return answer


# ---------------------------------------------------------------------------- credentials, dumps


def test_credentials_are_secrets_read_from_the_environment_and_never_shown(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    model = SagemakerEndpointCrossEncoder(endpoint_name="e")
    assert isinstance(model.aws_secret_access_key, SecretStr)
    assert model.aws_secret_access_key.get_secret_value() == SECRET
    assert model.aws_session_token.get_secret_value() == TOKEN
    used = model.client._request_signer._credentials  # what the client signs with
    assert (used.access_key, used.secret_key, used.token) == (KEY_ID, SECRET, TOKEN)
    dumped = model.model_dump()
    assert "client" not in dumped
    for text in (repr(model), str(model), str(dumped), model.model_dump_json()):
        assert SECRET not in text and TOKEN not in text
        assert "botocore.client" not in text and "SageMakerRuntime" not in text


def test_explicit_credentials_win_and_a_named_profile_keeps_the_environment_out(
    aws_env, monkeypatch, tmp_path
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    explicit = SagemakerEndpointCrossEncoder(
        endpoint_name="e", aws_access_key_id="AKIAOTHER", aws_secret_access_key="other-secret"
    )
    assert explicit.client._request_signer._credentials.secret_key == "other-secret"
    (tmp_path / "aws-credentials").write_text(
        "[dev]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n"
    )
    profiled = SagemakerEndpointCrossEncoder(endpoint_name="e", credentials_profile_name="dev")
    assert profiled.aws_secret_access_key is None  # boto3 prefers a named profile, so do we
    assert profiled.client._request_signer._credentials.secret_key == "profile-secret"
    with pytest.raises(ValueError, match=r"aws_access_key_id is set .* but aws_secret_access_key"):
        SagemakerEndpointCrossEncoder(
            endpoint_name="e", aws_access_key_id="AKIAONLY", credentials_profile_name="dev"
        )


def test_an_empty_credential_variable_counts_as_unset(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "")
    model = SagemakerEndpointCrossEncoder(endpoint_name="e")
    assert model.aws_session_token is None  # as boto3 reads the variables
    assert model.client._request_signer._credentials.token is None


def test_a_botocore_config_is_merged_over_the_defaults(aws_env):
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="e", config=Config(read_timeout=5, user_agent_extra="my-app")
    )
    config = model.client.meta.config
    assert config.read_timeout == 5 and "my-app" in config.user_agent_extra
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 1}


def test_the_client_names_the_tool_in_its_user_agent(aws_env):
    config = SagemakerEndpointCrossEncoder(endpoint_name="e").client.meta.config
    assert config.user_agent_extra.startswith("sagemaker-reranker/")


def test_an_injected_client_is_kept_and_settings_it_would_ignore_are_refused(responder):
    client = responder.runtime_client()
    model = SagemakerEndpointCrossEncoder(endpoint_name="reranker", client=client)
    model.score(PAIRS[:2])
    assert model.client is client
    with pytest.raises(ValueError, match="endpoint_url, config would be ignored"):
        SagemakerEndpointCrossEncoder(
            endpoint_name="reranker", client=client, endpoint_url=responder.url, config=Config()
        )


# ---------------------------------------------------------------------------- endpoint_kwargs


# Invoke options, as the client's own arguments and as boto3's names in endpoint_kwargs.
INVOKE_HEADERS = {
    "options": (
        {
            "custom_attributes": "trace=1",
            "target_variant": "blue",
            "inference_component_name": "ic-1",
        },
        {
            "x-amzn-sagemaker-custom-attributes": "trace=1",
            "x-amzn-sagemaker-target-variant": "blue",
            "x-amzn-sagemaker-inference-component": "ic-1",
            "content-type": "application/json",
        },
    ),
    "endpoint_kwargs": (
        {
            "endpoint_kwargs": {
                "TargetModel": "model-b.tar.gz",
                "InferenceId": "trace-42",
                "InferenceComponentName": "ic-7",
            },
            "custom_attributes": "a=1",
        },
        {
            "x-amzn-sagemaker-target-model": "model-b.tar.gz",
            "x-amzn-sagemaker-inference-id": "trace-42",
            "x-amzn-sagemaker-inference-component": "ic-7",
            "x-amzn-sagemaker-custom-attributes": "a=1",
        },
    ),
}


@pytest.mark.parametrize("case", list(INVOKE_HEADERS))
def test_invoke_options_and_endpoint_kwargs_reach_invoke_endpoint(responder, case):
    options, expected = INVOKE_HEADERS[case]
    injected(responder, **options).score(PAIRS[:2])
    headers = {k.lower(): v for k, v in responder.requests[0].headers.items()}
    assert {name: headers.get(name) for name in expected} == expected


@pytest.mark.parametrize(
    ("kwargs", "fields", "problem"),
    [
        ({"Body": b"x"}, {}, "may not set Body"),
        ({"EndpointName": "other"}, {}, "may not set EndpointName"),
        ({"TargetModle": "x"}, {}, "takes no TargetModle; it takes .*TargetModel"),
        ({"TargetVariant": "a"}, {"target_variant": "b"}, "TargetVariant set both"),
    ],
)
def test_bad_endpoint_kwargs_are_refused(responder, kwargs, fields, problem):
    with pytest.raises(ValueError, match=problem):
        injected(responder, endpoint_kwargs=kwargs, **fields)


# ---------------------------------------------------------------------------- content handlers


class LangChainStyleHandler:
    """Written as LangChain documents a SageMaker content handler: ``accepts``, and a
    ``transform_output`` that reads botocore's stream."""

    content_type = "application/json"
    accepts = "application/json"

    def transform_input(self, text_pairs):
        return json.dumps({"text_pairs": text_pairs}).encode("utf-8")

    def transform_output(self, output):
        return json.loads(output.read().decode("utf-8"))["scores"]


def stock_langchain_handler():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.cross_encoders.sagemaker_endpoint import (
            CrossEncoderContentHandler,
        )
    return CrossEncoderContentHandler()


@pytest.mark.parametrize("make", [LangChainStyleHandler, stock_langchain_handler])
def test_langchain_content_handlers_plug_in_unchanged(responder, reference, make):
    model = injected(responder, content_handler=make(), max_pairs_per_request=5)
    assert model.score(PAIRS) == pytest.approx(reference, abs=1e-5)  # batched differently
    assert len(responder.requests) == 3
    assert all(set(json.loads(r.body)) == {"text_pairs"} for r in responder.requests)


def test_accepts_set_by_a_subclass_wins_over_the_inherited_accept(reranker):
    class CustomAccept(PairsHandler):
        accepts = "application/x-scores"

    calls: list[dict] = []
    with RuntimeResponder(reranker, transform=echo_scores(calls)) as responder:
        injected(responder, content_handler=CustomAccept()).score(PAIRS[:2])
    assert calls[0]["accept"] == "application/x-scores"
    assert PairsHandler().accepts == PairsHandler.accept == "application/json"


def test_our_handlers_also_read_a_stream(responder, reference):
    stream = io.BytesIO(b'{"scores": [1.5, -2.0]}')
    assert PairsHandler().transform_output(stream) == [1.5, -2.0]
    assert TextPairsHandler().transform_output(b'{"scores": [1.0]}') == [1.0]
    reads: list[bytes] = []

    class ReadsInParts(PairsHandler):
        def transform_output(self, body):
            reads.extend([body.read(3), body.read(), body.read()])
            return super().transform_output(b"".join(reads))

    scores = injected(responder, content_handler=ReadsInParts()).score(PAIRS[:1])
    assert scores == pytest.approx(reference[:1], abs=1e-5)  # batched differently
    assert reads[0] == b'{"s' and reads[1].startswith(b'cores": [') and reads[2] == b""


def test_a_handler_failing_its_own_way_is_an_endpoint_error(reranker):
    calls: list[dict] = []

    def wrong(body, content_type, accept):
        echo_scores(calls)(body, content_type, accept)
        return 200, b'{"score": [0.5]}'

    with RuntimeResponder(reranker, transform=wrong) as responder:
        model = injected(responder, content_handler=LangChainStyleHandler())
        with pytest.raises(
            RerankerEndpointError, match=r"unreadable response: KeyError\('scores'\)"
        ):
            model.score(PAIRS[:1])


def test_an_object_without_the_handler_interface_is_refused(responder):
    class Half:
        content_type = "application/json"

        def transform_input(self, pairs):
            return b""

    with pytest.raises(ValueError, match=r"Half lacks transform_output, accept \(or accepts\)"):
        injected(responder, content_handler=Half())


# ---------------------------------------------------------------------------- instruction


@pytest.mark.parametrize("handler", [PairsHandler(), TextPairsHandler()], ids=["pairs", "text"])
def test_the_instruction_goes_beside_the_pairs(reranker, handler):
    calls: list[dict] = []
    with RuntimeResponder(reranker, transform=echo_scores(calls)) as responder:
        model = injected(responder, content_handler=handler, instruction="Find the budget")
        model.score(PAIRS[:2])
        model.rerank(QUERY, DOCS[:2], instruction="Find the jobs plan")
        model.instruction = None
        model.score(PAIRS[:2])
    assert [call["body"].get("instruction") for call in calls] == [
        "Find the budget",
        "Find the jobs plan",
        None,
    ]
    assert set(calls[2]["body"]) == {handler.key}


def test_the_instruction_reaches_the_real_handler(reranker, tiny_qwen3_dir):
    """An LLM reranker scores with it (as the handler does in-process); an encoder ignores it."""
    pairs = PAIRS[:4]

    def direct(model: inference.Reranker, instruction: str) -> list[float]:
        body = json.dumps({"pairs": pairs, "instruction": instruction})
        return json.loads(handler_body(model, body, "application/json", "application/json"))[
            "scores"
        ]

    llm = inference.model_fn(str(tiny_qwen3_dir))
    with RuntimeResponder(llm) as responder:
        model = injected(responder, instruction="Find the budget")
        budget = model.score(pairs)
        weather = model.score(pairs, instruction="Find the weather")
    assert budget == pytest.approx(direct(llm, "Find the budget"), abs=1e-5)
    assert weather == pytest.approx(direct(llm, "Find the weather"), abs=1e-5)
    assert budget != pytest.approx(weather, abs=1e-3)
    with RuntimeResponder(reranker) as responder:
        plain = injected(responder).score(pairs)
        instructed = injected(responder, instruction="Find the budget").score(pairs)
    assert instructed == plain


def test_tei_leaves_the_instruction_out_and_says_so_once(reranker, caplog):
    calls: list[dict] = []
    with RuntimeResponder(reranker, transform=echo_scores(calls)) as responder:
        model = injected(responder, content_handler=TEIHandler(), instruction="Find the budget")
        with caplog.at_level(logging.WARNING, logger="sagemaker_reranker"):
            model.score(PAIRS[:2])
            model.score(PAIRS[:2])
    assert all("instruction" not in call["body"] for call in calls) and len(calls) == 2
    warned = [r for r in caplog.records if "no instruction field" in r.getMessage()]
    assert len(warned) == 1 and "TEIHandler" in warned[0].getMessage()


def test_an_overlong_instruction_is_refused_before_any_request(responder):
    with pytest.raises(ValueError, match="instruction"):
        injected(responder, instruction="x" * 4097)
    model = injected(responder)
    with pytest.raises(ValueError, match="at most 4096 characters"):
        model.rerank(QUERY, DOCS, instruction="x" * 4097)
    assert responder.requests == []


# ---------------------------------------------------------------------------- where it may talk


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LocalHost.", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("127.0.0.1.example.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:8080", "must be a URL with http:// or https://"),
        ("localhost:8080", "must be a URL with http:// or https://"),
        ("ftp://127.0.0.1", "must be a URL with http:// or https://"),
        ("http:///invocations", "must be a URL with http:// or https://"),
        ("http://127.0.0.1:99999", "invalid port"),
        ("http://example.com", "plain http to a host that is not loopback"),
        ("http://10.0.0.1:8080", "plain http to a host that is not loopback"),
    ],
)
def test_endpoint_urls_the_client_refuses(url, problem):
    with pytest.raises(ValueError, match=problem):
        check_endpoint_url(url)
    with pytest.raises(ValueError, match=problem):
        SagemakerEndpointCrossEncoder(endpoint_name="e", endpoint_url=url)


def test_plain_http_to_a_remote_host_needs_the_explicit_opt_in(aws_env):
    model = SagemakerEndpointCrossEncoder(
        endpoint_name="e", endpoint_url="http://10.0.0.1:8080", allow_insecure_http=True
    )
    assert model.client.meta.endpoint_url == "http://10.0.0.1:8080"
    assert model.client.meta.config.signature_version is not UNSIGNED
    secure = SagemakerEndpointCrossEncoder(endpoint_name="e", endpoint_url="https://10.0.0.1")
    assert secure.client.meta.config.signature_version is not UNSIGNED


def test_the_configured_endpoint_url_is_held_to_the_same_rule(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://10.0.0.1:8080")
    with pytest.raises(ValueError, match=r"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME .* plain http"):
        SagemakerEndpointCrossEncoder(endpoint_name="e")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://[::1]:8080")
    local = SagemakerEndpointCrossEncoder(endpoint_name="e")
    assert local.client.meta.config.signature_version is UNSIGNED


def test_a_loopback_emulator_for_all_of_aws_still_gets_signed_requests(aws_env, monkeypatch):
    """AWS_ENDPOINT_URL points every service at an emulator (moto, LocalStack), which tells
    accounts apart by their keys: only the runtime's own URL makes a local endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    emulated = SagemakerEndpointCrossEncoder(endpoint_name="e")
    assert emulated.client.meta.endpoint_url == "http://127.0.0.1:5000"
    assert emulated.client.meta.config.signature_version is not UNSIGNED
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.0.0.1:5000")
    with pytest.raises(ValueError, match=r"AWS_ENDPOINT_URL 'http://10.0.0.1:5000' is plain"):
        SagemakerEndpointCrossEncoder(endpoint_name="e")


def test_loopback_requests_go_unsigned_and_a_config_can_sign_them(responder, reference):
    model = SagemakerEndpointCrossEncoder(endpoint_name="reranker", endpoint_url=responder.url)
    assert model.score(PAIRS) == reference
    headers = {k.lower() for k in responder.requests[0].headers}
    assert "authorization" not in headers and "x-amz-security-token" not in headers
    # Signing to a loopback URL (a tunnel to AWS) is the caller's choice, with its credentials.
    signed = SagemakerEndpointCrossEncoder(
        endpoint_name="reranker",
        endpoint_url=responder.url,
        config=Config(signature_version="v4"),
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    signed.score(PAIRS[:1])
    authorization = dict(responder.requests[-1].headers)["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
