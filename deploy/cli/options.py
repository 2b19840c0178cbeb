"""The options every AWS command shares, and the one place errors become ``Error: …`` lines."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from sagemaker_reranker.deploy.aws.session import Aws, DeployError, error_line
from sagemaker_reranker.deploy.cli.report import TerminalReporter

# A command returns what it did (for --json) and how to say it to a person.
Result = tuple[Any, list[str]]


def aws_command(name: str) -> Callable[[Callable[..., Result]], click.Command]:
    """``@aws_command("status")``: a click command with --region/--profile/--dry-run/--json.

    The wrapped function gets an :class:`Aws` first and returns ``(data, lines)``. botocore
    errors and :class:`DeployError` end the command with exit code 1 and one line on stderr,
    never a traceback.
    """

    def decorate(function: Callable[..., Result]) -> click.Command:
        @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
        @click.option(
            "--dry-run",
            is_flag=True,
            help="Print each mutating API call with its parameters instead of making it.",
        )
        @click.option("--profile", help="AWS profile (default: AWS_PROFILE or the default one).")
        @click.option("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION).")
        @functools.wraps(function)
        def command(
            region: str | None, profile: str | None, dry_run: bool, as_json: bool, **params: Any
        ) -> None:
            reporter = TerminalReporter(quiet=as_json)
            aws = Aws(region_option=region, profile=profile, dry_run=dry_run, reporter=reporter)
            try:
                data, lines = function(aws, **params)
            except ClientError as error:
                raise click.ClickException(error_line(error)) from None
            except (BotoCoreError, DeployError) as error:
                raise click.ClickException(str(error)) from None
            if as_json:
                if dry_run:
                    data = {"result": data, "dry_run": [call.to_dict() for call in aws.planned]}
                click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))
            else:
                for line in lines:
                    click.echo(line)

        built = click.command(name)(command)
        # The shared options read best after the command's own.
        built.params = built.params[4:] + built.params[:4]
        return built

    return decorate
