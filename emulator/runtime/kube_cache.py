"""The Kubernetes runtime's watch-fed cache of Pods (no client import; ``runtime/kubernetes.py`` feeds it).

One cache per runtime: the watch thread and the write paths ``apply`` Pod documents to it (older
resourceVersions are ignored), ``list``/``inspect`` read it, and every change is turned into Docker-style
events (``kube_docs.events_between``) for the ``events`` subscribers. It also holds what the cluster does
not: manifests created but not started, and the last state of Pods ``stop`` deleted (kept until ``remove``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from emulator.runtime.base import ContainerEvent, ContainerInfo
from emulator.runtime.kube_docs import container_info, events_between


class Subscription:
    """One ``events`` consumer: registered at creation, so nothing after ``events()`` is missed."""

    def __init__(self, owner: PodCache, labels: dict[str, str]) -> None:
        self.owner = owner
        self.labels = labels
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[ContainerEvent | BaseException] = asyncio.Queue()
        self.closed = False

    def offer(self, event: ContainerEvent) -> None:
        if all(event.labels.get(k) == v for k, v in self.labels.items()):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ContainerEvent:
        if self.closed:
            raise StopAsyncIteration
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner.unsubscribe(self)


class PodCache:
    """Pods by name, their ContainerInfo, and the subscribers to their events; guarded by ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pods: dict[str, dict[str, Any]] = {}  # name -> Pod document, as the watch last saw it
        self.infos: dict[str, ContainerInfo] = {}
        self.unstarted: dict[str, dict[str, Any]] = {}  # created, not started: name -> manifest
        self.ended: dict[str, ContainerInfo] = {}  # stopped and deleted, kept until remove
        self.stopping: set[str] = set()
        self.removed: set[str] = set()  # removed by us: late watch events must not bring them back
        self.subscribers: list[Subscription] = []
        self._nodes: tuple[float, list[dict[str, Any]]] = (float("-inf"), [])  # (listed at, Node documents)

    def recent_nodes(self, now: float, ttl_s: float) -> list[dict[str, Any]] | None:
        """The Node documents kept less than ``ttl_s`` ago (monotonic seconds), else None."""
        with self.lock:
            listed_at, nodes = self._nodes
        return nodes if now - listed_at < ttl_s else None

    def keep_nodes(self, nodes: list[dict[str, Any]], now: float) -> None:
        with self.lock:
            self._nodes = (now, nodes)

    def forget(self, name: str, now: float) -> None:
        """``remove`` deleted the Pod: out of the cache now (``destroy`` event), whatever the watch says later."""
        with self.lock:
            self.removed.add(name)
            self.pods.pop(name, None)
            before = self.infos.pop(name, None)
            events = events_between(before, None, now) if before is not None else []
            for event in events:
                for subscriber in list(self.subscribers):
                    subscriber.offer(event)

    def matching(self, labels: dict[str, str]) -> list[ContainerInfo]:
        """Every known Pod (created, live, or stopped) carrying all of ``labels``, by name."""
        with self.lock:
            found = list(self.infos.values()) + list(self.ended.values())
            found += [container_info(manifest) for manifest in self.unstarted.values()]
        return sorted(
            (i for i in found if all(i.labels.get(k) == v for k, v in labels.items())), key=lambda i: i.id
        )

    def apply(self, kind: str | None, pod: dict[str, Any], now: float) -> None:
        """Update the cache with one Pod document (ignoring one older than what we hold) and tell subscribers."""
        with self.lock:
            self._apply(kind, pod, now)

    def _apply(self, kind: str | None, pod: dict[str, Any], now: float) -> None:
        name = pod["metadata"]["name"]
        held = self.pods.get(name)
        if kind != "DELETED" and (
            name in self.removed or (held is not None and version_of(held) > version_of(pod))
        ):
            return
        if kind == "DELETED":
            self.removed.discard(name)
        before = self.infos.get(name)
        after: ContainerInfo | None
        if kind == "DELETED":
            self.pods.pop(name, None)
            self.infos.pop(name, None)
            after = None
            if name in self.stopping and before is not None:
                self.stopping.discard(name)
                self.ended[name] = ended_info(before, now)
                after = self.ended[name]
        else:
            self.pods[name] = pod
            after = self.infos[name] = container_info(pod)
        for event in events_between(before, after, now):
            for subscriber in list(self.subscribers):
                subscriber.offer(event)

    def unsubscribe(self, subscription: Subscription) -> None:
        with self.lock:
            if subscription in self.subscribers:
                self.subscribers.remove(subscription)

    def known(self, container_id: str) -> ContainerInfo | None:
        with self.lock:
            if container_id in self.unstarted:
                return container_info(self.unstarted[container_id])
            return self.infos.get(container_id) or self.ended.get(container_id)


def version_of(pod: dict[str, Any]) -> int:
    try:
        return int((pod.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def ended_info(last: ContainerInfo, now: float) -> ContainerInfo:
    """What a stopped (deleted) Pod is listed as until ``remove``: exited, with its last exit code."""
    if last.status == "exited":
        return last
    return ContainerInfo(
        id=last.id,
        name=last.name,
        labels=last.labels,
        status="exited",
        exit_code=last.exit_code,
        oom_killed=last.oom_killed,
        started_at=last.started_at,
        finished_at=now,
        error=last.error or "deleted before its container reported an exit",
    )
