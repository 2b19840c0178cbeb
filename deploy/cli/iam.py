"""``iam-policy``: print the least-privilege policies (documents built in ``aws/iam.py``)."""

from __future__ import annotations

import json

import click

from sagemaker_reranker.deploy.aws.iam import policies
from sagemaker_reranker.deploy.aws.session import Aws
from sagemaker_reranker.deploy.cli.options import Result, aws_command


@aws_command("iam-policy")
@click.option(
    "--endpoint-prefix",
    default="",
    help="Scope to endpoints (and their models/configs) whose names start with this.",
)
@click.option("--bucket", help="The upload bucket (default: sagemaker-* buckets).")
@click.option("--role", help="The execution role ARN the operator may pass.")
@click.option("--data-bucket", help="Bucket of batch-transform input and output.")
@click.option("--account", default="*", show_default=True, help="AWS account id to scope to.")
def iam_policy_command(
    aws: Aws,
    endpoint_prefix: str,
    bucket: str | None,
    role: str | None,
    data_bucket: str | None,
    account: str,
) -> Result:
    """Print the least-privilege IAM policies these commands and the endpoint need.

    Three documents: the operator's policy (for whoever runs deploy/update/delete/...),
    the execution role's trust policy, and the execution role's permissions. No AWS call
    is made; the region is `*` unless --region is given.

    \b
    Example:
      sagemaker-reranker iam-policy --endpoint-prefix reranker --bucket my-bucket \\
          --role arn:aws:iam::123456789012:role/RerankerRole --json > policies.json
    """
    region = aws.region_option or "*"
    documents = policies(region, account, endpoint_prefix, bucket, role, data_bucket)
    lines = []
    for title, document in documents.items():
        lines += [f"# {title}", json.dumps(document, indent=2), ""]
    return documents, lines
