"""The ``sagemaker-reranker`` command line: package, serve locally, deploy and operate.

Each command lives in the module of its concern; this file only groups them.
"""

from __future__ import annotations

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
from sagemaker_reranker.deploy.cli.package import package_command
from sagemaker_reranker.deploy.cli.serve import serve_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sagemaker-reranker")
@click.option("-v", "--verbose", is_flag=True, help="Show notices such as the client's retries.")
@click.option(
    "--debug",
    is_flag=True,
    help="Also botocore's wire log: requests with their bodies (your documents) and "
    "responses; credentials redacted.",
)
@click.pass_context
def main(context: click.Context, verbose: bool, debug: bool) -> None:
    """Serve a Hugging Face cross-encoder reranker from Amazon SageMaker.

    \b
    Typical flow:
      sagemaker-reranker package --model BAAI/bge-reranker-base -o model.tar.gz
      sagemaker-reranker serve --model-data model.tar.gz          # local, offline
      sagemaker-reranker deploy my-reranker --model-data model.tar.gz --role ARN
    """
    context.call_on_close(verbosity.configure(verbose, debug))


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
