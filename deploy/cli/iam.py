"""``iam-policy``: print the least-privilege policies (documents built in ``aws/iam.py``)."""

from __future__ import annotations

import json
import re

import click

from sagemaker_reranker.deploy.aws.artifacts import image_uri as default_image_uri
from sagemaker_reranker.deploy.aws.iam import image_registry, policies, unscoped
from sagemaker_reranker.deploy.aws.session import Aws, DeployError
from sagemaker_reranker.deploy.aws.spec import ROLE_RE
from sagemaker_reranker.deploy.cli.options import BadInput, Result, aws_command
from sagemaker_reranker.deploy.platform import PYTORCH_VERSION, TRANSFORMERS_VERSION

ACCOUNT_RE = re.compile(r"^\d{12}$")
# What goes into an ARN unquoted: a "*" or "?" would widen it, ";" or "/" change its meaning.
PREFIX_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@aws_command("iam-policy")
@click.option(
    "--endpoint-prefix",
    default="",
    help="Scope to endpoints (and their models/configs) whose names start with this.",
)
@click.option(
    "--component-prefix",
    help="Scope inference components to names starting with this [default: --endpoint-prefix].",
)
@click.option("--bucket", help="The upload bucket (default: sagemaker-{region}-{account}).")
@click.option("--role", help="The execution role ARN the operator may pass (only that one).")
@click.option("--data-bucket", help="Bucket of batch-transform input and output.")
@click.option(
    "--account", help="AWS account id to scope every resource to (default: the --role's)."
)
@click.option(
    "--image-uri",
    help="The serving image: image pulls are scoped to its registry and repository "
    "(default: the Hugging Face image of --region, with the sdk extra).",
)
def iam_policy_command(
    aws: Aws,
    endpoint_prefix: str,
    component_prefix: str | None,
    bucket: str | None,
    role: str | None,
    data_bucket: str | None,
    account: str | None,
    image_uri: str | None,
) -> Result:
    """Print the least-privilege IAM policies these commands and the endpoint need.

    Three documents: the operator's policy (for whoever runs deploy/update/delete/...),
    the execution role's trust policy, and the execution role's permissions. No AWS call
    is made. Whatever is not given (account, role, region, endpoint prefix, image) stays `*`,
    and a warning on stderr names it.

    \b
    Example:
      sagemaker-reranker iam-policy --endpoint-prefix reranker --bucket my-bucket \\
          --role arn:aws:iam::123456789012:role/RerankerRole --region us-east-1 --json
    """
    if endpoint_prefix and not PREFIX_RE.match(endpoint_prefix):
        raise BadInput(
            f"--endpoint-prefix {endpoint_prefix!r} is not the start of an endpoint name: "
            "letters, digits and hyphens, no wildcards (leave it out to allow every name)"
        )
    for option, value in (("--bucket", bucket), ("--data-bucket", data_bucket)):
        if value is not None and not BUCKET_RE.match(value):
            raise BadInput(f"{option} {value!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
    if role and not ROLE_RE.match(role):
        raise BadInput(f"--role {role!r} is not an IAM role ARN: arn:aws:iam::ACCOUNT:role/NAME")
    if account is None:
        account = role.split(":")[4] if role else "*"
    elif not ACCOUNT_RE.match(account):
        raise BadInput(f"--account {account!r} is not a 12-digit AWS account id")
    elif role and role.split(":")[4] != account:
        raise BadInput(f"--role {role} belongs to another account than --account {account}")
    if image_uri and not image_registry(image_uri):
        raise BadInput(
            f"--image-uri {image_uri!r} is not an ECR image "
            "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG)"
        )
    region = aws.region_option or "*"
    image = image_uri or _default_image(region)
    documents = policies(
        region, account, endpoint_prefix, bucket, role, data_bucket, image, component_prefix
    )
    left = unscoped(region, account, endpoint_prefix, role, image)
    if left:
        click.secho(f"warning: these policies still allow {'; '.join(left)}", fg="yellow", err=True)
    lines = []
    for title, document in documents.items():
        lines += [f"# {title}", json.dumps(document, indent=2), ""]
    return documents, lines


def _default_image(region: str) -> str | None:
    """The image deploy would use in ``region`` (GPU and CPU share its repository), if known."""
    if region == "*":
        return None
    try:
        return default_image_uri(region, TRANSFORMERS_VERSION, PYTORCH_VERSION, "ml.g5.xlarge")
    except DeployError:  # no sdk extra: the registry stays unscoped, and the warning says so
        return None
