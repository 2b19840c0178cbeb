"""The desired deployment: validated options turned into SageMaker requests, names and tags.

Names are derived from the endpoint name and a digest of everything the model and endpoint
config contain, so a re-run with the same inputs finds the resources it made, and any change
gets fresh ones (which is what lets ``update`` be blue/green).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sagemaker_reranker.deploy.aws import sizing
from sagemaker_reranker.deploy.aws.artifacts import ModelData
from sagemaker_reranker.deploy.aws.instances import instance_vcpus
from sagemaker_reranker.deploy.aws.session import DeployError, InputError
from sagemaker_reranker.deploy.aws.sizing import cpu_env, cpu_workers
from sagemaker_reranker.deploy.platform import PYTORCH_VERSION, TRANSFORMERS_VERSION, VARIANT
from sagemaker_reranker.deploy.settings import parse_env, parse_key_values

TAG_PREFIX = "sagemaker-reranker:"
ENDPOINT_TAG = TAG_PREFIX + "endpoint"
NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
INSTANCE_RE = re.compile(r"^ml\.([a-z]+)(\d+[a-z]*)\.(\d*x?large|medium|small|\d+xlarge)$")
TAG_VALUE_BAD = re.compile(r"[^\w\s.:/=+\-@]")
DIGEST_LENGTH = 10
DEFAULT_INSTANCE = "ml.g5.xlarge"
SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_REQUEST_BYTES = 4_000_000


def instance_kind(instance_type: str) -> str:
    """``gpu`` for g*/p* families, ``neuron`` for inf*/trn*, else ``cpu``."""
    match = INSTANCE_RE.match(instance_type)
    if not match:
        raise InputError(
            f"{instance_type!r} is not a SageMaker instance type (expected e.g. ml.g5.xlarge)"
        )
    family = match.group(1)
    if family in ("inf", "trn"):
        return "neuron"
    return "gpu" if family in ("g", "p") else "cpu"


def tag_value(value: str | None) -> str:
    """Tag values allow letters, digits, spaces and ``_.:/=+-@`` up to 256 characters."""
    return TAG_VALUE_BAD.sub("_", value or "none")[:256]


def check_endpoint_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InputError(
            f"{name!r} is not a valid endpoint name: letters, digits and single hyphens, "
            "at most 63 characters, starting with a letter or digit"
        )


@dataclass
class DeployOptions:
    """What the user asked for, as given on the command line."""

    name: str
    instance_type: str | None = None
    instance_count: int = 1
    image_uri: str | None = None
    transformers_version: str = TRANSFORMERS_VERSION
    pytorch_version: str = PYTORCH_VERSION
    serverless_memory: int | None = None
    serverless_concurrency: int | None = None
    env: tuple[str, ...] = ()
    vpc_subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    kms_key: str | None = None
    tags: tuple[str, ...] = ()
    network_isolation: bool | None = None
    startup_timeout: int | None = None
    download_timeout: int | None = None
    volume_size: int | None = None

    @property
    def serverless(self) -> bool:
        return self.serverless_memory is not None or self.serverless_concurrency is not None

    def container_overrides(self) -> dict[str, tuple[str, int | None]]:
        """The ProductionVariant settings given on the command line: key -> (flag, value)."""
        return {
            "ContainerStartupHealthCheckTimeoutInSeconds": (
                "--startup-timeout",
                self.startup_timeout,
            ),
            "ModelDataDownloadTimeoutInSeconds": ("--download-timeout", self.download_timeout),
            "VolumeSizeInGB": ("--volume-size", self.volume_size),
        }


@dataclass
class DeploySpec:
    """Everything SageMaker will be asked to create, with the notices the choices produced."""

    endpoint: str
    model_data: ModelData
    role: str
    image: str
    instance_type: str | None
    instance_count: int
    serverless: dict[str, int] | None
    env: dict[str, str]
    vpc: dict[str, list[str]] | None
    kms_key: str | None
    isolation: bool
    user_tags: dict[str, str]
    notices: list[str] = field(default_factory=list)
    container_settings: dict[str, int] = field(default_factory=dict)
    """Timeouts and volume size of the variant (``sizing.container_settings``)."""

    def _container(self) -> dict[str, Any]:
        return {
            "Image": self.image,
            "ModelDataUrl": self.model_data.uri,
            "Environment": dict(sorted(self.env.items())),
            "Mode": "SingleModel",
        }

    def _variant(self, model_name: str, instance_count: int | None = None) -> dict[str, Any]:
        variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": model_name}
        if self.serverless:
            variant["ServerlessConfig"] = dict(self.serverless)
        else:
            variant.update(
                InstanceType=self.instance_type,
                InitialInstanceCount=instance_count or self.instance_count,
                InitialVariantWeight=1.0,
                **self.container_settings,
            )
        return variant

    @property
    def digest(self) -> str:
        """A digest of the model and the endpoint config (not of their names or tags)."""
        content = {
            "container": self._container(),
            "role": self.role,
            "isolation": self.isolation,
            "vpc": self.vpc,
            "variant": self._variant(""),
            "kms": self.kms_key,
        }
        blob = json.dumps(content, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:DIGEST_LENGTH]

    @property
    def resource_name(self) -> str:
        """``{endpoint}-{digest}``, within SageMaker's 63 characters; model and config share it."""
        return f"{self.endpoint[: 63 - DIGEST_LENGTH - 1].rstrip('-')}-{self.digest}"

    @property
    def model_name(self) -> str:
        return self.resource_name

    @property
    def config_name(self) -> str:
        return self.resource_name

    def tags(self) -> list[dict[str, str]]:
        """Ours (endpoint, archive sha256, model revision and source, digest), then the user's."""
        manifest = self.model_data.manifest
        ours = {
            ENDPOINT_TAG: self.endpoint,
            TAG_PREFIX + "archive-sha256": tag_value(self.model_data.sha256),
            TAG_PREFIX + "revision": tag_value(manifest.revision if manifest else None),
            TAG_PREFIX + "source": tag_value(manifest.source if manifest else None),
            TAG_PREFIX + "digest": self.digest,
        }
        merged = {**ours, **self.user_tags}
        return [{"Key": key, "Value": value} for key, value in merged.items()]

    def model_request(self) -> dict[str, Any]:
        request: dict[str, Any] = {
            "ModelName": self.model_name,
            "PrimaryContainer": self._container(),
            "ExecutionRoleArn": self.role,
            "EnableNetworkIsolation": self.isolation,
            "Tags": self.tags(),
        }
        if self.vpc:
            request["VpcConfig"] = self.vpc
        return request

    def config_request(self, instance_count: int | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {
            "EndpointConfigName": self.config_name,
            "ProductionVariants": [self._variant(self.model_name, instance_count)],
            "Tags": self.tags(),
        }
        if self.kms_key:
            request["KmsKeyId"] = self.kms_key
        return request

    def endpoint_request(self) -> dict[str, Any]:
        return create_endpoint_request(self.endpoint, self.config_name, self.tags())


def create_endpoint_request(
    endpoint: str, config: str, tags: list[dict[str, str]]
) -> dict[str, Any]:
    """``CreateEndpoint``'s request, the same for a plain endpoint and one for components."""
    return {"EndpointName": endpoint, "EndpointConfigName": config, "Tags": tags}


def _vcpus(placement: Placement) -> int:
    return 2 if placement.serverless else instance_vcpus(placement.instance_type or "")


def _sizing(options: DeployOptions, placement: Placement, model_data: ModelData) -> sizing.Sizing:
    """Fit checks and defaults sized from the archive's manifest (refuses what cannot fit)."""
    return sizing.size_deployment(
        kind=placement.kind,
        instance_type=placement.instance_type,
        serverless_memory=(placement.serverless or {}).get("MemorySizeInMB"),
        footprint=sizing.ModelFootprint.of(model_data.manifest, model_data.size),
        user_env=user_env(options),
        overrides={key: value for key, (_, value) in options.container_overrides().items()},
        wanted_workers=cpu_workers(_vcpus(placement)),
    )


def _base_env(
    options: DeployOptions, model_data: ModelData, placement: Placement, sized: sizing.Sizing
) -> dict[str, str]:
    env = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}
    if placement.kind == "cpu":
        env.update(cpu_env(_vcpus(placement), sized.workers))
    env.update(sized.env)
    manifest = model_data.manifest
    if manifest and not manifest.weights:
        env["RERANKER_MODEL_ID"] = manifest.source
        if manifest.revision:
            env["RERANKER_MODEL_REVISION"] = manifest.revision
    env.update(user_env(options))
    return env


def user_env(options: DeployOptions) -> dict[str, str]:
    """``--env K=V`` pairs, which override the defaults above."""
    try:
        return parse_env(options.env)
    except ValueError as error:
        raise InputError(str(error)) from None


def _check_serverless(options: DeployOptions, notices: list[str]) -> dict[str, int]:
    if options.instance_type:
        raise InputError("serverless endpoints have no instance type: drop --instance-type")
    if options.vpc_subnets or options.security_groups:
        raise InputError("serverless endpoints cannot run in a VPC: drop --vpc-subnets")
    memory = options.serverless_memory or 4096
    if memory not in SERVERLESS_MEMORY:
        raise InputError(
            f"--serverless-memory {memory} must be one of {', '.join(map(str, SERVERLESS_MEMORY))}"
        )
    concurrency = options.serverless_concurrency or 5
    if not 1 <= concurrency <= 200:
        raise InputError(f"--serverless-concurrency {concurrency} must be between 1 and 200")
    notices.append(
        "serverless: CPU only, requests up to 4 MB — create the client with "
        f"SagemakerEndpointCrossEncoder(..., max_request_bytes={SERVERLESS_MAX_REQUEST_BYTES:_})"
    )
    return {"MemorySizeInMB": memory, "MaxConcurrency": concurrency}


def _isolation(options: DeployOptions, model_data: ModelData, notices: list[str]) -> bool:
    """On when the weights are baked in; off for serverless (unsupported) or a hub download."""
    if options.serverless:
        if options.network_isolation is not False:
            notices.append("serverless endpoints do not support network isolation: turned off")
        return False
    if options.network_isolation is not None:
        return options.network_isolation
    if model_data.weights is False:
        # Checked against the archive's files, so this is what the endpoint will fetch.
        manifest = model_data.manifest
        model = f"{manifest.source}@{manifest.revision or 'main'}" if manifest else "its model"
        notices.append(
            f"the archive has no weights (the endpoint downloads {model} from the Hugging Face "
            "hub at start): network isolation off"
        )
        return False
    if model_data.weights is None:
        notices.append(
            "archive contents unknown (not made by `package`): network isolation on; "
            "pass --no-network-isolation if it downloads its weights"
        )
    return True


@dataclass
class Placement:
    """Where the model runs, decided (and validated) before anything is uploaded."""

    instance_type: str | None
    serverless: dict[str, int] | None
    kind: str
    notices: list[str]


def check_options(options: DeployOptions, role: str) -> Placement:
    """Reject bad combinations before any AWS call; pick the instance type."""
    check_endpoint_name(options.name)
    if not ROLE_RE.match(role):
        raise InputError(f"--role {role!r} is not an IAM role ARN: arn:aws:iam::ACCOUNT:role/NAME")
    if options.instance_count < 1:
        raise InputError("--instance-count must be at least 1")
    if bool(options.vpc_subnets) != bool(options.security_groups):
        raise InputError("--vpc-subnets and --security-groups go together: pass both")
    _tags(options)
    user_env(options)
    notices: list[str] = []
    serverless = _check_serverless(options, notices) if options.serverless else None
    instance_type = None if serverless else (options.instance_type or DEFAULT_INSTANCE)
    kind = "cpu" if serverless else instance_kind(instance_type or "")
    try:
        sizing.check_overrides(instance_type, options.container_overrides())
    except DeployError as error:  # an option out of range or meaningless here: bad input
        raise InputError(str(error)) from None
    if kind == "neuron" and not options.image_uri:
        raise InputError(
            f"{instance_type} needs a Neuron-compiled model and image: pass --image-uri, "
            "or choose a GPU (ml.g5.xlarge) or CPU (ml.m5.xlarge) instance type"
        )
    return Placement(instance_type, serverless, kind, notices)


def image_mismatch(image: str, placement: Placement) -> str | None:
    """A warning when the image's build (its tag says ``gpu``/``cu124`` or ``cpu``) does not
    match the hardware: a GPU image on a CPU instance, or a CPU image leaving a GPU idle."""
    words = set(re.split(r"[^a-z0-9]+", image.rsplit("/", 1)[-1].lower()))
    gpu_build = "gpu" in words or any(re.fullmatch(r"cu\d+", word) for word in words)
    where = placement.instance_type or "a serverless endpoint"
    if placement.kind == "cpu" and gpu_build:
        return (
            f"{image} is a GPU image but {where} has no GPU: a large image that may not start "
            "there; pass a CPU image (-cpu-) or a GPU instance type (ml.g5.xlarge)"
        )
    if placement.kind == "gpu" and "cpu" in words:
        return (
            f"{image} is a CPU image: the model would run on the CPU of {where}, its GPU "
            "idle; pass a GPU image (-gpu-) or a CPU instance type (ml.m5.xlarge)"
        )
    return None


def build_spec(
    options: DeployOptions, placement: Placement, model_data: ModelData, image: str, role: str
) -> DeploySpec:
    """Turn checked options and the uploaded archive into the requests to send."""
    notices = list(placement.notices)
    sized = _sizing(options, placement, model_data)
    notices += sized.notices
    vpc = None
    if options.vpc_subnets:
        vpc = {
            "Subnets": list(options.vpc_subnets),
            "SecurityGroupIds": list(options.security_groups),
        }
    return DeploySpec(
        endpoint=options.name,
        model_data=model_data,
        role=role,
        image=image,
        instance_type=placement.instance_type,
        instance_count=options.instance_count,
        serverless=placement.serverless,
        env=_base_env(options, model_data, placement, sized),
        vpc=vpc,
        kms_key=options.kms_key,
        isolation=_isolation(options, model_data, notices),
        user_tags=_tags(options),
        notices=notices,
        container_settings=sized.container,
    )


def _tags(options: DeployOptions) -> dict[str, str]:
    try:
        return parse_key_values(options.tags, "--tag")
    except ValueError as error:
        raise InputError(str(error)) from None
