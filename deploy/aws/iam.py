"""``iam-policy``: the least-privilege IAM documents for the operator and the execution role.

Every statement names the actions it needs; resources are scoped to the endpoint prefix, the
bucket's key prefix, the account and the image's registry. Where AWS allows no resource
scoping (List*, ecr:GetAuthorizationToken, cloudwatch:PutMetricData) the action is named
explicitly and, where possible, narrowed by a condition — never ``"*"`` on ``"*"``. What the
caller did not say (account, role, region, registry) stays ``*``, and ``unscoped`` names it.
"""

from __future__ import annotations

import re
from typing import Any

from sagemaker_reranker.deploy.aws.alarms import ALARM_PREFIX
from sagemaker_reranker.deploy.aws.artifacts import KEY_PREFIX

HF_IMAGE_REPOSITORIES = ("huggingface-pytorch-inference",)
IMAGE_RE = re.compile(
    r"^(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repository>[a-z0-9._/-]+)[:@]"
)


def image_registry(image_uri: str) -> tuple[str, str, str] | None:
    """``(region, registry account, repository)`` of an ECR image URI; None otherwise."""
    match = IMAGE_RE.match(image_uri)
    return (match["region"], match["registry"], match["repository"]) if match else None


def _bucket_arn(region: str, account: str, bucket: str | None) -> str:
    """The upload bucket: the given one, else the default ``sagemaker-{region}-{account}``."""
    if bucket:
        return f"arn:aws:s3:::{bucket}"
    if region == "*" and account == "*":
        return "arn:aws:s3:::sagemaker-*"
    return f"arn:aws:s3:::sagemaker-{region}-{account}"


def _owned(account: str) -> dict[str, Any]:
    """S3 ARNs name no account: the condition pins the bucket to this one."""
    if account == "*":
        return {}
    return {"Condition": {"StringEquals": {"s3:ResourceAccount": account}}}


def _statement(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def operator_policy(
    region: str,
    account: str,
    prefix: str,
    bucket: str | None,
    role: str | None,
    component_prefix: str | None = None,
) -> dict[str, Any]:
    """What a person or CI job running the CLI needs (components named ``component_prefix*``,
    by default the endpoint prefix)."""
    sm = f"arn:aws:sagemaker:{region}:{account}"
    names = f"{prefix}*"
    bucket_arn = _bucket_arn(region, account, bucket)
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
            _components(sm, names, f"{prefix if component_prefix is None else component_prefix}*"),
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
                    "sagemaker:ListInferenceComponents",
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
                **_owned(account),
            ),
            _statement(
                "ModelArchiveObjects",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [f"{bucket_arn}/{KEY_PREFIX}/*"],
                **_owned(account),
            ),
            _statement(
                "EndpointAutoscaling",
                [
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:PutScalingPolicy",
                    "application-autoscaling:DeleteScalingPolicy",
                    "application-autoscaling:TagResource",
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
            *_operations(region, account, prefix),
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


def _components(sm: str, names: str, components: str) -> dict[str, Any]:
    """``deploy/update/delete --component`` and ``status``: a component is created on an
    endpoint from a model, so those are named too."""
    return _statement(
        "RerankerComponents",
        [
            "sagemaker:CreateInferenceComponent",
            "sagemaker:DescribeInferenceComponent",
            "sagemaker:UpdateInferenceComponent",
            "sagemaker:DeleteInferenceComponent",
            "sagemaker:AddTags",
        ],
        [f"{sm}:inference-component/{components}", f"{sm}:endpoint/{names}", f"{sm}:model/{names}"],
    )


def _operations(region: str, account: str, prefix: str) -> list[dict[str, Any]]:
    """Alarms (``deploy``/``update``/``delete``/``gc``), ``status --metrics`` and ``logs``."""
    return [
        _statement(
            "EndpointAlarms",
            [
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:TagResource",
                "cloudwatch:ListTagsForResource",
            ],
            [f"arn:aws:cloudwatch:{region}:{account}:alarm:{ALARM_PREFIX}{prefix}*"],
        ),
        # GetMetricData cannot be scoped to resources in IAM.
        _statement("EndpointMetricsRead", ["cloudwatch:GetMetricData"], ["*"]),
        _statement(
            "EndpointLogsRead",
            ["logs:FilterLogEvents"],
            [f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/{prefix}*"],
        ),
        # deploy checks that --alarm-topic exists before the alarms point at it.
        _statement("AlarmTopic", ["sns:GetTopicAttributes"], [f"arn:aws:sns:{region}:{account}:*"]),
    ]


def execution_role_trust(account: str = "*", region: str = "*", prefix: str = "") -> dict[str, Any]:
    """Only SageMaker may assume the execution role, and only for this account's resources
    (AWS's guard against the confused deputy): ``aws:SourceAccount`` when the account is
    known, and ``aws:SourceArn`` (if SageMaker sends it) when the endpoint prefix is too."""
    statement: dict[str, Any] = {
        "Sid": "SageMakerAssumesRole",
        "Effect": "Allow",
        "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    if account != "*":
        condition: dict[str, Any] = {"StringEquals": {"aws:SourceAccount": account}}
        if prefix:
            sm = f"arn:aws:sagemaker:{region}:{account}"
            kinds = ("model", "endpoint-config", "endpoint", "transform-job")
            arns = [f"{sm}:{kind}/{prefix}*" for kind in kinds]
            condition["ArnLikeIfExists"] = {"aws:SourceArn": arns}
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def execution_role_policy(
    region: str,
    account: str,
    bucket: str | None,
    data_bucket: str | None,
    prefix: str = "",
    image_uri: str | None = None,
) -> dict[str, Any]:
    """What the endpoint (and a batch job) runs with: read the archive, pull the image from its
    registry, write its own log groups."""
    bucket_arn = _bucket_arn(region, account, bucket)
    image = image_registry(image_uri) if image_uri else None
    if image:
        repositories = [f"arn:aws:ecr:{image[0]}:{image[1]}:repository/{image[2]}"]
    else:
        repositories = [f"arn:aws:ecr:{region}:*:repository/{r}" for r in HF_IMAGE_REPOSITORIES]
    logs = f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker"
    statements = [
        _statement(
            "ReadModelArchive",
            ["s3:GetObject"],
            [f"{bucket_arn}/{KEY_PREFIX}/*"],
            **_owned(account),
        ),
        _statement(
            "PullHuggingFaceImage",
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            repositories,
        ),
        # ECR's token call has no resource to scope to.
        _statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
        _statement(
            "EndpointLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            [
                f"{logs}/Endpoints/{prefix}*",
                f"{logs}/TransformJobs",
                f"{logs}/TransformJobs:log-stream:{prefix}*",
            ],
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
    image_uri: str | None = None,
    component_prefix: str | None = None,
) -> dict[str, Any]:
    return {
        "operator_policy": operator_policy(region, account, prefix, bucket, role, component_prefix),
        "execution_role_trust_policy": execution_role_trust(account, region, prefix),
        "execution_role_policy": execution_role_policy(
            region, account, bucket, data_bucket, prefix, image_uri
        ),
    }


def unscoped(
    region: str, account: str, prefix: str, role: str | None, image_uri: str | None
) -> list[str]:
    """What the documents leave as ``*`` for want of an option, each with the option to pass."""
    left = []
    if account == "*":
        left.append("every account (--account)")
    if not role:
        left.append("iam:PassRole on every role of the account (--role)")
    if region == "*":
        left.append("every region (--region)")
    if not prefix:
        left.append("every endpoint name (--endpoint-prefix)")
    if not (image_uri and image_registry(image_uri)):
        left.append("every image registry (--image-uri)")
    return left


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
