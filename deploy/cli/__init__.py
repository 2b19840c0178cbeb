"""The ``sagemaker-reranker`` command line: package, serve locally, deploy and operate.

Each command lives in the module of its concern; this file groups them, and holds what every
command shares: the error contract (one ``Error:`` line; exit code 2 for bad input, 1 for
failures of AWS, the runtime or the model), ``-v``/``--debug`` and the top-level help.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from sagemaker_reranker.deploy.cli import verbosity
from sagemaker_reranker.deploy.cli.endpoint import delete_command, deploy_command, update_command
from sagemaker_reranker.deploy.cli.eval import eval_command
from sagemaker_reranker.deploy.cli.iam import iam_policy_command
from sagemaker_reranker.deploy.cli.operate import (
    gc_command,
    list_command,
    logs_command,
    status_command,
)
from sagemaker_reranker.deploy.cli.ops import autoscale_command, batch_command, invoke_command
from sagemaker_reranker.deploy.cli.options import BadInput
from sagemaker_reranker.deploy.cli.package import package_command
from sagemaker_reranker.deploy.cli.serve import serve_command
from sagemaker_reranker.deploy.redaction import shown


class Commands(click.Group):
    """The command group: every error one line (click's usage errors too) with secrets scrubbed
    and control characters escaped, and whole summaries in ``--help``."""

    def parse_args(self, context: click.Context, args: list[str]) -> list[str]:
        with _one_line(context):
            return super().parse_args(context, args)

    def invoke(self, context: click.Context) -> object:
        with _one_line(context):
            return super().invoke(context)

    def format_commands(self, context: click.Context, formatter: click.HelpFormatter) -> None:
        # click cuts each summary to the terminal's width with "..."; the formatter wraps it.
        rows = [
            (name, command.get_short_help_str(limit=1_000))
            for name, command in sorted(self.commands.items())
            if not command.hidden
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@contextmanager
def _one_line(context: click.Context) -> Iterator[None]:
    """click's usage errors as one ``Error:`` line naming where help is (exit code 2), and
    every error line scrubbed of secrets and escaped: it may quote an endpoint, AWS or a file."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as error:
        where = (error.ctx or context).command_path
        raise BadInput(f"{shown(error.format_message())} (see `{where} --help`)") from None
    except click.ClickException as error:
        error.message = shown(error.message)
        raise


@click.group(
    cls=Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="sagemaker-reranker")
@verbosity.verbose_option
@verbosity.debug_option
def main() -> None:
    """Serve Hugging Face rerankers (cross-encoders, two-label heads, yes/no LLM rerankers)
    from Amazon SageMaker endpoints, and try them locally first.

    \b
    Typical flow:
      sagemaker-reranker package --model BAAI/bge-reranker-base -o model.tar.gz
      sagemaker-reranker serve --model-data model.tar.gz          # local, offline
      sagemaker-reranker deploy my-reranker --model-data model.tar.gz --role ARN

    -v and --debug go before or after the command's name.
    """


main.add_command(package_command)
main.add_command(serve_command)
main.add_command(deploy_command)
main.add_command(update_command)
main.add_command(status_command)
main.add_command(list_command)
main.add_command(delete_command)
main.add_command(logs_command)
main.add_command(gc_command)
main.add_command(invoke_command)
main.add_command(autoscale_command)
main.add_command(batch_command)
main.add_command(iam_policy_command)
main.add_command(eval_command)
# -v/--debug after the command's name too: users add them to the line they just ran.
for _command in main.commands.values():
    verbosity.verbose_option(_command)
    verbosity.debug_option(_command)
