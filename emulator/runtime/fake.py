"""An in-memory Runtime for fast, deterministic tests. It runs no process.

It keeps Docker's contract (the same contract tests run against both) and adds knobs: ``crash``,
per-image behaviour (exit right after start, be OOM-killed, never become ready, refuse to start),
``set_unavailable``, ``refuse_gpus``, logs a test appends to, a record of every call and of every event.
``cluster=FakeCluster([8] * 50)``: Kubernetes' capabilities and placement (see ``fake_cluster``).

"Ready" is not a runtime notion (a worker is ready when it talks to the control plane); the fake tracks
it so tests can simulate that: a container becomes ready right after start unless its image hangs
(``hang_startup``) and then only on ``make_ready``; ``ready_hooks`` are called when it does.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import signal as signals
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from emulator.clock import Clock, SystemClock
from emulator.errors import ContainerNotFound, EmulatorError, InvalidInput, RuntimeFailure, RuntimeUnavailable
from emulator.runtime import VOLUME_MOUNT, gpu_unavailable, image_not_found
from emulator.runtime.base import (
    CLUSTER_CAPABILITIES,
    DOCKER_CAPABILITIES,
    LABEL_ENDPOINT,
    LABEL_VERSION,
    LABEL_WORKER,
    Capabilities,
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    ContainerStatus,
)
from emulator.runtime.fake_cluster import FakeCluster
from emulator.runtime.fake_engine import ALIVE as _ALIVE
from emulator.runtime.fake_engine import FakeEngineObjects
from emulator.runtime.fake_http import AddressPool, AppFactory, LoopbackServer, listen_ports

_GPU_REFUSAL = 'could not select device driver "nvidia" with capabilities: [[gpu]]'


@dataclass(frozen=True)
class ImageBehavior:
    """What containers of one image do when started."""

    exit_code: int | None = None  # exit with this code right after start
    oom: bool = False  # be OOM-killed (137) right after start
    ready: bool = True  # become ready right after start; False: only on make_ready()
    start_error: EmulatorError | None = None  # start() raises this (the container stays "created")
    logs: tuple[str, ...] = ()  # lines printed at each start
    stop_exit_code: int = 0  # exit code after a graceful stop (a process that handles SIGTERM)
    # a load-balancing worker: env -> an ASGI app, served on the container's own loopback address at
    # PORT (and PORT_HEALTH) while it runs (emulator.runtime.fake_http)
    http_app: AppFactory | None = None


@dataclass
class FakeContainer:
    id: str
    spec: ContainerSpec
    status: ContainerStatus = "created"
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    pending: str | None = None  # cluster mode: why a started container waits (Unschedulable: ...)
    ready: bool = False
    logs: list[str] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=lambda: {"memory_mb": 32.0, "cpu_percent": 1.0})
    address: str | None = None  # its loopback address while its HTTP server runs (http_app images)
    server: LoopbackServer | None = None

    def info(self) -> ContainerInfo:
        ended = self.status in ("exited", "dead")
        return ContainerInfo(
            id=self.id,
            name=self.spec.name,
            labels=dict(self.spec.labels),
            status=self.status,
            exit_code=self.exit_code if ended else None,
            oom_killed=self.oom_killed,
            started_at=self.started_at,
            finished_at=self.finished_at if ended else None,
            error=self.error,
            ip_address=self.address if self.status in _ALIVE else None,
            pending=self.pending if self.status == "created" else None,
        )


@dataclass(frozen=True)
class FakeCall:
    method: str
    args: tuple[Any, ...]


class FakeRuntime(FakeEngineObjects):
    def __init__(
        self,
        clock: Clock | None = None,
        *,
        refuse_gpus: bool = False,
        images: set[str] | None = None,  # None: every image exists
        registry: dict[str, str] | None = None,  # what pulls find: image -> its id (sha256:...)
        capabilities: Capabilities | None = None,  # None: Docker's, or the cluster's with ``cluster``
        cluster: FakeCluster | None = None,  # cluster mode: nodes with GPUs, Pods that fit nowhere wait
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.cluster = cluster
        self.capabilities = capabilities or (CLUSTER_CAPABILITIES if cluster else DOCKER_CAPABILITIES)
        self.refuse_gpus = refuse_gpus
        self.images = images
        self.registry: dict[str, str] = dict(registry or {})
        self.image_ids: dict[str, str] = {}
        self.pull_error: str | None = None  # set: every pull fails with this engine text
        self.unavailable = False
        self.calls: list[FakeCall] = []
        self.event_log: list[ContainerEvent] = []
        self.containers: dict[str, FakeContainer] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, str]] = {}
        self.behaviors: dict[str, ImageBehavior] = {}
        self.ready_hooks: list[Callable[[FakeContainer], None]] = []
        self._subscribers: list[tuple[dict[str, str], asyncio.Queue[ContainerEvent]]] = []
        self._changed = asyncio.Event()
        self._counter = 0
        self._open_streams = 0
        self._addresses = AddressPool()
        self._stopping: set[asyncio.Task[None]] = set()

    # --- knobs -------------------------------------------------------------------------------
    def set_unavailable(self, unavailable: bool = True) -> None:
        """While set, every call raises RuntimeUnavailable (as when the Docker daemon is down)."""
        self.unavailable = unavailable

    def set_image_behavior(self, image: str, behavior: ImageBehavior | None = None, **fields: Any) -> None:
        """``set_image_behavior("img", exit_code=3)``: containers of ``img`` exit 3 right after start."""
        self.behaviors[image] = replace(behavior or self.behaviors.get(image, ImageBehavior()), **fields)

    def hang_startup(self, image: str) -> None:
        """Containers of ``image`` run but never become ready (until ``make_ready``)."""
        self.set_image_behavior(image, ready=False)

    def make_ready(self, container_id: str) -> None:
        container = self._get(container_id)
        if container.status == "running" and not container.ready:
            container.ready = True
            for hook in list(self.ready_hooks):
                hook(container)

    def is_ready(self, container_id: str) -> bool:
        return self._get(container_id).ready

    def crash(self, container_id: str, exit_code: int | None = None, oom: bool = False) -> None:
        """The container's process dies now: ``exit_code`` (default 1, or 137 with ``oom``)."""
        container = self._get(container_id)
        if container.status in _ALIVE:
            self._exit(container, exit_code if exit_code is not None else (137 if oom else 1), oom=oom)

    def append_log(self, container_id: str, *lines: str) -> None:
        self._get(container_id).logs.extend(lines)
        self._notify()

    def set_stats(self, container_id: str, memory_mb: float, cpu_percent: float) -> None:
        self._get(container_id).stats = {"memory_mb": memory_mb, "cpu_percent": cpu_percent}

    def calls_to(self, method: str) -> list[tuple[Any, ...]]:
        return [call.args for call in self.calls if call.method == method]

    def spec_of(self, container_id: str) -> ContainerSpec:
        return self._get(container_id).spec

    @property
    def open_streams(self) -> int:
        return self._open_streams

    # --- the Runtime protocol -------------------------------------------------------------------
    async def ping(self) -> None:
        self._enter("ping")

    async def create(self, spec: ContainerSpec) -> str:
        self._enter("create", spec)
        if self.images is not None and spec.image not in self.images:
            raise image_not_found(spec.image)
        if spec.network in ("host", "none") or (spec.network or "").startswith("container:"):
            raise InvalidInput(
                f"network {spec.network!r} is not allowed for worker containers", field="network"
            )
        if spec.network and spec.network not in self.networks:
            raise RuntimeFailure(f"network {spec.network} not found", reason="network not found", status=404)
        if any(c.spec.name == spec.name for c in self.containers.values()):
            raise RuntimeFailure(
                f"the container name {spec.name!r} is already in use", reason="name conflict"
            )
        if spec.volume and spec.volume not in self.volumes:
            self.volumes[spec.volume] = {
                k: v for k, v in spec.labels.items() if k not in (LABEL_WORKER, LABEL_VERSION, LABEL_ENDPOINT)
            }
        self._counter += 1
        container_id = hashlib.sha256(f"fake-container-{self._counter}".encode()).hexdigest()
        self.containers[container_id] = FakeContainer(id=container_id, spec=spec)
        self._emit(self.containers[container_id], "create")
        return container_id

    async def start(self, container_id: str) -> None:
        self._enter("start", container_id)
        container = self._get(container_id)
        if container.status == "running":
            return
        if container.status == "paused":
            raise RuntimeFailure("cannot start a paused container, try unpause instead", reason="paused")
        if container.spec.gpu_device_ids and self.refuse_gpus:
            container.error = _GPU_REFUSAL
            raise gpu_unavailable(_GPU_REFUSAL, container.spec.gpu_device_ids)
        behavior = self.behaviors.get(container.spec.image, ImageBehavior())
        if behavior.start_error is not None:
            container.error = behavior.start_error.message
            raise behavior.start_error
        if self.cluster is not None and not self._place(container):
            return  # cluster mode: waits "created" with the scheduler's message until a node has room
        app = behavior.http_app
        if self._run(container) and app is not None and await self._serve(container, app) and behavior.ready:
            self.make_ready(container_id)

    def _run(self, container: FakeContainer) -> bool:
        """The container's process starts; True when it still runs and has an HTTP app to serve (the
        caller serves it: a container the cluster mode places later gets none)."""
        behavior = self.behaviors.get(container.spec.image, ImageBehavior())
        container.status, container.started_at = "running", self.clock.now()
        container.exit_code, container.oom_killed, container.error, container.ready = None, False, None, False
        container.logs.extend(behavior.logs)
        self._emit(container, "start")
        if behavior.oom:
            self._exit(container, 137, oom=True)
        elif behavior.exit_code is not None:
            self._exit(container, behavior.exit_code)
        elif behavior.http_app is not None:
            return True
        elif behavior.ready:
            self.make_ready(container.id)
        return False

    async def stop(self, container_id: str, timeout_s: float = 10.0) -> None:
        self._enter("stop", container_id, timeout_s)
        container = self.containers.get(container_id)
        if container is not None and container.status in _ALIVE:
            self._emit(container, "kill")
            code = self.behaviors.get(container.spec.image, ImageBehavior()).stop_exit_code
            self._exit(container, code)
            self._emit(container, "stop")
        await self._settle()

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        self._enter("kill", container_id, signal)
        container = self.containers.get(container_id)
        if container is not None and container.status in _ALIVE:
            self._emit(container, "kill")
            self._exit(container, 128 + _signal_number(signal))
        await self._settle()

    async def remove(self, container_id: str, force: bool = True) -> None:
        self._enter("remove", container_id, force)
        container = self.containers.get(container_id)
        if container is None:
            return
        if container.status in _ALIVE:
            if not force:
                raise RuntimeFailure(
                    f"cannot remove running container {container_id}: stop it first or force remove",
                    reason="container is running",
                )
            self._emit(container, "kill")
            self._exit(container, 137)
        del self.containers[container_id]
        self._emit(container, "destroy")
        self._release(container)
        await self._settle()

    async def pause(self, container_id: str) -> None:
        self._enter("pause", container_id)
        container = self._get(container_id)
        if not self.capabilities.pause:
            raise RuntimeFailure("this runtime cannot pause a container", reason="unsupported", status=409)
        if container.status != "running":
            raise RuntimeFailure(f"container {container_id} is not running", reason="is not running")
        container.status = "paused"
        self._emit(container, "pause")

    async def unpause(self, container_id: str) -> None:
        self._enter("unpause", container_id)
        container = self._get(container_id)
        if container.status != "paused":
            raise RuntimeFailure(f"container {container_id} is not paused", reason="is not paused")
        container.status = "running"
        self._emit(container, "unpause")

    async def inspect(self, container_id: str) -> ContainerInfo:
        self._enter("inspect", container_id)
        return self._get(container_id).info()

    async def inspect_raw(self, container_id: str) -> dict[str, Any]:
        """A Docker-shaped subset of the inspect document, for assertions shared with DockerRuntime."""
        self._enter("inspect_raw", container_id)
        container = self._get(container_id)
        spec = container.spec
        command = shlex.split(spec.command) if isinstance(spec.command, str) else spec.command
        requests = [{"Driver": "nvidia", "DeviceIDs": list(spec.gpu_device_ids), "Capabilities": [["gpu"]]}]
        return {
            "Id": container.id,
            "Name": "/" + spec.name,
            "Config": {"Image": spec.image, "Cmd": command, "Labels": dict(spec.labels), "Env": _env(spec)},
            "HostConfig": {
                "Memory": spec.memory_mb * 1024 * 1024 if spec.memory_mb else 0,
                "NanoCpus": spec.nano_cpus or 0,
                "Privileged": False,
                "NetworkMode": spec.network or "default",
                "ExtraHosts": [f"{host}:{ip}" for host, ip in spec.extra_hosts.items()] or None,
                "DeviceRequests": requests if spec.gpu_device_ids else None,
            },
            "Mounts": [{"Type": "volume", "Name": spec.volume, "Destination": VOLUME_MOUNT}]
            if spec.volume
            else [],
            "State": {"Status": container.status, "ExitCode": container.exit_code or 0},
        }

    async def list(self, labels: dict[str, str]) -> list[ContainerInfo]:
        self._enter("list", dict(labels))
        return [c.info() for c in self.containers.values() if _matches(c.spec.labels, labels)]

    async def logs(self, container_id: str, tail: int = 100) -> str:
        self._enter("logs", container_id, tail)
        lines = self._get(container_id).logs
        chosen = lines if tail < 0 else lines[len(lines) - tail :] if tail else []
        return "".join(line + "\n" for line in chosen)

    def follow_logs(self, container_id: str, timestamps: bool = False) -> AsyncIterator[str]:
        self.calls.append(FakeCall("follow_logs", (container_id,)))
        return self._follow(container_id, timestamps)

    async def _follow(self, container_id: str, timestamps: bool = False) -> AsyncIterator[str]:
        self._check()
        container = self._get(container_id)
        self._open_streams += 1
        try:
            position = 0
            while True:
                changed = self._changed
                while position < len(container.logs):
                    line = container.logs[position]
                    if timestamps:  # the time it is read stands in for the time it was written
                        stamp = datetime.fromtimestamp(self.clock.now(), UTC).strftime(
                            "%Y-%m-%dT%H:%M:%S.%fZ"
                        )
                        line = f"{stamp} {line}"
                    yield line
                    position += 1
                if container.status not in _ALIVE or container.id not in self.containers:
                    return
                await changed.wait()
        finally:
            self._open_streams -= 1

    async def stats(self, container_id: str) -> dict[str, float]:
        self._enter("stats", container_id)
        container = self._get(container_id)
        return dict(container.stats) if container.status in _ALIVE else {"memory_mb": 0.0, "cpu_percent": 0.0}

    def events(self, labels: dict[str, str]) -> AsyncIterator[ContainerEvent]:
        """Events from this call on (subscribed now, so nothing between call and iteration is lost)."""
        self.calls.append(FakeCall("events", (dict(labels),)))
        subscription: tuple[dict[str, str], asyncio.Queue[ContainerEvent]] = (dict(labels), asyncio.Queue())
        self._subscribers.append(subscription)
        return self._drain(subscription)

    async def _drain(
        self, subscription: tuple[dict[str, str], asyncio.Queue[ContainerEvent]]
    ) -> AsyncIterator[ContainerEvent]:
        self._open_streams += 1
        try:
            while True:
                self._check()
                yield await subscription[1].get()
        finally:
            self._open_streams -= 1
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    async def close(self) -> None:
        """Stop every HTTP server still running (containers the test left) and wait for them to end."""
        for container in self.containers.values():
            self._stop_server(container)
        await self._settle()

    async def _settle(self) -> None:
        """Wait for the HTTP servers being stopped (their ports are free after it)."""
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    # --- internals ------------------------------------------------------------------------------
    async def _serve(self, container: FakeContainer, factory: AppFactory) -> bool:
        """Start the container's HTTP server; False (the container exited 1) when a port cannot be bound."""
        if container.address is None:
            container.address = self._addresses.take()
        ports = listen_ports(container.spec.env)
        server = LoopbackServer(factory(dict(container.spec.env)), container.address, ports)
        try:
            await server.start()
        except OSError as exc:
            container.logs.append(f"ERROR: could not bind {container.address} ports {ports}: {exc}")
            self._exit(container, 1)
            return False
        if container.status != "running":  # stopped while it started
            await server.stop()
            return False
        container.server = server
        return True

    def _stop_server(self, container: FakeContainer) -> None:
        server, container.server = container.server, None
        if server is not None:
            task = asyncio.get_running_loop().create_task(server.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def _check(self) -> None:
        if self.unavailable:
            raise RuntimeUnavailable(
                "cannot reach the container runtime (fake: set_unavailable); "
                "is the Docker daemon running? check `docker info`"
            )

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append(FakeCall(method, args))
        self._check()

    def _get(self, container_id: str) -> FakeContainer:
        container = self.containers.get(container_id)
        if container is None:
            raise ContainerNotFound(f"container {container_id} not found", container_id=container_id)
        return container

    def _exit(self, container: FakeContainer, exit_code: int, oom: bool = False) -> None:
        if oom:
            self._emit(container, "oom")
        container.status, container.exit_code, container.oom_killed = "exited", exit_code, oom
        container.finished_at, container.ready = self.clock.now(), False
        self._stop_server(container)
        self._emit(container, "die", exit_code)
        self._release(container)

    def _place(self, container: FakeContainer) -> bool:
        """Cluster mode: put a started container on a node; False (with ``pending`` set) when none has room."""
        assert self.cluster is not None
        container.pending = self.cluster.admit(container.id, container.spec)
        return container.pending is None

    def _release(self, container: FakeContainer) -> None:
        """Cluster mode: the container's GPUs are free; waiting containers are placed, oldest first."""
        if self.cluster is None or not self.cluster.release(container.id):
            return
        waiting = [c for c in self.containers.values() if c.status == "created" and c.pending]
        for queued in waiting:  # in creation order: the oldest first
            if self._place(queued):
                self._run(queued)

    def _emit(self, container: FakeContainer, action: str, exit_code: int | None = None) -> None:
        labels = dict(container.spec.labels)
        event = ContainerEvent(container.id, action, labels, exit_code, self.clock.now())
        self.event_log.append(event)
        for wanted, queue in self._subscribers:
            if _matches(labels, wanted):
                queue.put_nowait(event)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in wanted.items())


def _signal_number(signal: str | int) -> int:
    text = str(signal).upper()
    if text.isdigit():
        return int(text)
    return int(signals.Signals[text if text.startswith("SIG") else "SIG" + text])


def _env(spec: ContainerSpec) -> list[str]:
    return [f"{key}={value}" for key, value in spec.env.items()]
