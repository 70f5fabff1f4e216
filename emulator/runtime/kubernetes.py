"""The Kubernetes adapter: the only module in the project that imports ``kubernetes`` (the official client).

One bare Pod per worker (``restartPolicy: Never``, see ``kube_docs.pod_manifest``); the supervisor keeps
every RunPod decision, the cluster places Pods and counts GPUs. What differs from Docker:

- ``create`` checks the manifest with a server-side dry run and keeps it in memory (a "created, not
  started" Pod does not exist on a v1.20 cluster); ``start`` creates the Pod. The name (= the id) is
  chosen client-side, so it does not change between the two.
- ``stop`` deletes with the grace period; the Pod's last state is kept (``exited``, listed) until
  ``remove``, as Docker keeps a stopped container. ``kill`` sets ``activeDeadlineSeconds: 1``, so the
  Pod fails (DeadlineExceeded) without being deleted and its exit code and logs stay readable.
- ``list``/``inspect``/``events`` come from ONE watch-fed cache (``kube_cache``, fed by ``kube_watch``):
  list once, then watch from that resourceVersion, relist on 410 Gone. A supervisor tick costs nothing
  on the API server.
- No pause (no cgroup freeze through the API); no network of our own (``ensure_network`` answers None's
  stand-in: the worker URL must be given, ``EMULATOR_WORKER_URL``); volumes are PersistentVolumeClaims.

Blocking calls run in a bounded thread pool; the watch and each log stream own a thread. Reference:
Kubernetes API reference: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import json
import math
import secrets
import string
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import kubernetes.client
import kubernetes.config
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from emulator.errors import ContainerNotFound, EmulatorError, InvalidInput, RuntimeFailure, RuntimeUnavailable
from emulator.runtime.base import (
    CLUSTER_CAPABILITIES,
    Capabilities,
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    LocalImage,
)
from emulator.runtime.kube_cache import PodCache, Subscription
from emulator.runtime.kube_docs import (
    CONTAINER,
    MANAGED_BY,
    container_info,
    image_on_nodes,
    nodes_offer_gpus,
    pod_labels,
    pod_manifest,
    pod_name,
    valid_pod_name,
    volume_claim,
)
from emulator.runtime.kube_logs import follow_pod_log, wait_started
from emulator.runtime.kube_watch import Gone, PodWatch

T = TypeVar("T")
_config: Any = kubernetes.config  # the client's loaders are untyped
KUBE_HINT = "is the API server reachable? check `kubectl get --raw /version` with the same kube config"
_SUFFIX = string.ascii_lowercase + string.digits
_MANAGED = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
NODES_TTL_S = 5.0  # image and GPU checks read the nodes listed within this
CONNECTION_POOL_SIZE = 64  # idle connections kept (default 5 per CPU): every log follow holds one


def translate_error(exc: BaseException, subject: str = "") -> BaseException:
    """The client's exceptions as the project's errors: 404 -> ContainerNotFound, others RuntimeFailure."""
    if isinstance(exc, EmulatorError):
        return exc
    if isinstance(exc, ApiException):
        reason = _api_message(exc)
        if exc.status == 404:
            return ContainerNotFound(f"pod {subject} not found", container_id=subject)
        if exc.status in (0, None) or (exc.status >= 500 and exc.status != 500):
            return RuntimeUnavailable(f"the Kubernetes API server did not answer ({reason}); {KUBE_HINT}")
        return RuntimeFailure(
            f"Kubernetes refused (pod {subject}): {reason}", reason=reason, status=exc.status
        )
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | OSError):
        return RuntimeUnavailable(f"cannot reach the Kubernetes API server ({exc}); {KUBE_HINT}")
    if isinstance(exc, kubernetes.config.ConfigException):
        return RuntimeUnavailable(f"no usable Kubernetes credentials: {exc}; {KUBE_HINT}")
    return exc


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.body or exc.reason)


class KubernetesRuntime:
    """The Runtime protocol on a Kubernetes cluster, in one namespace.

    Credentials: ``kubeconfig`` (a file; None: ``$KUBECONFIG`` or ``~/.kube/config``) and ``context``, or
    ``in_cluster=True`` (the Pod's service account). ``grace_s``: terminationGracePeriodSeconds of every
    Pod. ``volume_size_gb``: the size asked for a network volume's PersistentVolumeClaim.
    Errors: RuntimeUnavailable (API server unreachable, no credentials), RuntimeFailure (a refusal),
    ContainerNotFound (404).
    """

    capabilities: Capabilities = CLUSTER_CAPABILITIES  # no pause, no standby; the scheduler places Pods

    def __init__(
        self,
        *,
        namespace: str = "default",
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        grace_s: int = 10,
        volume_size_gb: int = 10,
        max_threads: int = 8,
        timeout_s: float = 30.0,
        watch_timeout_s: int = 60,
    ) -> None:
        self.namespace = namespace
        self._kubeconfig = kubeconfig
        self._context = context
        self._in_cluster = in_cluster
        self._grace_s = grace_s
        self._volume_size_gb = volume_size_gb
        self._timeout_s = timeout_s
        self._watch_timeout_s = watch_timeout_s  # each watch request ends after this; the next resumes
        self._pool = concurrent.futures.ThreadPoolExecutor(max_threads, thread_name_prefix="kube-runtime")
        self._cache = PodCache()
        self._lock = self._cache.lock
        self._client: Any = None
        self.watch = PodWatch(self._cache, self._list_pods, self._open_watch)
        self._sync = self.watch.sync
        self._log_streams = 0

    # --- plumbing --------------------------------------------------------------------------
    @property
    def open_streams(self) -> int:
        """Open event subscriptions plus log streams."""
        return len(self._cache.subscribers) + self._log_streams

    def _core(self) -> Any:
        with self._lock:
            if self._client is None:
                configuration = kubernetes.client.Configuration()
                if self._in_cluster:
                    _config.load_incluster_config(client_configuration=configuration)
                else:
                    _config.load_kube_config(
                        config_file=self._kubeconfig,
                        context=self._context,
                        client_configuration=configuration,
                    )
                configuration.retries = 0
                configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
                self._client = kubernetes.client.ApiClient(configuration)
            return kubernetes.client.CoreV1Api(self._client)

    async def _call(self, fn: Callable[[], T], subject: str = "") -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        except Exception as exc:
            translated = translate_error(exc, subject)
            if translated is exc:
                raise
            raise translated from exc

    def _raw(self, response: Any) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(response.data)
        return data

    async def close(self) -> None:
        """Stop the watch, release the thread pool and the API connection."""
        self.watch.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- what the watch (kube_watch.PodWatch) calls, in its thread ---------------------------
    def _list_pods(self) -> dict[str, Any]:
        return self._raw(
            self._core().list_namespaced_pod(
                self.namespace,
                label_selector=_MANAGED,
                _preload_content=False,
                _request_timeout=self._timeout_s,
            )
        )

    def _open_watch(self, resource_version: str | None) -> Any:
        try:
            return self._core().list_namespaced_pod(
                self.namespace,
                label_selector=_MANAGED,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout_s,
                _preload_content=False,
                _request_timeout=(self._timeout_s, self._watch_timeout_s + 30),
            )
        except ApiException as exc:
            if exc.status == 410:  # Gone as an HTTP answer
                raise Gone(_api_message(exc)) from exc
            raise

    # --- lifecycle -------------------------------------------------------------------------
    async def ping(self) -> None:
        def ping() -> None:
            self._core()
            kubernetes.client.VersionApi(self._client).get_code(_request_timeout=self._timeout_s)

        await self._call(ping)

    async def create(self, spec: ContainerSpec) -> str:
        if spec.network in ("host", "none") or (spec.network or "").startswith("container:"):
            raise InvalidInput(f"network {spec.network!r} is not allowed for workers", field="network")
        name = pod_name(spec.name, "".join(secrets.choice(_SUFFIX) for _ in range(5)))
        manifest = pod_manifest(spec, name, self._grace_s)

        def dry_run() -> None:
            self._core().create_namespaced_pod(
                self.namespace, manifest, dry_run="All", _preload_content=False
            )

        if spec.volume:
            await self.ensure_volume(spec.volume, {})
        await self._call(dry_run, name)
        with self._lock:
            self._cache.unstarted[name] = manifest
        return name

    async def start(self, container_id: str) -> None:
        with self._lock:
            manifest = self._cache.unstarted.get(container_id)
        if manifest is None:
            if self._cache.known(container_id) is None:
                await self.inspect(container_id)  # ContainerNotFound when it is gone
            return  # already created on the cluster: starting it again is harmless

        def create() -> None:
            self._sync()
            try:
                response = self._core().create_namespaced_pod(
                    self.namespace, manifest, _preload_content=False
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
            else:
                with self._lock:
                    self._cache.apply("ADDED", self._raw(response), time.time())
            with self._lock:
                self._cache.unstarted.pop(container_id, None)

        await self._call(create, container_id)

    async def stop(self, container_id: str, timeout_s: float = 10.0) -> None:
        """Delete with ``ceil(timeout_s)`` of grace (SIGTERM, then SIGKILL by the kubelet); kept as exited."""
        await self._delete(container_id, max(0, math.ceil(timeout_s)), keep=True)

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        """End the Pod through ``activeDeadlineSeconds: 1`` (Failed, DeadlineExceeded); exit code and logs stay.

        The kubelet stops the container with the Pod's grace period; ``signal`` cannot be chosen.
        """
        with self._lock:
            if container_id in self._cache.unstarted:
                return

        def patch() -> None:
            try:
                response = self._core().patch_namespaced_pod(
                    container_id,
                    self.namespace,
                    {"spec": {"activeDeadlineSeconds": 1}},
                    _preload_content=False,
                )
            except ApiException as exc:
                if exc.status in (404, 422):  # gone, or already past a shorter deadline
                    return
                raise
            with self._lock:
                self._cache.apply("MODIFIED", self._raw(response), time.time())

        await self._call(patch, container_id)

    async def remove(self, container_id: str, force: bool = True) -> None:
        info = self._cache.known(container_id)
        if info is not None and info.status == "running" and not force:
            raise RuntimeFailure(
                f"pod {container_id} is running: stop it first or remove with force",
                reason="running",
                status=409,
            )
        with self._lock:
            self._cache.unstarted.pop(container_id, None)
            self._cache.ended.pop(container_id, None)
        await self._delete(container_id, 0, keep=False)

    async def _delete(self, container_id: str, grace_s: int, keep: bool) -> None:
        with self._lock:
            if container_id in self._cache.unstarted:
                return  # nothing runs yet: like stopping a created container

        def delete() -> None:
            with self._lock:
                if keep:
                    self._cache.stopping.add(container_id)
                else:
                    self._cache.stopping.discard(container_id)
            try:
                self._core().delete_namespaced_pod(
                    container_id, self.namespace, grace_period_seconds=grace_s, _preload_content=False
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                with self._lock:
                    self._cache.stopping.discard(container_id)
                    known = container_id in self._cache.pods
                if not known:
                    return  # gone already: the goal is reached
            if not keep:
                self._cache.forget(container_id, time.time())

        await self._call(delete, container_id)

    async def pause(self, container_id: str) -> None:
        await self.inspect(container_id)
        raise RuntimeFailure(
            "Kubernetes cannot pause a Pod (no FlashBoot here)", reason="unsupported", status=409
        )

    async def unpause(self, container_id: str) -> None:
        await self.pause(container_id)

    async def inspect(self, container_id: str) -> ContainerInfo:
        def read() -> ContainerInfo:
            self._sync()
            info = self._cache.known(container_id)
            if info is not None:
                return info
            # not in the cache yet (created elsewhere a moment ago): ask once
            response = self._core().read_namespaced_pod(container_id, self.namespace, _preload_content=False)
            pod = self._raw(response)
            if (pod.get("metadata") or {}).get("labels", {}).get(MANAGED_BY[0]) != MANAGED_BY[1]:
                raise ContainerNotFound(f"pod {container_id} not found", container_id=container_id)
            return container_info(pod)

        if not valid_pod_name(container_id):
            raise ContainerNotFound(f"pod {container_id} not found", container_id=container_id)
        return await self._call(read, container_id)

    async def inspect_raw(self, container_id: str) -> dict[str, Any]:
        """The Pod document (or the manifest of a created, not started Pod)."""
        await self.inspect(container_id)
        with self._lock:
            return dict(self._cache.unstarted.get(container_id) or self._cache.pods.get(container_id) or {})

    async def list(self, labels: dict[str, str]) -> list[ContainerInfo]:
        def read() -> list[ContainerInfo]:
            self._sync()
            return self._cache.matching(labels)

        return await self._call(read)

    async def logs(self, container_id: str, tail: int = 100) -> str:
        info = await self.inspect(container_id)
        if info.status == "created" or container_id in self._cache.ended:
            return ""

        def read() -> str:
            response = self._core().read_namespaced_pod_log(
                container_id, self.namespace, container=CONTAINER, tail_lines=tail, _preload_content=False
            )
            return str(response.data.decode("utf-8", "replace"))

        return await self._call(read, container_id)

    async def follow_logs(self, container_id: str, timestamps: bool = False) -> AsyncIterator[str]:
        """The container's lines through the API server (``pods/log?follow=true``; ``timestamps``: the
        kubelet's RFC 3339 prefix, as ``docker logs -t``), once the container has started."""
        await self.inspect(container_id)

        def started() -> bool:
            info = self._cache.known(container_id)
            return info is None or info.status != "created"

        def open_log() -> Any:
            return self._core().read_namespaced_pod_log(
                container_id,
                self.namespace,
                container=CONTAINER,
                follow=True,
                timestamps=timestamps,
                _preload_content=False,
            )

        await wait_started(started)  # a queued Pod may wait long: no thread for it until it starts
        stream = follow_pod_log(open_log, started)
        self._log_streams += 1
        try:
            async for line in stream:
                yield line
        except Exception as exc:
            translated = translate_error(exc, container_id)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            stream.close()
            self._log_streams -= 1

    async def stats(self, container_id: str) -> dict[str, float]:
        """Not read on Kubernetes (that needs the metrics API): RuntimeFailure after the existence check."""
        await self.inspect(container_id)
        raise RuntimeFailure(
            "container stats need the Kubernetes metrics API", reason="unsupported", status=501
        )

    def events(self, labels: dict[str, str]) -> AsyncIterator[ContainerEvent]:
        subscription = Subscription(self._cache, dict(labels))
        with self._lock:
            self._cache.subscribers.append(subscription)

        def check() -> None:
            try:
                self._sync()
            except Exception as exc:
                translated = translate_error(exc)
                subscription.loop.call_soon_threadsafe(subscription.queue.put_nowait, translated)

        self._pool.submit(check)
        return subscription

    # --- images, networks, volumes, GPUs -----------------------------------------------------
    def _nodes(self) -> builtins.list[dict[str, Any]]:
        """The Node documents, listed at most once per ``NODES_TTL_S`` (each start checks its image)."""
        nodes = self._cache.recent_nodes(time.monotonic(), NODES_TTL_S)
        if nodes is None:
            nodes = self._raw(self._core().list_node(_preload_content=False)).get("items") or []
            self._cache.keep_nodes(nodes, time.monotonic())
        return nodes

    async def image_exists(self, image: str) -> bool:
        return await self.image_info(image) is not None

    async def image_info(self, image: str) -> LocalImage | None:
        """The image as some node reports it in ``status.images`` (best effort: nodes cap that list)."""

        def find() -> LocalImage | None:
            return image_on_nodes(self._nodes(), image)

        return await self._call(find)

    async def pull(self, image: str, auth: dict[str, str] | None) -> AsyncIterator[dict[str, Any]]:
        """Nodes pull when a Pod starts (``imagePullPolicy: IfNotPresent``): one document says so."""
        yield {"status": f"{image}: pulled by the node that runs each Pod"}

    async def ensure_network(self, name: str, labels: dict[str, str]) -> str:
        """Pods use the cluster's network: nothing to create; the worker URL must be configured."""
        return "0.0.0.0"

    async def remove_network(self, name: str) -> None:
        return None

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """A ReadWriteMany PersistentVolumeClaim ``name`` (the cluster's default storage class)."""
        claim = volume_claim(name, self._volume_size_gb)

        def ensure() -> None:
            try:
                self._core().create_namespaced_persistent_volume_claim(
                    self.namespace, claim, _preload_content=False
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise

        await self._call(ensure, name)

    async def gpu_runtime_available(self) -> bool:
        """Whether any node offers ``nvidia.com/gpu`` (the NVIDIA device plugin runs there)."""

        def any_gpu() -> bool:
            return nodes_offer_gpus(self._nodes())

        return await self._call(any_gpu)


__all__ = ["KubernetesRuntime", "pod_labels", "translate_error"]
