"""``iam-policy`` scoping: the wildcards left without --role/--account are named; with them,
every resource carries the account, PassRole names exactly the role, the trust policy guards
against the confused deputy, logs and image pulls are the endpoint's own."""

from __future__ import annotations

import json

from click.testing import CliRunner

from sagemaker_reranker.deploy.aws.iam import wildcard_grants
from sagemaker_reranker.deploy.cli import main

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/RerankerRole"
IMAGE = (
    "763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-inference:"
    "2.6.0-transformers4.51.3-gpu-py312-cu124-ubuntu22.04"
)
# Actions IAM cannot scope to a resource: the only statements allowed a "*" resource.
UNSCOPABLE = {
    "sagemaker:ListEndpoints",
    "sagemaker:ListEndpointConfigs",
    "sagemaker:ListModels",
    "sagemaker:ListInferenceComponents",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
}


def iam_policy(*args: str):
    result = CliRunner().invoke(main, ["iam-policy", "--json", *args])
    assert "Traceback" not in result.output
    return result


def test_without_role_or_account_a_one_line_warning_names_the_wildcards() -> None:
    result = iam_policy()
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    for named in ("--account", "--role", "--region", "--endpoint-prefix", "--image-uri"):
        assert named in warnings[0]
    documents = json.loads(result.stdout)
    assert all(wildcard_grants(document) == [] for document in documents.values())


def test_scoped_policies_carry_the_account_everywhere() -> None:
    result = iam_policy(
        "--role", ROLE, "--region", "eu-west-1", "--endpoint-prefix", "rr", "--image-uri", IMAGE
    )
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    documents = json.loads(result.stdout)
    for title, document in documents.items():
        if title == "execution_role_trust_policy":
            continue
        assert wildcard_grants(document) == []
        for statement in document["Statement"]:
            for resource in statement["Resource"]:
                check_resource(statement, resource)
    operator = {s["Sid"]: s for s in documents["operator_policy"]["Statement"]}
    assert operator["PassExecutionRole"]["Resource"] == [ROLE]
    # Without the condition the role could be passed to any service (an EC2 instance, a Lambda).
    assert operator["PassExecutionRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    execution = {s["Sid"]: s for s in documents["execution_role_policy"]["Statement"]}
    assert execution["EndpointLogs"]["Resource"][0] == (
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/rr*"
    )
    assert execution["PullHuggingFaceImage"]["Resource"] == [
        "arn:aws:ecr:eu-west-1:763104351884:repository/huggingface-pytorch-inference"
    ]
    (trust,) = documents["execution_role_trust_policy"]["Statement"]
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    source_arns = trust["Condition"]["ArnLikeIfExists"]["aws:SourceArn"]
    assert f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/rr*" in source_arns
    assert all(arn.startswith(f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:") for arn in source_arns)


def check_resource(statement: dict, resource: str) -> None:
    actions = set(statement["Action"])
    if resource == "*":
        assert actions <= UNSCOPABLE, f"{statement['Sid']}: * for scopable {actions - UNSCOPABLE}"
        return
    service, _, account = resource.split(":")[2:5]
    if service == "s3":  # S3 ARNs have no account field: a condition pins it
        assert statement["Condition"]["StringEquals"]["s3:ResourceAccount"] == ACCOUNT
    elif service == "ecr":
        assert account == "763104351884", "image pulls only from the image's registry"
    else:
        assert account == ACCOUNT, f"{statement['Sid']}: {resource}"


def test_the_account_comes_from_the_role_and_bad_ids_are_refused() -> None:
    scoped = json.loads(iam_policy("--role", ROLE).stdout)
    assert f":{ACCOUNT}:" in json.dumps(scoped["operator_policy"])
    assert '"*"' not in json.dumps(scoped["execution_role_trust_policy"])
    for args, words in (
        (("--account", "12345"), "not a 12-digit AWS account id"),
        (("--role", "RerankerRole"), "not an IAM role ARN"),
        (("--role", ROLE, "--account", "210987654321"), "another account"),
        (("--image-uri", "docker.io/library/python:3"), "not an ECR image"),
    ):
        result = iam_policy(*args)
        assert result.exit_code == 2 and words in result.stderr, result.output


def test_wildcards_and_characters_an_arn_cannot_hold_are_refused() -> None:
    """A ``*`` in --endpoint-prefix would widen every statement (``endpoint/**``) without a
    warning; a ``;`` in --region would go into every ARN."""
    for args, words in (
        (("--endpoint-prefix", "*"), "--endpoint-prefix '*' is not the start of an endpoint name"),
        (("--endpoint-prefix", "rr?"), "no wildcards"),
        (("--endpoint-prefix", "rr/../x"), "letters, digits and hyphens"),
        (("--region", "us;east"), "--region 'us;east' is not an AWS region"),
        (("--region", "*"), "is not an AWS region"),
        (("--bucket", "my-*"), "--bucket 'my-*' is not an S3 bucket name"),
        (("--data-bucket", "a;b"), "--data-bucket 'a;b' is not an S3 bucket name"),
    ):
        result = iam_policy("--role", ROLE, *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == "" and result.stderr.startswith("Error: ")
        assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
    for region in ("us-east-1", "eu-central-2", "us-gov-west-1", "cn-northwest-1"):
        assert iam_policy("--role", ROLE, "--region", region).exit_code == 0, region
