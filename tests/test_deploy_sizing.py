"""Deploy sized from the archive: fit checks per instance, the token cap, container settings.

Pure rules first, then through the CLI against moto. Large models are stood in for by an
archive of the tiny model whose manifest records a large model's size: deploy reads only the
manifest (what `package` would have recorded for the real one), never the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

# The CLI helpers and moto settings (secret, shims) of the other control-plane tests.
from test_deploy_commands import BUCKET, NAME, ROLE, cli, deploy, moto_options, state  # noqa: F401

from sagemaker_reranker.deploy.aws.instances import GPU_DOCS, describe_instance
from sagemaker_reranker.deploy.aws.session import DeployError
from sagemaker_reranker.deploy.aws.sizing import (
    CLIENT_MAX_TOKENS,
    ModelFootprint,
    check_gpu,
    check_overrides,
    container_settings,
    gpu_env,
    max_tokens,
    size_deployment,
)
from sagemaker_reranker.deploy.packaging.build import model_files, package, write_archive
from sagemaker_reranker.deploy.packaging.kinds import ModelDetails, ModelSize, describe_files
from sagemaker_reranker.deploy.packaging.manifest import file_sha256

# Parameter counts of Qwen3-Reranker's sizes (from their configs: embeddings 151,669 x hidden;
# 8B has an untied LM head), and bge-reranker-base's.
QWEN3_06B = (595_776_512, 440_467_456)
QWEN3_4B = (4_021_784_576, 3_633_511_936)
QWEN3_8B = (8_188_548_096, 6_946_075_648)
BGE_BASE = (278_043_649, 85_648_385)
GB = 10**9


def footprint(counts: tuple[int, int], archive: int | None = None) -> ModelFootprint:
    parameters, body = counts
    weights = parameters * 2  # saved in bf16, as the Qwen3 checkpoints are
    return ModelFootprint(parameters, body, weights, archive or weights, True)


# ------------------------------------------------------------------------ rules


def test_an_8b_model_does_not_fit_a_t4_and_the_refusal_names_what_does():
    with pytest.raises(DeployError) as refused:
        check_gpu(describe_instance("ml.g4dn.xlarge"), footprint(QWEN3_8B), {})
    message = str(refused.value)
    assert "15.3 GiB in fp16" in message and "16 GB NVIDIA T4" in message
    assert "choose ml.g5.xlarge (24 GB NVIDIA A10G)" in message and GPU_DOCS in message
    assert check_gpu(describe_instance("ml.g5.xlarge"), footprint(QWEN3_8B), {}) == []
    assert check_gpu(describe_instance("ml.g4dn.xlarge"), footprint(QWEN3_4B), {}) == []


def test_fp32_on_gpu_doubles_the_need_and_a_tight_fit_is_a_notice():
    fp32 = {"RERANKER_DTYPE": "float32"}
    # 4B in fp32 is 16.1 GB: fits a T4 in fp16, no longer in fp32.
    with pytest.raises(DeployError, match="in fp32"):
        check_gpu(describe_instance("ml.g4dn.xlarge"), footprint(QWEN3_4B), fp32)
    # 21 GB of fp32 weights fit an A10G's 24 GB, with under 2 GiB left for activations.
    tight = ModelFootprint(5_250_000_000, 5_000_000_000, None, None, True)
    notes = check_gpu(describe_instance("ml.g5.xlarge"), tight, fp32)
    assert len(notes) == 1 and "for activations" in notes[0] and "ml.g6e.xlarge" in notes[0]


def test_unknown_counts_or_gpus_are_notices_not_refusals():
    from_files = ModelFootprint(None, None, 40 * GB, 40 * GB, True)  # e.g. fp32 pickle weights
    notes = check_gpu(describe_instance("ml.g5.xlarge"), from_files, {})
    assert len(notes) == 1 and "may not fit" in notes[0]
    notes = check_gpu(describe_instance("ml.g7.xlarge"), footprint(QWEN3_8B), {})
    assert "unknown to this tool" in notes[0]
    assert check_gpu(describe_instance("ml.g5.xlarge"), ModelFootprint.of(None, None), {}) == []


def test_token_cap_follows_the_work_per_token():
    assert max_tokens("gpu", footprint(BGE_BASE)) is None  # the measured reference: defaults
    # On CPU the cap follows the worker's threads too: 32,768 tokens at 4 threads, a quarter
    # of that on the one thread a worker per vCPU has.
    assert max_tokens("cpu", footprint(BGE_BASE), threads=4) == 32_768
    assert max_tokens("cpu", footprint(BGE_BASE)) == 8_192
    assert max_tokens("gpu", footprint(QWEN3_06B)) == 50_176
    assert max_tokens("cpu", footprint(QWEN3_06B), threads=4) == 6_144
    assert max_tokens("cpu", footprint(QWEN3_06B)) == 2_048
    # On a GPU the cap never goes below what the default client sends.
    assert max_tokens("gpu", footprint(QWEN3_8B)) == CLIENT_MAX_TOKENS
    assert max_tokens("cpu", footprint(QWEN3_8B)) == 2_048
    assert max_tokens("gpu", ModelFootprint.of(None, 10**6)) is None


def test_container_settings_are_sized_from_the_archive():
    small = container_settings(describe_instance("ml.g5.xlarge"), footprint(BGE_BASE))
    assert small == {
        "ModelDataDownloadTimeoutInSeconds": 360,
        "ContainerStartupHealthCheckTimeoutInSeconds": 660,
    }
    big = footprint(QWEN3_8B)  # 16.4 GB of weights
    on_nvme = container_settings(describe_instance("ml.g5.2xlarge"), big)
    assert on_nvme["ModelDataDownloadTimeoutInSeconds"] == 300 + 60 * 17
    assert on_nvme["ContainerStartupHealthCheckTimeoutInSeconds"] == 600 + 60 * 17
    assert "VolumeSizeInGB" not in on_nvme  # NVMe instance storage: SageMaker refuses it
    on_ebs = container_settings(describe_instance("ml.p3.2xlarge"), big)
    assert on_ebs["VolumeSizeInGB"] == 39  # archive + unpacked weights, 10 % and 2 GB spare
    huge = ModelFootprint(None, None, 200 * GB, 200 * GB, True)
    capped = container_settings(describe_instance("ml.m5.4xlarge"), huge)
    assert capped["ModelDataDownloadTimeoutInSeconds"] == 3600
    assert capped["VolumeSizeInGB"] == 442
    no_weights = ModelFootprint(None, None, 0, 20_000, False)
    hub = container_settings(describe_instance("ml.g5.xlarge"), no_weights)
    assert hub["ContainerStartupHealthCheckTimeoutInSeconds"] == 1800


@pytest.mark.parametrize(
    ("instance", "nvme"),
    [
        ("ml.g4dn.xlarge", True),
        ("ml.g5.xlarge", True),
        ("ml.g6e.2xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.m5d.large", True),
        ("ml.p3.2xlarge", False),
        ("ml.m5.xlarge", False),
        ("ml.c7i.4xlarge", False),
        ("ml.inf2.xlarge", False),
    ],
)
def test_volume_size_only_where_the_instance_takes_it(instance, nvme):
    overrides = {"VolumeSizeInGB": ("--volume-size", 100)}
    if nvme:
        with pytest.raises(DeployError, match=r"NVMe instance storage.*drop --volume-size"):
            check_overrides(instance, overrides)
    else:
        check_overrides(instance, overrides)


def test_container_setting_flags_are_checked():
    with pytest.raises(DeployError, match="--startup-timeout 30 must be between 60 and 3600"):
        check_overrides(
            "ml.g5.xlarge",
            {"ContainerStartupHealthCheckTimeoutInSeconds": ("--startup-timeout", 30)},
        )
    with pytest.raises(DeployError, match="--volume-size 600 must be between 1 and 512"):
        check_overrides("ml.m5.xlarge", {"VolumeSizeInGB": ("--volume-size", 600)})
    with pytest.raises(DeployError, match="serverless endpoints take no --download-timeout"):
        check_overrides(None, {"ModelDataDownloadTimeoutInSeconds": ("--download-timeout", 900)})


@pytest.mark.parametrize(
    "instance, workers",
    [("ml.g5.xlarge", "1"), ("ml.g5.12xlarge", "4"), ("ml.g4dn.metal", "8"),
     ("ml.p4d.24xlarge", "8"), ("ml.g6e.16xlarge", "1")],
)  # fmt: skip
def test_one_worker_per_gpu(instance, workers):
    assert gpu_env(describe_instance(instance)) == {"SAGEMAKER_MODEL_SERVER_WORKERS": workers}
    sized = size_deployment("gpu", instance, None, footprint(QWEN3_06B), {}, {}, 1)
    assert sized.env["SAGEMAKER_MODEL_SERVER_WORKERS"] == workers
    assert sized.workers is None


def test_an_unknown_gpu_count_leaves_the_container_default():
    assert gpu_env(describe_instance("ml.g7.xlarge")) == {}
    sized = size_deployment("gpu", "ml.g7.xlarge", None, footprint(QWEN3_06B), {}, {}, 1)
    assert "SAGEMAKER_MODEL_SERVER_WORKERS" not in sized.env


def test_more_workers_than_gpus_must_fit_their_copies_on_one_gpu():
    g5_12x = describe_instance("ml.g5.12xlarge")  # 4 x 24 GB
    four_b = footprint(QWEN3_4B)  # 8 GB in fp16
    assert check_gpu(g5_12x, four_b, {"SAGEMAKER_MODEL_SERVER_WORKERS": "8"}) == []
    # 3 x 8 GB: the weights alone fill a 24 GB A10G.
    refusal = r"3 copies \(SAGEMAKER_MODEL_SERVER_WORKERS=12 on 4 GPUs\) of the model's weights"
    with pytest.raises(DeployError, match=refusal + r" take 22\.5 GiB in fp16, more than"):
        check_gpu(g5_12x, four_b, {"SAGEMAKER_MODEL_SERVER_WORKERS": "12"})


def test_cpu_memory_limits_workers_and_serverless_memory():
    qwen_06b = footprint(QWEN3_06B)  # 2.4 GB in fp32
    sized = size_deployment("cpu", "ml.m5.2xlarge", None, qwen_06b, {}, {}, wanted_workers=2)
    assert sized.workers is None  # 32 GiB holds both copies
    sized = size_deployment("cpu", "ml.c5.2xlarge", None, qwen_06b, {}, {}, wanted_workers=4)
    assert sized.workers == 3 and any("3 worker(s) instead of 4" in n for n in sized.notices)
    with pytest.raises(DeployError, match=r"more than ml\.m5\.large's 8 GiB"):
        size_deployment("cpu", "ml.m5.large", None, footprint(QWEN3_4B), {}, {}, 1)
    with pytest.raises(DeployError, match="pass --serverless-memory 4096"):
        size_deployment("cpu", None, 3072, qwen_06b, {}, {}, 1)
    with pytest.raises(DeployError, match="deploy to an instance instead"):
        size_deployment("cpu", None, 6144, footprint(QWEN3_4B), {}, {}, 1)


# ------------------------------------------------------------------ through the CLI


def archive_claiming(model_dir: Path, out: Path, counts: tuple[int, int]) -> Path:
    """The tiny model's files under a manifest recording a larger model's size."""
    files = model_files(model_dir, allow_pickle=False)
    kind = describe_files(files, "Qwen3-Reranker", "yes-no", None).kind
    parameters, body = counts
    details = ModelDetails(kind, ModelSize(parameters * 2, parameters, body))
    return write_archive(out, files, "Qwen/Qwen3-Reranker", "0" * 40, details=details).path


def planned_variant(result) -> dict:
    planned = json.loads(result.stdout)["dry_run"]
    config = next(c for c in planned if c["operation"] == "create_endpoint_config")
    return config["params"]["ProductionVariants"][0]


def planned_env(result) -> dict:
    planned = json.loads(result.stdout)["dry_run"]
    model = next(c for c in planned if c["operation"] == "create_model")
    return model["params"]["PrimaryContainer"]["Environment"]


@pytest.mark.usefixtures("moto")
def test_a_model_too_large_for_the_instance_is_refused_before_anything(tiny_qwen3_dir, tmp_path):
    archive = archive_claiming(tiny_qwen3_dir, tmp_path / "8b.tar.gz", QWEN3_8B)
    before = state()
    for extra in ((), ("--dry-run",)):
        refused = deploy(archive, "--instance-type", "ml.g4dn.xlarge", *extra)
        assert refused.exit_code == 1
        errors = [line for line in refused.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and "ml.g5.xlarge" in errors[0] and "NVIDIA T4" in errors[0]
    assert state() == before  # nothing uploaded, nothing created
    fits = deploy(archive, "--instance-type", "ml.g5.xlarge", "--dry-run", "--json")
    assert fits.exit_code == 0, fits.output
    variant = planned_variant(fits)
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600 + 60 * 17
    assert "VolumeSizeInGB" not in variant
    assert planned_env(fits)["RERANKER_MAX_TOKENS"] == str(CLIENT_MAX_TOKENS)


@pytest.mark.usefixtures("moto")
def test_dry_run_shows_the_instance_and_container_settings(tiny_qwen3_dir, tmp_path):
    archive = package(str(tiny_qwen3_dir), tmp_path / "q.tar.gz").path
    result = deploy(archive, "--instance-type", "ml.g4dn.xlarge", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "instance  1 x ml.g4dn.xlarge, 1 x NVIDIA T4 (16 GB)" in result.stdout
    assert "startup   health check 660 s, download 360 s, volume SageMaker's default" in (
        result.stdout
    )
    data = json.loads(deploy(archive, "--instance-type", "ml.g4dn.xlarge", "--dry-run",
                             "--json").stdout)  # fmt: skip
    assert data["result"]["container_settings"] == {
        "ContainerStartupHealthCheckTimeoutInSeconds": 660,
        "ModelDataDownloadTimeoutInSeconds": 360,
    }


@pytest.mark.usefixtures("moto")
def test_flags_override_and_reach_the_endpoint_config(tiny_qwen3_dir, tmp_path):
    archive = package(str(tiny_qwen3_dir), tmp_path / "q.tar.gz").path
    result = deploy(archive, "--instance-type", "ml.m5.xlarge", "--startup-timeout", "1200",
                    "--download-timeout", "900", "--volume-size", "64")  # fmt: skip
    assert result.exit_code == 0, result.output
    sm = boto3.client("sagemaker")
    config_name = sm.describe_endpoint(EndpointName=NAME)["EndpointConfigName"]
    variant = sm.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"][0]
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 1200
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 900
    assert variant["VolumeSizeInGB"] == 64
    before = state()
    nvme = deploy(archive, "--instance-type", "ml.g5.xlarge", "--volume-size", "64", name="other")
    assert nvme.exit_code == 2 and "NVMe instance storage" in nvme.stderr
    serverless = deploy(archive, "--serverless-memory", "2048", "--startup-timeout", "600",
                        name="other")  # fmt: skip
    assert serverless.exit_code == 2 and "serverless endpoints take no" in serverless.stderr
    assert state() == before


@pytest.mark.usefixtures("moto")
def test_gpu_instances_get_a_worker_per_gpu_and_the_user_may_override(tiny_qwen3_dir, tmp_path):
    archive = package(str(tiny_qwen3_dir), tmp_path / "q.tar.gz").path
    result = deploy(archive, "--instance-type", "ml.g5.12xlarge", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert planned_env(result)["SAGEMAKER_MODEL_SERVER_WORKERS"] == "4"
    mine = deploy(archive, "--instance-type", "ml.g5.12xlarge", "--dry-run", "--json",
                  "--env", "SAGEMAKER_MODEL_SERVER_WORKERS=2")  # fmt: skip
    assert planned_env(mine)["SAGEMAKER_MODEL_SERVER_WORKERS"] == "2"


@pytest.mark.usefixtures("moto")
def test_cpu_token_cap_is_sized_and_the_client_setting_named(tiny_qwen3_dir, tmp_path):
    archive = archive_claiming(tiny_qwen3_dir, tmp_path / "06b.tar.gz", QWEN3_06B)
    result = deploy(archive, "--instance-type", "ml.m5.xlarge", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    env = planned_env(result)
    assert env["RERANKER_MAX_TOKENS"] == "2048"  # 3 workers of 1 thread: the floor
    assert "max_tokens_per_request=2048" in result.stderr
    mine = deploy(archive, "--instance-type", "ml.m5.xlarge", "--dry-run", "--json",
                  "--env", "RERANKER_MAX_TOKENS=4096")  # fmt: skip
    assert planned_env(mine)["RERANKER_MAX_TOKENS"] == "4096"
    assert "max_tokens_per_request=4096" in mine.stderr


@pytest.mark.usefixtures("moto")
def test_an_uploaded_archive_is_sized_again_from_its_s3_metadata(tiny_qwen3_dir, tmp_path):
    archive = archive_claiming(tiny_qwen3_dir, tmp_path / "06b.tar.gz", QWEN3_06B)
    assert deploy(archive, "--instance-type", "ml.g4dn.xlarge").exit_code == 0
    uri = f"s3://{BUCKET}/sagemaker-reranker/{file_sha256(archive)}/model.tar.gz"
    again = cli("deploy", "second", "--model-data", uri, "--role", ROLE, "--instance-type",
                "ml.g4dn.xlarge", "--dry-run", "--json")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert planned_env(again)["RERANKER_MAX_TOKENS"] == "50176"
    download = 300 + 60 * ((archive.stat().st_size + GB - 1) // GB)
    assert planned_variant(again)["ModelDataDownloadTimeoutInSeconds"] == download
