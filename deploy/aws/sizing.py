"""Fitting a packaged model to where it runs, from the archive's manifest and size.

- Memory: the weights at the dtype the handler runs them in (fp16 on a GPU, fp32 on a CPU,
  unless ``RERANKER_DTYPE`` says otherwise) must fit one GPU (each GPU holds a whole copy),
  the instance's memory once per CPU worker, or a serverless endpoint's memory. A model that
  cannot fit is refused before anything is uploaded, with an instance type that fits.
- Workers: one model-server worker per GPU, each on its own (the handler reads its
  ``gpu_id``); on CPU one per vCPU with one thread each, fewer (with more threads) when
  memory holds fewer copies: concurrent callers keep every core busy, and OpenMP's hand-offs
  between a worker's threads only cost (the load test in docs/performance.md).
- Token cap: ``RERANKER_MAX_TOKENS`` bounds the work one request may ask for. The handler's
  defaults are measured on a base-size encoder; a model with more parameters per token, or a
  CPU worker with fewer threads, gets a proportionally lower cap, so one request still
  finishes well within the 60 s a SageMaker invocation may take.
- Container settings: the model download and the startup health check get timeouts sized
  from the archive, and instances without local NVMe storage a larger EBS volume when the
  model needs more than the default.

What each instance type offers (GPU memory, host memory, storage) is in ``instances.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sagemaker_reranker.deploy.aws.instances import (
    GPU_DOCS,
    GPU_FAMILIES,
    GPU_LADDER,
    Instance,
    describe_instance,
    instance_vcpus,
)
from sagemaker_reranker.deploy.aws.session import DeployError
from sagemaker_reranker.deploy.packaging.manifest import Manifest

GIB = 1 << 30


CUDA_RESERVE = GIB  # CUDA context and allocator slack, besides the weights
RUNTIME_RESERVE = GIB  # Python, torch and the model server, per CPU worker
# Room for activations: a micro-batch of the handler's GPU token budget needs about this.
ACTIVATION_HEADROOM = 2 * GIB
# Parameters per token of the model the handler's token caps were measured with: a
# base-size encoder (12 layers, hidden size 768, bge-reranker-base's shape).
REFERENCE_BODY_PARAMETERS = 86_000_000
HANDLER_MAX_TOKENS = 262_144  # the handler's own default cap (GPU)
CPU_MAX_TOKENS = 32_768  # the cap for base-size models on a CPU worker of 4 threads
CPU_REFERENCE_THREADS = 4
# The client's default estimated-token cap per request: a GPU cap never goes below it, so
# the default client keeps working; on CPU a lower cap is announced with the client setting.
CLIENT_MAX_TOKENS = 32_768
MIN_MAX_TOKENS = 2_048
# Container settings (ProductionVariant): AWS's ranges, and the defaults' parts.
TIMEOUT_RANGE = (60, 3600)
VOLUME_RANGE = (1, 512)
DEFAULT_VOLUME_GB = 30  # SageMaker's default EBS volume; AWS advises more above 30 GB
DOWNLOAD_BASE_S, DOWNLOAD_PER_GB_S = 300, 60  # at a conservative ~17 MB/s, unpacking included
STARTUP_BASE_S, STARTUP_PER_GB_S = 600, 60  # image start, model load, warm-up
STARTUP_WITHOUT_WEIGHTS_S = 1800  # the container downloads the model from the hub first


def cpu_workers(vcpus: int) -> int:
    """One worker per vCPU: on 2 vCPUs, 2 workers of 1 thread served 1.5x the pairs per
    second of 1 x 1 and 3-7x any configuration with 2 threads per worker, at the lowest p99
    (``bench/load_test.py``, docs/performance.md)."""
    return max(1, vcpus)


def cpu_threads(vcpus: int, workers: int) -> int:
    return max(1, vcpus // max(1, workers))


def cpu_env(vcpus: int, workers: int | None = None) -> dict[str, str]:
    """Workers x threads = vCPUs, never more. Threads sleep rather than spin between parallel
    regions (``OMP_WAIT_POLICY=PASSIVE``) where a worker has several: spinning threads on
    cores other workers hold cost one short pair 3-6x (docs/performance.md)."""
    workers = workers or cpu_workers(vcpus)
    threads = str(cpu_threads(vcpus, workers))
    env = {
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
    if int(threads) > 1:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


@dataclass(frozen=True)
class ModelFootprint:
    """How large the packaged model is; every field None when the archive does not say."""

    parameters: int | None
    body_parameters: int | None
    weights_bytes: int | None
    archive_bytes: int | None
    weights: bool | None

    @classmethod
    def of(cls, manifest: Manifest | None, archive_bytes: int | None) -> ModelFootprint:
        if manifest is None:
            return cls(None, None, None, archive_bytes, None)
        return cls(
            manifest.parameters,
            manifest.body_parameters,
            manifest.weights_bytes,
            archive_bytes,
            manifest.weights,
        )

    def memory(self, dtype_bytes: int) -> int | None:
        """Bytes the weights take at ``dtype_bytes`` per parameter (from the file size when
        the count is unknown, which assumes the dtype they were saved in)."""
        if self.parameters:
            return self.parameters * dtype_bytes
        return self.weights_bytes or None


def gib(count: float) -> str:
    return f"{count / GIB:.1f} GiB"


def dtype_bytes(kind: str, env: dict[str, str]) -> int:
    """Bytes per parameter as the handler loads them: fp16 on CUDA, fp32 on CPU by default."""
    requested = env.get("RERANKER_DTYPE", "").lower()
    if kind == "gpu":
        return 4 if requested in ("float32", "fp32") else 2
    return 2 if requested in ("bfloat16", "bf16") else 4


def _dtype_name(size: int) -> str:
    return "fp16" if size == 2 else "fp32"


def suggest_gpu_instance(needed: int) -> str | None:
    """The first step of ``GPU_LADDER`` whose GPUs hold ``needed`` bytes with headroom."""
    for name in GPU_LADDER:
        family = GPU_FAMILIES[name.split(".")[1]]
        if needed + CUDA_RESERVE + ACTIVATION_HEADROOM <= family.memory_gb * 10**9:
            return f"{name} ({family.memory_gb} GB {family.gpu})"
    return None


def gpu_env(instance: Instance) -> dict[str, str]:
    """One model-server worker per GPU (the handler puts each on its ``gpu_id``); nothing
    where the GPU count is unknown, which leaves the container's own default."""
    if instance.gpu is None:
        return {}
    return {"SAGEMAKER_MODEL_SERVER_WORKERS": str(instance.gpu.count(instance.size))}


def copies_per_gpu(instance: Instance, env: dict[str, str]) -> int:
    """Model copies the busiest GPU holds: workers are given GPUs in turn, so more workers
    than GPUs (``--env SAGEMAKER_MODEL_SERVER_WORKERS``) put several copies on one."""
    gpus = instance.gpu.count(instance.size) if instance.gpu else 1
    workers = env.get("SAGEMAKER_MODEL_SERVER_WORKERS", "")
    return max(1, math.ceil(int(workers) / gpus)) if workers.isdigit() else 1


def check_gpu(instance: Instance, footprint: ModelFootprint, env: dict[str, str]) -> list[str]:
    """Refuse a model whose weights cannot fit one GPU (as many times as workers share it);
    a note when they fit without room."""
    size = dtype_bytes("gpu", env)
    weights = footprint.memory(size)
    if weights is None:
        return []
    if instance.gpu is None:
        return [
            f"GPU memory of {instance.name} unknown to this tool: not checked against the "
            f"model's {gib(weights)} of weights"
        ]
    copies = copies_per_gpu(instance, env)
    # Each worker sharing the GPU brings its own weights, CUDA context and activations.
    needed = weights * copies
    reserve = (CUDA_RESERVE + ACTIVATION_HEADROOM) * copies - ACTIVATION_HEADROOM
    capacity = instance.gpu.memory_gb * 10**9
    where = f"{instance.name}'s {instance.gpu.memory_gb} GB {instance.gpu.gpu}"
    whose = "the model's"
    if copies > 1:
        workers = env["SAGEMAKER_MODEL_SERVER_WORKERS"]
        gpus = instance.gpu.count(instance.size)
        whose = (
            f"{copies} copies (SAGEMAKER_MODEL_SERVER_WORKERS={workers} on {gpus} GPUs) "
            "of the model's"
        )
    suggestion = suggest_gpu_instance(needed)
    instead = f"choose {suggestion}" if suggestion else "no single GPU listed holds it"
    if needed + reserve > capacity and footprint.parameters is None:
        # Sized from the file, whose dtype may be wider than the one it will run in.
        return [f"{whose} {gib(needed)} of weight files may not fit {where}; {instead}"]
    if needed + reserve > capacity:
        raise DeployError(
            f"{whose} weights take {gib(needed)} in {_dtype_name(size)}, more than "
            f"{where} holds with the CUDA runtime; {instead} (GPU memory per instance: "
            f"{GPU_DOCS})"
        )
    if needed + reserve + ACTIVATION_HEADROOM > capacity:
        return [
            f"{whose} {gib(needed)} of weights leave {where} under "
            f"{gib(ACTIVATION_HEADROOM)} for activations; {instead}, or lower "
            "RERANKER_BATCH_TOKENS with --env"
        ]
    return []


def workers_in_memory(
    instance: Instance, footprint: ModelFootprint, env: dict[str, str], wanted: int
) -> tuple[int, list[str]]:
    """How many CPU workers (one model copy each) the instance's memory holds, at most
    ``wanted``; refuses when not even one fits."""
    needed = footprint.memory(dtype_bytes("cpu", env))
    if needed is None or instance.memory_gib is None:
        return wanted, []
    memory = instance.memory_gib * GIB
    per_worker = needed + RUNTIME_RESERVE
    fits = int(memory * 0.8 // per_worker)
    if fits < 1:
        raise DeployError(
            f"the model's weights take {gib(needed)} in fp32 on CPU, more than "
            f"{instance.name}'s {instance.memory_gib} GiB of memory holds; choose a larger "
            "instance, or a GPU instance (ml.g5.xlarge), where weights run in fp16"
        )
    if fits < wanted:
        note = (
            f"{instance.name}'s {instance.memory_gib} GiB of memory hold {fits} copies of the "
            f"model's {gib(needed)}: {fits} worker(s) instead of {wanted}"
        )
        return fits, [note]
    return wanted, []


def check_serverless(memory_mb: int, footprint: ModelFootprint, env: dict[str, str]) -> None:
    needed = footprint.memory(dtype_bytes("cpu", env))
    if needed is None:
        return
    required_mb = math.ceil((needed + RUNTIME_RESERVE) / 2**20)
    if required_mb <= memory_mb:
        return
    if required_mb <= 6144:
        fix = f"pass --serverless-memory {1024 * math.ceil(required_mb / 1024)}"
    else:
        fix = "deploy to an instance instead (e.g. --instance-type ml.g5.xlarge)"
    raise DeployError(
        f"the model needs about {required_mb} MB on a serverless endpoint (fp32 weights and "
        f"the runtime), more than --serverless-memory {memory_mb}; {fix}"
    )


def max_tokens(kind: str, footprint: ModelFootprint, threads: int | None = None) -> int | None:
    """``RERANKER_MAX_TOKENS`` for a model heavier per token than the reference, and on CPU
    for a worker of ``threads`` threads; None keeps the handler's default (GPU)."""
    body = footprint.body_parameters
    if kind == "gpu":
        base = HANDLER_MAX_TOKENS
    else:
        base = max(MIN_MAX_TOKENS, CPU_MAX_TOKENS * (threads or 1) // CPU_REFERENCE_THREADS)
    if not body or body <= REFERENCE_BODY_PARAMETERS:
        return None if kind == "gpu" else base
    floor = CLIENT_MAX_TOKENS if kind == "gpu" else MIN_MAX_TOKENS
    scaled = base * REFERENCE_BODY_PARAMETERS // body
    return max(floor, scaled // 1024 * 1024)


def _gb(count: int | None) -> int:
    return math.ceil((count or 0) / 10**9)


def container_settings(instance: Instance, footprint: ModelFootprint) -> dict[str, int]:
    """ProductionVariant settings sized from the archive (defaults for the CLI flags)."""
    low, high = TIMEOUT_RANGE
    download = DOWNLOAD_BASE_S + DOWNLOAD_PER_GB_S * _gb(footprint.archive_bytes)
    if footprint.weights is False:
        startup = STARTUP_WITHOUT_WEIGHTS_S
    else:
        weights = footprint.weights_bytes or footprint.archive_bytes
        startup = STARTUP_BASE_S + STARTUP_PER_GB_S * _gb(weights)
    settings = {
        "ModelDataDownloadTimeoutInSeconds": min(max(download, low), high),
        "ContainerStartupHealthCheckTimeoutInSeconds": min(max(startup, low), high),
    }
    if not instance.nvme:
        # The volume holds the downloaded archive and what it unpacks to.
        unpacked = footprint.weights_bytes or footprint.archive_bytes or 0
        needed = _gb(int(((footprint.archive_bytes or 0) + unpacked) * 1.1)) + 2
        if needed > DEFAULT_VOLUME_GB:
            settings["VolumeSizeInGB"] = min(needed, VOLUME_RANGE[1])
    return settings


def check_setting(name: str, flag: str, value: int | None, bounds: tuple[int, int]) -> None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise DeployError(f"{flag} {value} must be between {bounds[0]} and {bounds[1]} ({name})")


@dataclass
class Sizing:
    """What the archive's size decides for a deployment."""

    env: dict[str, str]
    """Defaults for the model's environment (``--env`` still overrides them)."""
    container: dict[str, int]
    """ProductionVariant settings (timeouts, volume); empty for serverless endpoints."""
    notices: list[str]
    workers: int | None = None
    """CPU workers the memory holds (None: keep the vCPU-based count)."""


def size_deployment(
    kind: str,
    instance_type: str | None,
    serverless_memory: int | None,
    footprint: ModelFootprint,
    user_env: dict[str, str],
    overrides: dict[str, int | None],
    wanted_workers: int,
) -> Sizing:
    """Check the model fits and pick the defaults sized from it (``overrides`` are the
    user's container settings, by ProductionVariant key, None where not given)."""
    sizing = Sizing({}, {}, [])
    instance = describe_instance(instance_type) if instance_type else None
    threads = None
    if kind == "cpu" and instance is not None:
        workers, notes = workers_in_memory(instance, footprint, user_env, wanted_workers)
        sizing.notices += notes
        sizing.workers = workers if workers != wanted_workers else None
        threads = cpu_threads(instance_vcpus(instance.name), workers)
    cap = max_tokens(kind, footprint, threads)
    if cap is not None:
        sizing.env["RERANKER_MAX_TOKENS"] = str(cap)
        chosen = int(user_env.get("RERANKER_MAX_TOKENS") or cap)
        if chosen < CLIENT_MAX_TOKENS:
            sizing.notices.append(
                f"RERANKER_MAX_TOKENS={chosen} for this model and instance: create the client "
                f"with SagemakerEndpointCrossEncoder(..., max_tokens_per_request={chosen})"
            )
    if instance is None:
        check_serverless(serverless_memory or 0, footprint, user_env)
        return sizing
    if kind == "gpu":
        sizing.env.update(gpu_env(instance))
        sizing.notices += check_gpu(instance, footprint, user_env)
    sizing.container = container_settings(instance, footprint)
    for key, value in overrides.items():
        if value is not None:
            sizing.container[key] = value
    return sizing


def check_overrides(
    instance_type: str | None, overrides: dict[str, tuple[str, int | None]]
) -> None:
    """The user's container settings, by ProductionVariant key: (flag, value). Checked before
    any AWS call: ranges, serverless, and NVMe instances (no VolumeSizeInGB)."""
    given = {key: flag for key, (flag, value) in overrides.items() if value is not None}
    if instance_type is None and given:
        raise DeployError(
            f"serverless endpoints take no {', '.join(given.values())}: SageMaker sizes them"
        )
    for key, (flag, value) in overrides.items():
        bounds = VOLUME_RANGE if key == "VolumeSizeInGB" else TIMEOUT_RANGE
        check_setting(key, flag, value, bounds)
    volume = given.get("VolumeSizeInGB")
    if volume and instance_type is not None and describe_instance(instance_type).nvme:
        raise DeployError(
            f"{instance_type} has NVMe instance storage, where SageMaker attaches no EBS "
            f"volume and refuses VolumeSizeInGB: drop {volume}"
        )
