"""``iam-policy``: the least-privilege IAM documents for the operator and the execution role.

Every statement names the actions it needs; resources are scoped to the endpoint prefix, the
bucket's key prefix and the Hugging Face image repository. Where AWS allows no resource
scoping (List*, ecr:GetAuthorizationToken, cloudwatch:PutMetricData) the action is named
explicitly and, where possible, narrowed by a condition — never ``"*"`` on ``"*"``.
"""

from __future__ import annotations

from typing import Any

from sagemaker_reranker.deploy.aws.artifacts import KEY_PREFIX

HF_IMAGE_REPOSITORIES = ("huggingface-pytorch-inference",)


def _statement(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def operator_policy(
    region: str, account: str, prefix: str, bucket: str | None, role: str | None
) -> dict[str, Any]:
    """What a person or CI job running the CLI needs."""
    sm = f"arn:aws:sagemaker:{region}:{account}"
    names = f"{prefix}*"
    bucket_arn = f"arn:aws:s3:::{bucket or 'sagemaker-*'}"
    role_arn = role or f"arn:aws:iam::{account}:role/*"
    scaling_target = f"arn:aws:application-autoscaling:{region}:{account}:scalable-target/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            _statement(
                "RerankerEndpoints",
                [
                    "sagemaker:CreateModel",
                    "sagemaker:DescribeModel",
                    "sagemaker:DeleteModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DeleteEndpointConfig",
                    "sagemaker:CreateEndpoint",
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DeleteEndpoint",
                    "sagemaker:InvokeEndpoint",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                [
                    f"{sm}:model/{names}",
                    f"{sm}:endpoint-config/{names}",
                    f"{sm}:endpoint/{names}",
                ],
            ),
            _statement(
                "RerankerBatch",
                ["sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob"],
                [f"{sm}:transform-job/{names}", f"{sm}:model/{names}"],
            ),
            # List calls cannot be scoped to resources in IAM.
            _statement(
                "RerankerList",
                [
                    "sagemaker:ListEndpoints",
                    "sagemaker:ListEndpointConfigs",
                    "sagemaker:ListModels",
                ],
                ["*"],
            ),
            _statement(
                "PassExecutionRole",
                ["iam:PassRole"],
                [role_arn],
                Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            _statement(
                "ModelArchiveBucket",
                ["s3:CreateBucket", "s3:ListBucket", "s3:GetBucketLocation"],
                [bucket_arn],
            ),
            _statement(
                "ModelArchiveObjects",
                ["s3:GetObject", "s3:PutObject"],
                [f"{bucket_arn}/{KEY_PREFIX}/*"],
            ),
            _statement(
                "EndpointAutoscaling",
                [
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:PutScalingPolicy",
                    "application-autoscaling:DeleteScalingPolicy",
                ],
                [scaling_target],
            ),
            # Describe* of application-autoscaling cannot be scoped to resources.
            _statement(
                "EndpointAutoscalingRead",
                [
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:DescribeScalingPolicies",
                ],
                ["*"],
            ),
            _statement(
                "TargetTrackingAlarms",
                [
                    "cloudwatch:PutMetricAlarm",
                    "cloudwatch:DescribeAlarms",
                    "cloudwatch:DeleteAlarms",
                ],
                [f"arn:aws:cloudwatch:{region}:{account}:alarm:TargetTracking-endpoint/{names}"],
            ),
            _statement(
                "AutoscalingServiceLinkedRole",
                ["iam:CreateServiceLinkedRole"],
                [
                    f"arn:aws:iam::{account}:role/aws-service-role/"
                    "sagemaker.application-autoscaling.amazonaws.com/"
                    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
                ],
                Condition={
                    "StringLike": {
                        "iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"
                    }
                },
            ),
        ],
    }


def execution_role_trust() -> dict[str, Any]:
    """Only SageMaker may assume the execution role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SageMakerAssumesRole",
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def execution_role_policy(
    region: str, account: str, bucket: str | None, data_bucket: str | None
) -> dict[str, Any]:
    """What the endpoint (and a batch job) runs with: read the archive, pull the image, log."""
    bucket_arn = f"arn:aws:s3:::{bucket or 'sagemaker-*'}"
    statements = [
        _statement("ReadModelArchive", ["s3:GetObject"], [f"{bucket_arn}/{KEY_PREFIX}/*"]),
        _statement(
            "PullHuggingFaceImage",
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            [f"arn:aws:ecr:{region}:*:repository/{repo}" for repo in HF_IMAGE_REPOSITORIES],
        ),
        # ECR's token call has no resource to scope to.
        _statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
        _statement(
            "EndpointLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            [f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/*"],
        ),
        _statement(
            "EndpointMetrics",
            ["cloudwatch:PutMetricData"],
            ["*"],
            Condition={
                "StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}
            },
        ),
    ]
    if data_bucket:
        statements.append(
            _statement(
                "BatchTransformData",
                ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
                [f"arn:aws:s3:::{data_bucket}", f"arn:aws:s3:::{data_bucket}/*"],
            )
        )
    return {"Version": "2012-10-17", "Statement": statements}


def policies(
    region: str,
    account: str,
    prefix: str,
    bucket: str | None,
    role: str | None,
    data_bucket: str | None,
) -> dict[str, Any]:
    return {
        "operator_policy": operator_policy(region, account, prefix, bucket, role),
        "execution_role_trust_policy": execution_role_trust(),
        "execution_role_policy": execution_role_policy(region, account, bucket, data_bucket),
    }


def wildcard_grants(document: dict[str, Any]) -> list[str]:
    """Statements granting every action (``*`` or ``service:*``) on every resource."""
    bad = []
    for statement in document["Statement"]:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if "*" in resources and any(a == "*" or a.endswith(":*") for a in actions):
            bad.append(statement.get("Sid", "?"))
    return bad
