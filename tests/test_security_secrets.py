"""Secrets in ``--env``: which names count as secret, what every output shows instead, and how
``serve`` hands them to its server process (the environment, never the command line)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from sagemaker_reranker.deploy.aws.session import PlannedCall
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.redaction import REDACTED, is_secret_name, scrub
from sagemaker_reranker.deploy.settings import parse_env

TOKEN = "hf_LocalSecretToken7c2d"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("HF_TOKEN", True),
        ("HUGGING_FACE_HUB_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("API_KEYS", True),
        ("OPENAI_APIKEY", True),
        ("DB_PASSWORD", True),
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("RERANKER_MAX_TOKENS", False),
        ("RERANKER_BATCH_TOKENS", False),
        ("RERANKER_MODEL_ID", False),
        ("KEYBOARD_LAYOUT", False),
    ],
)
def test_which_names_are_secret(name, secret) -> None:
    assert is_secret_name(name) is secret


def test_planned_calls_show_secret_values_redacted_and_keep_the_rest() -> None:
    parse_env([f"HF_TOKEN={TOKEN}"])
    call = PlannedCall(
        "sagemaker",
        "create_model",
        {
            "PrimaryContainer": {"Environment": {"HF_TOKEN": TOKEN, "RERANKER_MAX_PAIRS": "64"}},
            "Tags": [{"Key": "note", "Value": f"copied {TOKEN} here"}],
        },
    )
    for shown in (call.describe(), json.dumps(call.to_dict())):
        assert TOKEN not in shown and REDACTED in shown and "64" in shown
    assert call.params["PrimaryContainer"]["Environment"]["HF_TOKEN"] == TOKEN, "still sent"
    assert scrub(f"error: bad value {TOKEN}") == f"error: bad value {REDACTED}"


def test_environment_secrets_are_hidden_by_name_even_unseen_by_parse_env_and_short() -> None:
    """A request built by a program (or a future command) whose secrets never went through
    ``parse_env``: nothing remembers their values, so only hiding by name keeps them out."""
    unseen = f"hf_{secrets.token_hex(12)}"
    short = secrets.token_hex(1)  # under MIN_SCRUB_LENGTH: never scrubbed from free text
    env = {"HF_TOKEN": unseen, "API_KEY": short, "RERANKER_MAX_TOKENS": "4096"}
    call = PlannedCall("sagemaker", "create_model", {"PrimaryContainer": {"Environment": env}})
    for shown in (call.describe(), json.dumps(call.to_dict())):
        assert unseen not in shown
        assert f'"API_KEY": "{REDACTED}"' in shown and f'"HF_TOKEN": "{REDACTED}"' in shown
        assert '"RERANKER_MAX_TOKENS": "4096"' in shown, "a count, not a secret"
    assert call.params["PrimaryContainer"]["Environment"] == env, "still sent as it is"


def test_a_bare_env_name_takes_its_value_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert parse_env(["HF_TOKEN", "A=1"]) == {"HF_TOKEN": TOKEN, "A": "1"}
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ValueError, match="HF_TOKEN is not set in the environment"):
        parse_env(["HF_TOKEN"])


def test_serve_passes_env_values_through_the_environment_only(tiny_archive: Path) -> None:
    env = {"HF_TOKEN": TOKEN, "RERANKER_MAX_PAIRS": "2"}
    with LocalEndpoint(model_data=tiny_archive, env=env) as endpoint:
        argv = Path(f"/proc/{endpoint.pid}/cmdline").read_bytes().split(b"\0")
        assert not any(TOKEN.encode() in arg for arg in argv), "a secret is visible in ps"
        # Only the names travel in the settings on the command line; values in the environment.
        settings = argv[argv.index(b"--settings") + 1]
        assert b'"HF_TOKEN"' in settings
        environ = Path(f"/proc/{endpoint.pid}/environ").read_bytes().split(b"\0")
        assert f"HF_TOKEN={TOKEN}".encode() in environ
        # The values reach the handler: RERANKER_MAX_PAIRS=2 refuses three pairs.
        three = json.dumps({"pairs": [["q", "d"]] * 3}).encode()
        status, body, _ = endpoint.request("POST", "/invocations", three)
        assert status == 413 and b"RERANKER_MAX_PAIRS" in body
        log = endpoint.log_path.read_text(encoding="utf-8")
    assert TOKEN not in log
