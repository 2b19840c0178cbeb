"""What a SageMaker instance type offers a model, from its name: GPUs and their memory, host
memory, vCPUs, and whether it has NVMe instance storage.

GPU memory per instance family, as AWS lists it for the accelerated computing instances:
https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html (SageMaker's ``ml.`` types are
the same machines). Which instance types have instance storage, and the EBS volume SageMaker
attaches to the others: https://docs.aws.amazon.com/sagemaker/latest/dg/host-instance-storage.html
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sagemaker_reranker.deploy.aws.session import DeployError

GPU_DOCS = "https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html"


@dataclass(frozen=True)
class GpuFamily:
    gpu: str
    memory_gb: int
    """Per GPU, in GB as AWS lists it (about what ``nvidia-smi`` reports as total)."""
    gpus: tuple[tuple[str, int], ...] = ()
    """Sizes with more than one GPU: (size, count)."""

    def count(self, size: str) -> int:
        return dict(self.gpus).get(size, 1)


_FOUR_EIGHT = (("12xlarge", 4), ("24xlarge", 4), ("48xlarge", 8))
GPU_FAMILIES = {
    "g4dn": GpuFamily("NVIDIA T4", 16, (("12xlarge", 4), ("metal", 8))),
    "g5": GpuFamily("NVIDIA A10G", 24, _FOUR_EIGHT),
    "g6": GpuFamily("NVIDIA L4", 24, _FOUR_EIGHT),
    "g6e": GpuFamily("NVIDIA L40S", 48, _FOUR_EIGHT),
    "p3": GpuFamily("NVIDIA V100", 16, (("8xlarge", 4), ("16xlarge", 8))),
    "p3dn": GpuFamily("NVIDIA V100", 32, (("24xlarge", 8),)),
    "p4d": GpuFamily("NVIDIA A100", 40, (("24xlarge", 8),)),
    "p4de": GpuFamily("NVIDIA A100", 80, (("24xlarge", 8),)),
    "p5": GpuFamily("NVIDIA H100", 80, (("48xlarge", 8),)),
    "p5e": GpuFamily("NVIDIA H200", 141, (("48xlarge", 8),)),
    "p5en": GpuFamily("NVIDIA H200", 141, (("48xlarge", 8),)),
}
# What to suggest when a model does not fit: the smallest instance of each step up in
# memory per GPU (a copy of the model must fit one GPU; more GPUs do not help).
GPU_LADDER = (
    "ml.g4dn.xlarge",
    "ml.g5.xlarge",
    "ml.g6e.xlarge",
    "ml.p5.48xlarge",
    "ml.p5e.48xlarge",
)
# Memory per vCPU of the general purpose (m), compute (c) and memory (r) optimised families.
CPU_GIB_PER_VCPU = {"c": 2, "m": 4, "r": 8}
# Families with NVMe instance storage, where SageMaker provisions no EBS volume and refuses
# VolumeSizeInGB; also any family with "d" after its generation (m5d, c6id, p4d, g4dn).
NVME_FAMILIES = frozenset({"g5", "g6", "g6e", "p5", "p5e", "p5en", "trn1", "trn1n", "trn2"})
FAMILY_RE = re.compile(r"^ml\.(([a-z]+)(\d+)([a-z-]*))\.([a-z0-9]+)$")


SIZE_VCPUS = {"medium": 1, "large": 2, "xlarge": 4}


def instance_vcpus(instance_type: str) -> int:
    """vCPUs from the size name: large=2, xlarge=4, Nxlarge=4N (the EC2 convention)."""
    size = instance_type.rsplit(".", 1)[-1]
    if size in SIZE_VCPUS:
        return SIZE_VCPUS[size]
    multiple = size.removesuffix("xlarge")
    return 4 * int(multiple) if multiple.isdigit() else 2


@dataclass(frozen=True)
class Instance:
    """What an instance type offers a model, from its name."""

    name: str
    family: str
    size: str
    gpu: GpuFamily | None
    memory_gib: int | None
    """Host memory when known (m, c, r families)."""
    nvme: bool


def describe_instance(instance_type: str) -> Instance:
    match = FAMILY_RE.match(instance_type)
    if not match:
        raise DeployError(f"{instance_type!r} is not a SageMaker instance type")
    family, letters, _generation, suffix, size = match.groups()
    ratio = CPU_GIB_PER_VCPU.get(letters)
    return Instance(
        name=instance_type,
        family=family,
        size=size,
        gpu=GPU_FAMILIES.get(family),
        memory_gib=instance_vcpus(instance_type) * ratio if ratio else None,
        nvme=family in NVME_FAMILIES or "d" in suffix,
    )


def describe_gpu(instance: Instance) -> str:
    """``1 x NVIDIA A10G (24 GB)`` for the dry run's summary; empty off GPU families."""
    if instance.gpu is None:
        return ""
    count = instance.gpu.count(instance.size)
    return f"{count} x {instance.gpu.gpu} ({instance.gpu.memory_gb} GB)"
