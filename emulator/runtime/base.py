"""The contract between the supervisor and a container runtime (real Docker or the in-memory fake).

Every method is async; implementations keep blocking calls off the event loop and translate
their own errors into ``emulator.errors`` (RuntimeUnavailable, RuntimeFailure, ContainerNotFound,
ImageNotFound, GpuUnavailable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

LABEL_ENDPOINT = "serverless-emulator.endpoint"
LABEL_WORKER = "serverless-emulator.worker"
LABEL_VERSION = "serverless-emulator.version"
LABEL_INSTANCE = "serverless-emulator.instance"  # which control plane (data dir) owns it

ContainerStatus = Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"]


@dataclass(frozen=True)
class HostMount:
    """A host folder bind-mounted into the container at ``target`` (read-only unless ``read_only`` is False)."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    env: dict[str, str]
    labels: dict[str, str]
    command: list[str] | str | None = None
    memory_mb: int | None = None
    volume: str | None = None  # named volume mounted at /runpod-volume
    gpu_device_ids: tuple[str, ...] = ()  # NVIDIA device requests pinned to these ids
    network: str | None = None
    extra_hosts: dict[str, str] = field(default_factory=dict)
    nano_cpus: int | None = None
    init: bool = True  # a tiny init as PID 1 forwards SIGTERM to handlers that do not handle it
    shm_mb: int | None = None  # size of /dev/shm (None: the engine's default, 64 MB)
    host_mounts: tuple[HostMount, ...] = ()  # host folders: a folder network volume, cached models
    gpu_count: int = 0  # GPUs asked for by number (an engine that places workers picks the devices)


@dataclass(frozen=True)
class Capabilities:
    """What a runtime can do; the supervisor plans with it (``reconcile.plan``, ``loop``).

    ``pause``: freeze a container (FlashBoot pauses idle workers; without it they are removed after
    ``idleTimeout``). ``standby``: create a container that is not started (extraWorkers' standby
    containers; without it there are none). ``places_workers``: the engine decides where and when a
    worker runs (a cluster scheduler): the host admission of GPUs, memory and CPU is skipped, and a
    worker the engine cannot place yet waits THROTTLED with the engine's reason. ``gpu_ids``: GPUs are
    pinned by device id (``ContainerSpec.gpu_device_ids``); otherwise they are asked for by count
    (``ContainerSpec.gpu_count``). ``cached_list``: ``list`` answers from a local watch-fed cache (no
    request to the engine), so the supervisor lists on every tick; otherwise it lists when an event
    says a container changed, and every ``relist_interval_s`` as a safety net.
    """

    pause: bool = True
    standby: bool = True
    places_workers: bool = False
    gpu_ids: bool = True
    cached_list: bool = False


DOCKER_CAPABILITIES = Capabilities()
CLUSTER_CAPABILITIES = Capabilities(
    pause=False, standby=False, places_workers=True, gpu_ids=False, cached_list=True
)


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    status: ContainerStatus
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None  # the engine's own error text, when it recorded one
    ip_address: str | None = None  # on its network, while running (load-balancing workers are reached there)
    pending: str | None = (
        None  # a cluster engine's reason a created container waits (Kubernetes: Unschedulable: …)
    )


@dataclass(frozen=True)
class LocalImage:
    """An image the engine has: its id (``sha256:…``) and the registry digests it was pulled or pushed with."""

    id: str
    repo_digests: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerEvent:
    container_id: str
    action: str  # "start", "die", "oom", "pause", "unpause", "destroy", ...
    labels: dict[str, str]
    exit_code: int | None = None
    time: float = 0.0


def classify_exit(exit_code: int | None, oom_killed: bool = False) -> str:
    """A human reason for a container's exit: 137 killed or out of memory, 139 segfault, ..."""
    if oom_killed:
        return f"out of memory (exit {exit_code if exit_code is not None else 137})"
    if exit_code is None:
        return "exited (unknown code)"
    if exit_code == 0:
        return "exited normally (0)"
    if exit_code == 137:
        return "killed (exit 137: SIGKILL or out of memory)"
    if exit_code == 139:
        return "segmentation fault (exit 139)"
    if exit_code == 143:
        return "terminated (exit 143: SIGTERM)"
    if exit_code > 128:
        return f"killed by signal {exit_code - 128} (exit {exit_code})"
    return f"exited with code {exit_code}"


class Runtime(Protocol):
    @property
    def capabilities(self) -> Capabilities:
        """What this runtime can do (``DOCKER_CAPABILITIES`` for Docker, ``CLUSTER_CAPABILITIES`` for Kubernetes)."""

    async def ping(self) -> None:
        """Raise RuntimeUnavailable when the runtime cannot be reached."""

    async def create(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; return its id."""

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``. A missing container is not an error."""

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None: ...

    async def remove(self, container_id: str, force: bool = True) -> None:
        """Remove the container. A missing container is not an error."""

    async def pause(self, container_id: str) -> None: ...

    async def unpause(self, container_id: str) -> None: ...

    async def inspect(self, container_id: str) -> ContainerInfo:
        """Raise ContainerNotFound when it is gone."""

    async def list(self, labels: dict[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all of ``labels``."""

    async def logs(self, container_id: str, tail: int = 100) -> str: ...

    def follow_logs(self, container_id: str, timestamps: bool = False) -> AsyncIterator[str]:
        """Yield the container's output lines as they come, until it stops; with ``timestamps`` each
        line starts with the time it was written (RFC 3339, UTC) and a space, as ``docker logs -t``."""

    async def stats(self, container_id: str) -> dict[str, float]:
        """{"memory_mb": ..., "cpu_percent": ...}"""

    def events(self, labels: dict[str, str]) -> AsyncIterator[ContainerEvent]:
        """Container events for containers with ``labels``, as they happen."""

    async def image_exists(self, image: str) -> bool: ...

    async def image_info(self, image: str) -> LocalImage | None:
        """The local image ``image`` names, or None when the engine does not have it."""

    def pull(self, image: str, auth: dict[str, str] | None) -> AsyncIterator[dict[str, Any]]:
        """Pull ``image`` (``repo:tag`` or ``repo@digest``), yielding the engine's progress documents.

        ``auth``: ``{"username", "password"}`` for the image's registry, or None for the host's Docker
        credentials. A refusal raises RuntimeFailure (``data["reason"]``: the engine's text) or arrives
        as an ``{"error": …}`` document.
        """

    async def ensure_network(self, name: str, labels: dict[str, str]) -> str:
        """Create the network if missing; return its gateway address."""

    async def remove_network(self, name: str) -> None: ...

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None: ...

    async def gpu_runtime_available(self) -> bool:
        """Whether the engine has an NVIDIA runtime or CDI devices for device requests."""
