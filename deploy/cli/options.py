"""The options every AWS command shares, and the one place errors become ``Error: …`` lines;
the confirmation before a delete, and ``--server`` for the local-mode commands."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from sagemaker_reranker.deploy.aws.session import Aws, DeployError, check_region, error_line
from sagemaker_reranker.deploy.cli.report import TerminalReporter
from sagemaker_reranker.deploy.local.backend import SERVER_ALIASES, SERVERS
from sagemaker_reranker.deploy.packaging.manifest import SHA256_HEX
from sagemaker_reranker.deploy.packaging.verify import Trust
from sagemaker_reranker.deploy.redaction import scrub, shown

# A command returns what it did (for --json) and how to say it to a person.
Result = tuple[Any, list[str]]


class BadInput(click.ClickException):
    """A problem with what the user passed: one ``Error: …`` line and exit code 2.

    (click's ``UsageError`` also prints the usage and a hint, three lines more than the
    problem needs.)
    """

    exit_code = 2


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def confirm(
    question: str, refusal: str, yes: bool, dry_run: bool, shown: Sequence[str] = ()
) -> None:
    """Ask ``question`` on the terminal (after the ``shown`` lines) before deleting anything;
    without a terminal, refuse with ``refusal``. ``--yes`` and a dry run ask nothing."""
    if yes or dry_run:
        return
    if not stdin_is_tty():
        raise DeployError(refusal)
    for line in shown:
        click.echo(line, err=True)
    click.confirm(question, abort=True, err=True)


class _ServerChoice(click.Choice):
    """``SERVERS``, and their earlier names (``SERVER_ALIASES``) accepted unlisted."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        return super().convert(SERVER_ALIASES.get(value, value), param, ctx)


def _sha256_hex(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower()
    if not SHA256_HEX.match(digest):
        raise BadInput(
            f"--expect-sha256 {value!r} is not a sha256: 64 hex digits, as `package` prints"
        )
    return digest


def trust_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--expect-sha256`` and ``--allow-unverified``: what the archive must be beyond
    self-consistent; the command gets them as one ``trust`` (``verify.Trust``)."""

    @functools.wraps(function)
    def wrapped(*args: Any, expect_sha256: str | None, allow_unverified: bool, **kwargs: Any):
        return function(*args, trust=Trust(expect_sha256, allow_unverified), **kwargs)

    unverified = click.option(
        "--allow-unverified",
        is_flag=True,
        help="Use an archive without a manifest (not made by `package`): nothing checks its files.",
    )
    expect = click.option(
        "--expect-sha256",
        metavar="HEX",
        callback=_sha256_hex,
        help="Refuse the archive unless its sha256 is this one (`package` prints it): the "
        "manifest proves the archive self-consistent, not who made it.",
    )
    return expect(unverified(wrapped))


def server_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--server``: which model container local mode runs."""
    return click.option(
        "--server", type=_ServerChoice(SERVERS), default="worker", show_default=True, help=help
    )


def json_value(value: Any) -> Any:
    """How ``--json`` writes what the standard encoder cannot: dates in ISO 8601."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=json_value, sort_keys=True)


def aws_command(
    name: str, dry_run: bool = False, plans_without_reads: bool = False
) -> Callable[[Callable[..., Result]], click.Command]:
    """``@aws_command("status")``: a click command with --region/--profile/--json.

    ``dry_run=True`` (commands that change something) adds ``--dry-run``. A dry run still
    reads the current state to plan; without credentials, a command with
    ``plans_without_reads`` plans as if nothing existed yet, any other says it needs read
    access. The wrapped function gets an :class:`Aws` first and returns ``(data, lines)``.
    botocore errors and :class:`DeployError` end the command with one line on stderr, never a
    traceback: exit code 2 for bad input (:class:`InputError`, a refused archive), else 1.
    """

    def decorate(function: Callable[..., Result]) -> click.Command:
        no_credentials = (
            "no AWS credentials found: run `aws configure`, or set AWS_PROFILE (or pass "
            "--profile) to a profile that has them"
            + (f"; `{name} --dry-run` plans without them" if dry_run else "")
        )

        @functools.wraps(function)
        def command(
            region: str | None,
            profile: str | None,
            as_json: bool,
            dry_run: bool = False,
            **params: Any,
        ) -> None:
            reporter = TerminalReporter(quiet=as_json)
            aws = Aws(region_option=region, profile=profile, dry_run=dry_run, reporter=reporter)
            try:
                if region is not None:
                    check_region(region)
                if dry_run and not aws.has_credentials():
                    _plan_without_credentials(aws, name, plans_without_reads)
                data, lines = function(aws, **params)
            except NoCredentialsError:
                raise click.ClickException(no_credentials) from None
            except ClientError as error:
                raise click.ClickException(error_line(error)) from None
            except (BotoCoreError, DeployError) as error:
                failure = click.ClickException(str(error))
                # Bad input (an option, a damaged archive) is exit code 2; AWS's failures 1.
                failure.exit_code = getattr(error, "exit_code", 1)
                raise failure from None
            # The group scrubs and escapes error lines (cli/__init__.py); results here.
            if as_json:
                if dry_run:
                    data = {"result": data, "dry_run": [call.to_dict() for call in aws.planned]}
                click.echo(scrub(dump_json(data)))  # JSON escapes every control character
            else:
                for line in lines:
                    click.echo(shown(line))

        options = [
            click.option("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION)."),
            click.option("--profile", help="AWS profile (default: AWS_PROFILE, else the default)."),
            click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        ]
        if dry_run:
            options.append(
                click.option(
                    "--dry-run",
                    is_flag=True,
                    help="Print each call that would change something, with its parameters, "
                    "instead of making it.",
                )
            )
        shared = len(options)
        for option in reversed(options):
            command = option(command)
        built = click.command(name)(command)
        # The shared options read best after the command's own.
        built.params = built.params[shared:] + built.params[:shared]
        return built

    return decorate


def _plan_without_credentials(aws: Aws, name: str, plans_without_reads: bool) -> None:
    if not plans_without_reads:
        raise DeployError(
            f"`{name} --dry-run` reads the current state to plan its changes, so it needs AWS "
            "credentials with read access; none were found (configure them or pass --profile)"
        )
    aws.assume_missing = True
    aws.reporter.note(
        "[dry-run] no AWS credentials: planning as if nothing existed yet and with the account "
        "id unknown; with read access the plan also shows what already exists"
    )
