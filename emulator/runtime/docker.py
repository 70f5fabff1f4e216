"""The Docker adapter: the only module in the project that imports ``docker``.

Every blocking SDK call runs in a small bounded thread pool; long-lived streams (logs, events) each
get their own thread, bridged to the event loop through a bounded ``asyncio.Queue`` and closed when
the consumer stops. Docker's errors are translated into ``emulator.errors`` here and nowhere else.
Images are pulled through ``pull`` (a stream of the engine's progress documents); a missing image at
``create`` is an ``ImageNotFound`` that names the fix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, Mount

from emulator.errors import (
    ContainerNotFound,
    EmulatorError,
    GpuUnavailable,
    ImageNotFound,
    InvalidInput,
    RuntimeFailure,
    RuntimeUnavailable,
)
from emulator.runtime import VOLUME_MOUNT, gpu_unavailable, image_not_found
from emulator.runtime._stream import ThreadStream
from emulator.runtime.base import (
    DOCKER_CAPABILITIES,
    Capabilities,
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    LocalImage,
)
from emulator.runtime.docker_docs import (
    LineSplitter,
    compute_stats,
    container_info,
    has_cdi_specs,
    label_filter,
    to_event,
    volume_labels,
)
from emulator.runtime.pull_docs import parse_image

T = TypeVar("T")
API = Any  # docker.APIClient; the SDK is untyped

DOCKER_HINT = "is the Docker daemon running? check `docker info`"
_GPU_REFUSALS = (
    "could not select device driver",
    "nvidia-container-cli",
    "unknown or invalid runtime name: nvidia",
    "unresolvable cdi devices",
)
_FORBIDDEN_NETWORKS = ("host", "none")
_CDI_DIRS = ("/etc/cdi", "/var/run/cdi")


def gpu_unavailable_from(explanation: str, device_ids: Iterable[str] = ()) -> GpuUnavailable | None:
    """The engine's refusal of a GPU device request as a GpuUnavailable naming the fix, else None."""
    if any(marker in explanation.lower() for marker in _GPU_REFUSALS):
        return gpu_unavailable(explanation, device_ids)
    return None


def translate_error(exc: BaseException, kind: str = "container", subject: str = "") -> BaseException:
    """Map an exception raised by the SDK to the project's errors (``kind``: container, image, ...)."""
    if isinstance(exc, EmulatorError):
        return exc
    if isinstance(exc, docker.errors.ImageNotFound) or (
        isinstance(exc, docker.errors.NotFound) and kind == "image"
    ):
        return image_not_found(subject)
    if isinstance(exc, docker.errors.NotFound):
        # A 404 on a container call may be about something else ("network x not found" on start).
        if kind == "container" and "no such container" in _explain(exc).lower():
            return ContainerNotFound(f"container {subject} not found", container_id=subject)
        return RuntimeFailure(f"{kind} {subject}: {_explain(exc)}", reason=_explain(exc), status=404)
    if isinstance(exc, docker.errors.APIError):
        explanation = _explain(exc)
        gpu = gpu_unavailable_from(explanation)
        if gpu is not None:
            return gpu
        return RuntimeFailure(
            f"Docker refused ({kind} {subject}): {explanation}", reason=explanation, status=exc.status_code
        )
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError | FileNotFoundError):
        return RuntimeUnavailable(f"cannot reach the Docker engine ({exc}); {DOCKER_HINT}")
    if isinstance(exc, requests.exceptions.Timeout):
        return RuntimeFailure(f"the Docker engine did not answer in time ({kind} {subject})", reason=str(exc))
    if isinstance(exc, docker.errors.DockerException):
        return RuntimeFailure(f"Docker error ({kind} {subject}): {exc}", reason=str(exc))
    return exc


def _explain(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc)


class DockerRuntime:
    """The Runtime protocol on a real Docker engine (``base_url`` None: the environment's DOCKER_HOST)."""

    capabilities: Capabilities = DOCKER_CAPABILITIES

    def __init__(
        self, base_url: str | None = None, *, max_threads: int = 16, timeout_s: float = 60.0
    ) -> None:
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._max_threads = max_threads
        self._pool = concurrent.futures.ThreadPoolExecutor(max_threads, thread_name_prefix="docker-runtime")
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._open_streams = 0

    # --- plumbing ------------------------------------------------------------------------
    @property
    def open_streams(self) -> int:
        """How many log/event streams are open (each holds one thread)."""
        return self._open_streams

    def _api(self) -> API:
        """The SDK's low-level client, created on first use (creating it already talks to the engine)."""
        with self._client_lock:
            if self._client is None:
                kwargs: dict[str, Any] = {"timeout": int(self._timeout_s), "max_pool_size": self._max_threads}
                try:
                    if self._base_url is None:
                        self._client = docker.from_env(**kwargs)
                    else:
                        self._client = docker.DockerClient(base_url=self._base_url, **kwargs)
                except Exception as exc:  # DockerException, ConnectionError, a missing socket ...
                    where = self._base_url or os.environ.get("DOCKER_HOST") or "the default socket"
                    raise RuntimeUnavailable(
                        f"cannot reach the Docker engine at {where}: {exc}; {DOCKER_HINT}"
                    ) from exc
            return self._client.api

    async def _call(self, fn: Callable[..., T], *args: Any, kind: str = "container", subject: str = "") -> T:
        def run() -> T:
            return fn(self._api(), *args)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, run)
        except Exception as exc:
            translated = translate_error(exc, kind, subject)
            if translated is exc:
                raise
            raise translated from exc

    async def close(self) -> None:
        """Release the thread pool and the engine connection."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- lifecycle -------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._call(lambda api: api.ping(), kind="engine")

    async def create(self, spec: ContainerSpec) -> str:
        if spec.network in _FORBIDDEN_NETWORKS or (spec.network or "").startswith("container:"):
            raise InvalidInput(
                f"network {spec.network!r} is not allowed for worker containers", field="network"
            )
        if spec.volume:
            await self.ensure_volume(spec.volume, volume_labels(spec.labels))

        def create(api: API) -> str:
            mem = spec.memory_mb * 1024 * 1024 if spec.memory_mb else None
            host_config = api.create_host_config(
                mem_limit=mem,
                memswap_limit=mem,  # no swap on top of the limit, as on RunPod
                nano_cpus=spec.nano_cpus,
                mounts=_mounts(spec),
                shm_size=f"{spec.shm_mb}m" if spec.shm_mb else None,
                network_mode=spec.network,
                extra_hosts=dict(spec.extra_hosts) or None,
                device_requests=_device_requests(spec.gpu_device_ids),
                privileged=False,
                init=spec.init,
            )
            created = api.create_container(
                image=spec.image,
                command=spec.command,
                name=spec.name,
                environment=dict(spec.env),
                labels=dict(spec.labels),
                host_config=host_config,
                detach=True,
            )
            return str(created["Id"])

        try:
            return await self._call(create, kind="create", subject=spec.name)
        except ImageNotFound as exc:
            raise image_not_found(spec.image) from exc

    async def start(self, container_id: str) -> None:
        await self._call(lambda api: api.start(container_id), subject=container_id)

    async def stop(self, container_id: str, timeout_s: float = 10.0) -> None:
        def stop(api: API) -> None:
            with _tolerate(404):
                api.stop(container_id, timeout=math.ceil(timeout_s))

        await self._call(stop, subject=container_id)

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        def kill(api: API) -> None:
            with _tolerate(404, 409, explanation="is not running"):
                api.kill(container_id, signal=signal)

        await self._call(kill, subject=container_id)

    async def remove(self, container_id: str, force: bool = True) -> None:
        def remove(api: API) -> None:
            with _tolerate(404, 409, explanation="already in progress"):
                api.remove_container(container_id, force=force)

        await self._call(remove, subject=container_id)

    async def pause(self, container_id: str) -> None:
        await self._call(lambda api: api.pause(container_id), subject=container_id)

    async def unpause(self, container_id: str) -> None:
        await self._call(lambda api: api.unpause(container_id), subject=container_id)

    # --- observation -----------------------------------------------------------------------
    async def inspect(self, container_id: str) -> ContainerInfo:
        return container_info(await self.inspect_raw(container_id))

    async def inspect_raw(self, container_id: str) -> dict[str, Any]:
        """The engine's own inspect document (HostConfig, Mounts, ...); for diagnostics and tests."""
        return await self._call(lambda api: api.inspect_container(container_id), subject=container_id)

    async def list(self, labels: dict[str, str]) -> list[ContainerInfo]:
        def list_all(api: API) -> list[ContainerInfo]:
            found = []
            for summary in api.containers(all=True, filters={"label": label_filter(labels)}):
                try:
                    found.append(container_info(api.inspect_container(summary["Id"])))
                except docker.errors.NotFound:
                    continue  # removed between the listing and the inspect
            return found

        return await self._call(list_all, subject=",".join(label_filter(labels)))

    async def logs(self, container_id: str, tail: int = 100) -> str:
        def read(api: API) -> str:
            raw = api.logs(container_id, stdout=True, stderr=True, tail=tail if tail >= 0 else "all")
            return bytes(raw).decode("utf-8", "replace")

        return await self._call(read, subject=container_id)

    def follow_logs(self, container_id: str, timestamps: bool = False) -> AsyncIterator[str]:
        splitter = LineSplitter()
        return self._bridge(
            lambda api: api.logs(
                container_id, stream=True, follow=True, stdout=True, stderr=True, timestamps=timestamps
            ),
            splitter.feed,
            splitter.flush,
            subject=container_id,
        )

    async def stats(self, container_id: str) -> dict[str, float]:
        # Not one-shot: the engine samples twice (about a second) so that CPU percent means something.
        raw = await self._call(lambda api: api.stats(container_id, stream=False), subject=container_id)
        return compute_stats(raw)

    def events(self, labels: dict[str, str]) -> AsyncIterator[ContainerEvent]:
        # From the call on (the engine replays from ``since``), so nothing between call and iteration is
        # lost; a second earlier, so that an engine clock a little behind ours loses nothing either.
        since_ns = time.time_ns() - 1_000_000_000
        since = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
        filters = {"type": ["container"], "label": label_filter(labels)}

        def convert(raw: dict[str, Any]) -> list[ContainerEvent]:
            event = to_event(raw)
            ok = event is not None and all(event.labels.get(k) == v for k, v in labels.items())
            return [event] if ok and event is not None else []

        return self._bridge(
            lambda api: api.events(decode=True, filters=filters, since=since),
            convert,
            list,
            kind="events",
            subject=",".join(label_filter(labels)),
        )

    async def _bridge(
        self,
        open_stream: Callable[[API], Any],
        convert: Callable[[Any], Iterable[T]],
        flush: Callable[[], Iterable[T]],
        kind: str = "container",
        subject: str = "",
    ) -> AsyncIterator[T]:
        """Iterate a blocking SDK stream in its own thread (``_stream.ThreadStream``); close the stream
        when the consumer stops; the SDK's errors are translated like every other call's."""
        stream: ThreadStream[T] = ThreadStream(
            lambda: open_stream(self._api()), convert, flush, name=f"docker-{kind}-stream"
        )
        self._open_streams += 1
        try:
            async for item in stream:
                yield item
        except Exception as exc:
            translated = translate_error(exc, kind, subject)
            raise translated from (exc if translated is not exc else None)
        finally:
            stream.close()
            self._open_streams -= 1

    # --- images, networks, volumes, GPUs ---------------------------------------------------
    async def image_exists(self, image: str) -> bool:
        try:
            await self._call(lambda api: api.inspect_image(image), kind="image", subject=image)
        except ImageNotFound:
            return False
        return True

    async def image_info(self, image: str) -> LocalImage | None:
        try:
            doc = await self._call(lambda api: api.inspect_image(image), kind="image", subject=image)
        except ImageNotFound:
            return None
        return LocalImage(id=str(doc.get("Id") or ""), repo_digests=tuple(doc.get("RepoDigests") or ()))

    def pull(self, image: str, auth: dict[str, str] | None) -> AsyncIterator[dict[str, Any]]:
        ref = parse_image(image)
        # auth_config None: the SDK sends the host's credentials for that registry (~/.docker/config.json,
        # credential helpers), as `docker pull` does
        return self._bridge(
            lambda api: api.pull(ref.repository, ref.pull_tag, stream=True, decode=True, auth_config=auth),
            lambda doc: [doc] if isinstance(doc, dict) else [],
            list,
            kind="pull",
            subject=image,
        )

    async def ensure_network(self, name: str, labels: dict[str, str]) -> str:
        if name in _FORBIDDEN_NETWORKS:
            raise InvalidInput(f"network {name!r} is not allowed for worker containers", field="network")

        def ensure(api: API) -> dict[str, Any]:
            try:
                return dict(api.inspect_network(name))
            except docker.errors.NotFound:
                pass
            try:
                api.create_network(name, driver="bridge", labels=dict(labels), check_duplicate=True)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: someone else created it meanwhile
                    raise
            return dict(api.inspect_network(name))

        network = await self._call(ensure, kind="network", subject=name)
        if network.get("Driver") != "bridge":
            raise RuntimeFailure(
                f"network {name!r} exists with driver {network.get('Driver')!r}; a bridge network is needed",
                reason="wrong network driver",
            )
        for config in (network.get("IPAM") or {}).get("Config") or []:
            if config.get("Gateway"):
                return str(config["Gateway"]).split("/")[0]
            if config.get("Subnet"):
                return str(next(ipaddress.ip_network(config["Subnet"], strict=False).hosts()))
        raise RuntimeFailure(f"network {name!r} has no gateway address", reason="no IPAM config")

    async def remove_network(self, name: str) -> None:
        def remove(api: API) -> None:
            with _tolerate(404):
                api.remove_network(name)

        await self._call(remove, kind="network", subject=name)

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        def ensure(api: API) -> None:
            try:
                api.inspect_volume(name)
            except docker.errors.NotFound:
                api.create_volume(name, driver="local", labels=dict(labels))

        await self._call(ensure, kind="volume", subject=name)

    async def gpu_runtime_available(self) -> bool:
        info = await self._call(lambda api: api.info(), kind="engine")
        if "nvidia" in (info.get("Runtimes") or {}):
            return True
        return any(has_cdi_specs(path) for path in (info.get("CDISpecDirs") or _CDI_DIRS))


def _mounts(spec: ContainerSpec) -> list[Mount] | None:
    """The named volume at /runpod-volume, then host folders (nested targets after their parents)."""
    mounts = [Mount(target=VOLUME_MOUNT, source=spec.volume, type="volume")] if spec.volume else []
    for host in sorted(spec.host_mounts, key=lambda m: m.target.count("/")):
        mounts.append(Mount(target=host.target, source=host.source, type="bind", read_only=host.read_only))
    return mounts or None


def _device_requests(device_ids: tuple[str, ...]) -> list[DeviceRequest] | None:
    if not device_ids:
        return None
    return [DeviceRequest(driver="nvidia", device_ids=list(device_ids), capabilities=[["gpu"]])]


@contextlib.contextmanager
def _tolerate(*statuses: int, explanation: str = "") -> Iterator[None]:
    """Swallow the engine's 404 (and the other ``statuses`` when the explanation contains ``explanation``)."""
    try:
        yield
    except docker.errors.APIError as exc:
        if exc.status_code == 404:
            return
        if exc.status_code in statuses and explanation and explanation in _explain(exc):
            return
        raise
