"""Validated shapes shared by the API, the store and the supervisor (RunPod's field names)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


class JobStatus(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}
)


class WorkerState(StrEnum):
    """RunPod's worker states, as reported in the workers list and /health."""

    INITIALIZING = "INITIALIZING"
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    THROTTLED = "THROTTLED"
    OUTDATED = "OUTDATED"
    UNHEALTHY = "UNHEALTHY"


class BackoffPolicy(BaseModel):
    """How an UNHEALTHY worker is restarted: initial delay, growth, cap, give-up time, reset."""

    model_config = ConfigDict(extra="forbid")

    initialDelayS: float = Field(1.0, gt=0, le=86400)
    factor: float = Field(2.0, ge=1, le=100)
    maxDelayS: float = Field(300.0, gt=0, le=7 * 86400)
    giveUpAfterS: float = Field(7 * 86400.0, gt=0, le=30 * 86400)
    resetAfterS: float = Field(60.0, gt=0, le=86400)


StartCmd = list[str] | str | None
# Fields whose change alters what a worker runs: a change bumps the endpoint's version.
VERSIONED_FIELDS = (
    "imageName",
    "env",
    "gpuCount",
    "dockerStartCmd",
    "memoryInMb",
    "networkVolumeId",
    "vcpuCount",
    "shmSizeMb",
    "modelReferences",
    "localS3",
    "type",
)
# networkVolumeId: a named Docker volume (an id), or an absolute host folder bind-mounted at /runpod-volume
VOLUME_PATTERN = r"^(/[^\u0000]*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"
ModelRefs = Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(max_length=16)]

# RunPod's endpoint types: queue-based (GraphQL "QB", REST "QUEUE") and load-balancing ("LB",
# "LOAD_BALANCER"; docs serverless/load-balancing/overview). Stored and answered as QB / LB.
EndpointType = Literal["QB", "LB"]
_TYPE_SPELLINGS = {"QB": "QB", "QUEUE": "QB", "LB": "LB", "LOAD_BALANCER": "LB"}


def endpoint_type(value: object) -> object:
    """``QB``/``QUEUE`` -> ``QB``, ``LB``/``LOAD_BALANCER`` -> ``LB`` (any case); anything else unchanged
    (the Literal then refuses it with a message naming the field)."""
    if isinstance(value, str):
        return _TYPE_SPELLINGS.get(value.strip().upper(), value)
    return value


class _EndpointFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("env", check_fields=False)
    @classmethod
    def _env_keys(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        for key in v:
            if not key or "=" in key or "\x00" in key:
                raise ValueError(f"invalid environment variable name {key!r}")
        return v

    @field_validator("type", mode="before", check_fields=False)
    @classmethod
    def _type(cls, v: object) -> object:
        return endpoint_type(v)

    @field_validator("dockerStartCmd", check_fields=False)
    @classmethod
    def _start_cmd(cls, v: StartCmd) -> StartCmd:
        if isinstance(v, str) and not v.strip():
            return None
        if isinstance(v, list) and not v:
            return None
        return v


NameStr = Annotated[str, Field(min_length=1, max_length=191)]
ImageStr = Annotated[str, Field(min_length=1, max_length=512)]
PullPolicyStr = Literal["ALWAYS", "IF_MISSING", "NEVER"]
OptId = Annotated[str | None, Field(None, pattern=ID_PATTERN)]
StrList = Annotated[list[Annotated[str, Field(max_length=256)]] | None, Field(None, max_length=100)]
# RunPod REST v1 fields the emulator keeps and shows back but cannot honour on one machine
NOT_EMULATED_FIELDS = (
    "gpuTypeIds",
    "dataCenterIds",
    "allowedCudaVersions",
    "minCudaVersion",
    "cpuFlavorIds",
    "networkVolumeIds",
    "vcpuCount",
)


class _RestFields(BaseModel):
    """RunPod REST v1 endpoint fields beyond the emulator's first set (docs api-reference, EndpointCreateInput).

    ``templateId`` names a ``/v1/templates`` entry whose image, env, start command and registry
    credential the endpoint runs; ``computeType`` GPU (or ``gpuTypeIds``) without ``gpuCount`` means one
    GPU, as on RunPod. ``pullPolicy`` and ``containerRegistryAuthId`` are the emulator's: see
    ``emulator.supervisor.pull_policy``.
    """

    templateId: OptId = None
    computeType: Literal["CPU", "GPU"] | None = None
    gpuTypeIds: StrList = None
    dataCenterIds: StrList = None
    allowedCudaVersions: StrList = None
    minCudaVersion: str | None = Field(None, max_length=16)
    cpuFlavorIds: StrList = None
    networkVolumeIds: StrList = None
    vcpuCount: int | None = Field(None, ge=1, le=512)
    pullPolicy: PullPolicyStr | None = None
    containerRegistryAuthId: OptId = None


class EndpointSpec(_EndpointFields, _RestFields):
    """The body of POST /v1/endpoints (and one [[endpoints]] table of endpoints.toml).

    ``imageName`` or ``templateId`` is required (a template fills ``imageName`` in).
    """

    name: NameStr
    imageName: ImageStr | None = None
    id: str | None = Field(None, pattern=ID_PATTERN)
    workersMin: int = Field(0, ge=0, le=100)
    workersMax: int = Field(3, ge=0, le=100)
    extraWorkers: int = Field(2, ge=0, le=100)
    idleTimeout: float = Field(5, gt=0, le=3600)
    scalerType: Literal["QUEUE_DELAY", "REQUEST_COUNT"] = "QUEUE_DELAY"
    scalerValue: float = Field(4, gt=0, le=3600)
    gpuCount: int = Field(0, ge=0, le=16)
    executionTimeoutMs: int = Field(600_000, ge=5_000, le=7 * 86400 * 1000)
    flashboot: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    dockerStartCmd: StartCmd = None
    memoryInMb: int | None = Field(None, ge=6, le=1024 * 1024)
    networkVolumeId: str | None = Field(None, pattern=VOLUME_PATTERN, max_length=4096)
    backoff: BackoffPolicy = Field(default_factory=lambda: BackoffPolicy())
    type: EndpointType = "QB"
    shmSizeMb: int | None = Field(None, ge=1, le=1024 * 1024)
    modelReferences: ModelRefs = Field(default_factory=list)
    localS3: bool = False  # emulator addition: BUCKET_* variables of the local S3 server (serve --s3)

    @model_validator(mode="after")
    def _bounds(self) -> EndpointSpec:
        if self.workersMin > self.workersMax:
            raise ValueError("workersMin must not exceed workersMax")
        if not self.imageName and not self.templateId:
            raise ValueError("imageName or templateId is required")
        if "gpuCount" not in self.model_fields_set and (self.computeType == "GPU" or self.gpuTypeIds):
            self.gpuCount = 1  # RunPod's default for a GPU endpoint
        if self.type == "LB" and self.scalerType != "REQUEST_COUNT":
            if "scalerType" in self.model_fields_set:
                raise ValueError(
                    "a load-balancing endpoint (type LB) scales on requests in flight only: "
                    "scalerType must be REQUEST_COUNT"
                )
            self.scalerType = "REQUEST_COUNT"
        return self

    @field_serializer("idleTimeout", "scalerValue")
    def _whole(self, value: float) -> float | int:
        return int(value) if float(value).is_integer() else value  # RunPod's type is integer


class EndpointPatch(_EndpointFields, _RestFields):
    """The body of PATCH /v1/endpoints/{id}: any field but ``id``."""

    name: NameStr | None = None
    imageName: ImageStr | None = None
    workersMin: int | None = Field(None, ge=0, le=100)
    workersMax: int | None = Field(None, ge=0, le=100)
    extraWorkers: int | None = Field(None, ge=0, le=100)
    idleTimeout: float | None = Field(None, gt=0, le=3600)
    scalerType: Literal["QUEUE_DELAY", "REQUEST_COUNT"] | None = None
    scalerValue: float | None = Field(None, gt=0, le=3600)
    gpuCount: int | None = Field(None, ge=0, le=16)
    executionTimeoutMs: int | None = Field(None, ge=5_000, le=7 * 86400 * 1000)
    flashboot: bool | None = None
    env: dict[str, str] | None = None
    dockerStartCmd: StartCmd = None
    memoryInMb: int | None = Field(None, ge=6, le=1024 * 1024)
    networkVolumeId: str | None = Field(None, pattern=VOLUME_PATTERN, max_length=4096)
    backoff: BackoffPolicy | None = None
    type: EndpointType | None = None
    shmSizeMb: int | None = Field(None, ge=1, le=1024 * 1024)
    modelReferences: ModelRefs | None = None
    localS3: bool | None = None


class Endpoint(EndpointSpec):
    """An endpoint as stored and returned: the spec plus identity and version."""

    id: str
    imageName: ImageStr
    version: int = 1
    createdAt: float = 0.0
    updatedAt: float = 0.0
    rollout: dict[str, Any] | None = None  # {"status": ..., "reason": ...} while a rollout is stuck

    def spec_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude={"version", "createdAt", "updatedAt", "rollout"})

    def apply_patch(self, patch: EndpointPatch) -> tuple[Endpoint, bool]:
        """The endpoint after ``patch`` and whether what workers run changed (a version bump)."""
        changes = patch.model_dump(exclude_unset=True)
        merged = self.model_dump()
        bump = False
        for key, value in changes.items():
            if key in VERSIONED_FIELDS and merged.get(key) != value:
                bump = True
            merged[key] = value
        if bump:
            merged["version"] = self.version + 1
        if merged.get("type") == "LB" and "scalerType" not in changes:
            merged["scalerType"] = "REQUEST_COUNT"  # the only scaler of a load-balancing endpoint
        updated = Endpoint.model_validate(merged)
        return updated, bump


class JobPolicy(BaseModel):
    model_config = ConfigDict(extra="ignore")

    executionTimeout: int | None = Field(None, ge=5_000, le=7 * 86400 * 1000)
    lowPriority: bool = False
    ttl: int | None = Field(None, ge=10_000, le=7 * 86400 * 1000)


class JobRequest(BaseModel):
    """The body of /run and /runsync."""

    model_config = ConfigDict(extra="ignore")

    input: Any = Field(None, description="Any JSON; optional: a job without it reaches the worker without it")
    webhook: str | None = Field(None, max_length=2048)
    policy: JobPolicy = Field(default_factory=lambda: JobPolicy())
    s3Config: dict[str, Any] | None = None

    @field_validator("webhook")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        return v
