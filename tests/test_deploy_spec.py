"""Pure parts of the deploy spec: instance kinds, CPU sizing, tag values, names."""

from __future__ import annotations

import io

import pytest

from sagemaker_reranker.deploy.aws.artifacts import ModelData
from sagemaker_reranker.deploy.aws.session import DeployError
from sagemaker_reranker.deploy.aws.spec import (
    DeployOptions,
    build_spec,
    check_options,
    cpu_env,
    instance_kind,
    instance_vcpus,
    tag_value,
)
from sagemaker_reranker.deploy.cli.report import StatusLine

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


@pytest.mark.parametrize(
    ("instance", "kind", "vcpus"),
    [
        ("ml.g5.xlarge", "gpu", 4),
        ("ml.g6e.2xlarge", "gpu", 8),
        ("ml.p4d.24xlarge", "gpu", 96),
        ("ml.m5.large", "cpu", 2),
        ("ml.c7i.4xlarge", "cpu", 16),
        ("ml.t2.medium", "cpu", 1),
        ("ml.inf2.xlarge", "neuron", 4),
    ],
)
def test_instance_kind_and_size(instance, kind, vcpus):
    assert instance_kind(instance) == kind
    assert instance_vcpus(instance) == vcpus


@pytest.mark.parametrize("bad", ["g5.xlarge", "ml.g5", "ml.g5.huge", "ML.G5.XLARGE", ""])
def test_malformed_instance_types_are_named(bad):
    with pytest.raises(DeployError, match="is not a SageMaker instance type"):
        instance_kind(bad)


def test_cpu_env_never_oversubscribes():
    for vcpus in (1, 2, 4, 8, 16, 96):
        env = cpu_env(vcpus)
        workers, threads = int(env["SAGEMAKER_MODEL_SERVER_WORKERS"]), int(env["OMP_NUM_THREADS"])
        assert workers >= 1 and threads >= 1
        assert workers * threads <= max(vcpus, 1)
    capped = cpu_env(16, workers=3)  # memory holds 3 copies: 5 threads each, asleep when idle
    assert capped["OMP_NUM_THREADS"] == "5" and capped["OMP_WAIT_POLICY"] == "PASSIVE"


def test_tag_values_are_sanitised_and_bounded():
    assert tag_value(None) == "none"
    assert tag_value("org/model@v1:main") == "org/model@v1:main"
    assert tag_value("a;b*c") == "a_b_c"
    assert len(tag_value("x" * 500)) == 256


def test_digest_changes_with_content_not_with_user_tags():
    data = ModelData("s3://b/k/model.tar.gz", "0" * 64, None)

    def spec(**changes):
        options = DeployOptions(name="rr", **changes)
        return build_spec(options, check_options(options, ROLE), data, "image:1", ROLE)

    base = spec()
    assert spec(tags=("team=search",)).config_name == base.config_name
    assert spec(instance_count=2).config_name != base.config_name
    assert spec(env=("RERANKER_MAX_PAIRS=64",)).config_name != base.config_name
    assert base.model_name == base.config_name and base.config_name.startswith("rr-")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instance_count": 0}, "--instance-count must be at least 1"),
        ({"vpc_subnets": ("subnet-1",)}, "--vpc-subnets and --security-groups go together"),
        ({"env": ("NOEQUALS",)}, "is not KEY=VALUE"),
        ({"env": ("1BAD=x",)}, "not a valid environment variable name"),
        ({"tags": ("=x",)}, "is not KEY=VALUE"),
        ({"serverless_concurrency": 500}, "between 1 and 200"),
        ({"name": "-bad"}, "not a valid endpoint name"),
    ],
)
def test_bad_option_combinations_are_named(changes, message):
    options = DeployOptions(**{"name": "rr", **changes})
    with pytest.raises(DeployError, match=message):
        check_options(options, ROLE)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_redraws_on_a_terminal_and_prints_changes_elsewhere():
    for stream, expected in (
        (io.StringIO(), "endpoint rr: Creating (0s)\nendpoint rr: InService (30s)\n"),
        (
            _Terminal(),
            "\rendpoint rr: Creating (0s)\rendpoint rr: Creating (15s)"
            "\rendpoint rr: InService (30s)\n",
        ),
    ):
        line = StatusLine("endpoint rr", stream)
        for status, elapsed in (("Creating", 0), ("Creating", 15), ("InService", 30)):
            line.show(status, elapsed)
        line.close()
        assert stream.getvalue() == expected
