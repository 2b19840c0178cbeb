"""The command line's error contract: bad input is one ``Error:`` line and exit code 2 on every
command; AWS's and the runtime's failures exit 1; text from an endpoint, AWS or a file reaches
the terminal with its control characters escaped; ``-v``/``--debug`` go anywhere on the line;
``--help`` shows whole summaries.

In-process through click, against moto (never AWS) and the loopback runtime stand-in in front
of the real handler and model.
"""

from __future__ import annotations

import itertools
import logging
import re
import time

import boto3
import pytest
from aws_fixtures import NAME, ROLE, Cli
from runtime_responder import Fault

from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.cli.report import TerminalReporter
from sagemaker_reranker.deploy.redaction import printable

cli = Cli()
# A forged line, a terminal retitle (OSC ... BEL), a CSI in its C1 form, a bidi override.
HOSTILE = "model says no\r\nError: forged line\x1b]0;pwned\x07\x9b2J\u202edone"
CONTROLS = ("\r", "\n", "\x1b", "\x07", "\x9b", "\u202e")

# One bad argument per command, each caught by the command's own checks or by click's.
BAD_ARGUMENTS = {
    "package": ("package", "--model", "m", "-o", "m.tar.gz", "--scoring", "nope"),
    "serve": ("serve", "--model-data", "no/such/model.tar.gz", "--port", "0"),
    "deploy": ("deploy", "bad_name", "--model-data", "{archive}", "--role", ROLE),
    "update": ("update", "bad_name", "--model-data", "{archive}", "--role", ROLE),
    "status": ("status", "bad_name"),
    "list": ("list", "--region", "us;east"),
    "delete": ("delete", "bad_name", "--yes"),
    "logs": ("logs", NAME, "--since", "forever"),
    "gc": ("gc", "--min-age", "soon"),
    "invoke": ("invoke", NAME, "-q", "query"),
    "autoscale": ("autoscale", NAME, "--min", "5", "--max", "2"),
    "batch": ("batch", "--model-name", "m", "--input", "corpus/in", "--output", "s3://c/o"),
    "iam-policy": ("iam-policy", "--endpoint-prefix", "*"),
    "eval": ("eval", "--data", "no/such/dir", "--model-data", "{archive}"),
}


def one_error_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_every_command_refuses_a_bad_argument_in_one_line_with_exit_2(moto, tiny_archive):
    assert set(BAD_ARGUMENTS) == set(main.commands), "a command without its bad-argument case"
    for name, args in BAD_ARGUMENTS.items():
        result = cli(*(arg.format(archive=tiny_archive) for arg in args))
        assert result.exit_code == 2, (name, result.output)
        one_error_line(result)
        assert result.stdout == "", name


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (("--role", "SageMakerRole"), "is not an IAM role ARN"),
        (("--env", "NOT A NAME=1"), "--env"),
        (("--instance-type", "g5.xlarge"), "is not a SageMaker instance type"),
        (("--region", "us;east"), "--region 'us;east' is not an AWS region"),
    ],
)
@pytest.mark.parametrize("command", ["deploy", "update"])
def test_deploy_and_update_refuse_bad_input_with_exit_2(
    moto, tiny_archive, command, extra, problem
):
    args = ("--model-data", str(tiny_archive), "--role", ROLE, *extra)
    result = cli(command, NAME, *args)
    assert result.exit_code == 2, result.output
    assert problem in one_error_line(result)
    assert boto3.client("sagemaker").list_models()["Models"] == []


def test_delete_refuses_a_bad_name_with_exit_2_and_a_missing_endpoint_is_not_bad_input(moto):
    bad = cli("delete", "bad_name", "--yes")
    assert bad.exit_code == 2 and "not a valid endpoint name" in one_error_line(bad)
    # AWS answering "no such endpoint" to autoscale is AWS's word, not a bad argument.
    missing = cli("autoscale", "nope")
    assert missing.exit_code == 1 and "no endpoint nope" in one_error_line(missing)


def test_usage_errors_are_one_line_naming_where_help_is():
    unknown = cli("status", NAME, "--bogus")
    assert unknown.exit_code == 2
    line = one_error_line(unknown)
    assert "No such option '--bogus'" in line and line.endswith(" status --help`)")
    typed = cli("serve", "--model-data", "m.tar.gz", "--port", "eighty")
    assert typed.exit_code == 2 and "'--port'" in one_error_line(typed)
    assert cli("no-such-command").exit_code == 2


# ------------------------------------------------------------------------------ escaping


def test_printable_escapes_controls_and_keeps_other_text() -> None:
    assert printable(HOSTILE) == (
        "model says no\\x0d\\x0aError: forged line\\x1b]0;pwned\\x07\\x9b2J\\u202edone"
    )
    assert printable("Café 東京, naïve — 100%") == "Café 東京, naïve — 100%"
    assert printable(printable(HOSTILE)) == printable(HOSTILE), "escaping twice changes nothing"


def test_an_endpoints_error_text_reaches_the_terminal_escaped(responder):
    responder.faults.append(Fault(424, "ModelError", original_status=400, message=HOSTILE))
    result = cli("invoke", "reranker", "-q", "q", "--doc", "d", "--endpoint-url", responder.url)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "forged line\\x1b]0;pwned\\x07" in line
    assert not any(control in result.stderr[:-1] for control in CONTROLS)


def test_a_documents_control_characters_are_escaped_in_the_table(responder, tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("plain text\nevil\x1b]0;pwned\x07 text\r\n", encoding="utf-8")
    result = cli(
        "invoke", "reranker", "-q", "q", "--docs", str(docs), "--endpoint-url", responder.url
    )
    assert result.exit_code == 0, result.output
    assert "evil\\x1b]0;pwned\\x07 text" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_log_lines_from_aws_are_escaped(moto):
    logs = boto3.client("logs")
    group, stream = f"/aws/sagemaker/Endpoints/{NAME}", "AllTraffic/i-0"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now, "message": HOSTILE}],
    )
    result = cli("logs", NAME)
    assert result.exit_code == 0, result.output
    assert "forged line\\x1b]0;pwned\\x07" in result.stdout
    assert not any(control in result.stdout.replace("\n", "") for control in CONTROLS)
    assert result.stdout.count("\n") == 1


def test_the_reporter_escapes_what_aws_says(capsys) -> None:
    reporter = TerminalReporter()
    reporter.note(f"note: {HOSTILE}")
    reporter.status(f"endpoint {HOSTILE}", "Creating\x1b[2J", 3.0)
    reporter.status_done()
    err = capsys.readouterr().err
    assert err.count("\n") == 2
    assert not any(control in err.replace("\n", "") for control in CONTROLS)
    assert "Creating\\x1b[2J" in err


# ------------------------------------------------------------------- -v, --debug, --help


def test_verbosity_flags_work_after_the_command_name_and_are_undone(moto):
    before = {
        name: list(logging.getLogger(name).handlers) for name in ("sagemaker_reranker", "botocore")
    }
    after_name = cli("list", "--debug")
    assert after_name.exit_code == 0, after_name.output
    assert "DEBUG botocore" in after_name.stderr
    both = cli("-v", "list", "--debug", "-v")
    assert both.exit_code == 0, both.output
    lines = both.stderr.splitlines()
    assert "DEBUG botocore" in both.stderr
    assert all(a != b for a, b in itertools.pairwise(lines)), "each record once, not once per flag"
    for name, handlers in before.items():
        assert logging.getLogger(name).handlers == handlers, f"{name}: handler left behind"
    assert "DEBUG" not in cli("list").stderr


def test_top_level_help_shows_whole_summaries_and_says_rerankers():
    result = cli("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    commands = result.stdout.split("Commands:")[1]
    assert "..." not in commands and "…" not in commands
    assert "Serve Hugging Face rerankers (cross-encoders" in text
    for name, command in main.commands.items():
        first = " ".join(command.help.split("\n\n")[0].split())
        sentence = re.match(r"^(.*?\.)(\s|$)", first).group(1)
        assert f"{name} {sentence}" in text, name
