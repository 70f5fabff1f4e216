"""kube_watch.PodWatch and kube_logs.follow_pod_log without an API server (the real one is in
test_kubernetes_runtime.py): a 410 Gone, as an HTTP answer or as an ERROR event, makes the watch relist,
which the v1.20 API server on loopback never did in the suite (it compacts too rarely)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

from emulator.runtime.base import LABEL_ENDPOINT, ContainerEvent
from emulator.runtime.kube_cache import PodCache, Subscription
from emulator.runtime.kube_docs import MANAGED_BY
from emulator.runtime.kube_logs import follow_pod_log
from emulator.runtime.kube_watch import Gone, PodWatch, iter_lines


def _pod(name: str, version: int, phase: str = "Running") -> dict[str, Any]:
    state = {"running": {"startedAt": "2026-11-30T20:00:00Z"}} if phase == "Running" else {}
    return {
        "metadata": {
            "name": name,
            "resourceVersion": str(version),
            "labels": {LABEL_ENDPOINT: "ep", MANAGED_BY[0]: MANAGED_BY[1]},
        },
        "spec": {"nodeName": "node-0"},
        "status": {"phase": phase, "containerStatuses": [{"name": "worker", "state": state}]},
    }


class Body:
    """A urllib3-like response: ``stream()`` yields the chunks (split anywhere), ``close``/``release_conn``."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.closed = False

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        return None


def _events(*events: dict[str, Any]) -> Body:
    text = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    return Body(text[:7], text[7:])  # a chunk boundary inside the first line


class Server:
    """What the API server answers, script by script: lists, and watches (a Body, or an exception)."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[Body | Exception]) -> None:
        self.lists = lists
        self.watches = watches
        self.watched_from: list[str | None] = []

    def list_pods(self) -> dict[str, Any]:
        items = self.lists.pop(0)
        version = max((int(p["metadata"]["resourceVersion"]) for p in items), default=1)
        return {"metadata": {"resourceVersion": str(version)}, "items": items}

    def open_watch(self, version: str | None) -> Body:
        self.watched_from.append(version)
        answer = self.watches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _gone_event() -> dict[str, Any]:
    return {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}


def test_an_error_event_410_relists_and_vanished_pods_are_destroyed() -> None:
    cache = PodCache()
    server = Server(
        lists=[[_pod("a", 5), _pod("b", 6)], [_pod("b", 20), _pod("c", 21)]],
        watches=[_events({"type": "MODIFIED", "object": _pod("a", 7)}, _gone_event())],
    )
    watch = PodWatch(cache, server.list_pods, server.open_watch)
    watch.relist()
    assert watch.relists == 1 and watch.version == "6" and sorted(cache.pods) == ["a", "b"]
    try:
        watch.watch_once()
    except Gone as gone:
        assert "too old" in str(gone)
    else:
        raise AssertionError("an ERROR event with code 410 must raise Gone")
    assert watch.version == "7"  # the MODIFIED before the error was applied
    watch.relist()  # what the thread does after Gone
    assert watch.relists == 2 and watch.version == "21"
    assert sorted(cache.pods) == ["b", "c"]  # a vanished while we were not watching
    assert cache.known("a") is None and cache.pods["b"]["metadata"]["resourceVersion"] == "20"


async def test_the_thread_relists_after_an_http_410_and_goes_on_watching() -> None:
    cache = PodCache()
    seen: list[ContainerEvent] = []
    done = threading.Event()
    server = Server(
        lists=[[_pod("a", 5)], [_pod("b", 30, phase="Pending")]],
        watches=[
            Gone("410: too old resource version"),  # the HTTP answer, as kubernetes.py raises it
            _events({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "31"}}}),
            _events({"type": "MODIFIED", "object": _pod("b", 32)}),
        ],
    )

    def open_watch(version: str | None) -> Body:
        if not server.watches:
            done.set()
            raise ConnectionError("no more scripted answers")
        return server.open_watch(version)

    watch = PodWatch(cache, server.list_pods, open_watch)
    subscription = Subscription(cache, {LABEL_ENDPOINT: "ep"})
    cache.subscribers.append(subscription)
    watch.sync()
    assert await asyncio.to_thread(done.wait, 10)
    watch.close(wait_s=5)
    assert watch.relists == 2
    assert server.watched_from == ["5", "30", "31"]  # resumed after the relist, then from the bookmark
    assert cache.known("a") is None and cache.known("b") is not None
    assert (cache.known("b") or _never()).status == "running"
    while not subscription.queue.empty():
        item = subscription.queue.get_nowait()
        assert isinstance(item, ContainerEvent)
        seen.append(item)
    assert ("a", "destroy") in [(e.container_id, e.action) for e in seen]
    assert ("b", "start") in [(e.container_id, e.action) for e in seen]
    assert isinstance(watch.error, ConnectionError)


def _never() -> Any:
    raise AssertionError("missing")


def test_lines_split_across_chunks_and_empty_lines_kept() -> None:
    body = Body(b"one\r\ntw", b"o\n\nthr", b"ee")
    assert list(iter_lines(body)) == ["one", "two", "", "three"]


async def test_the_log_follower_waits_for_the_start_then_stops_by_interrupting() -> None:
    started = threading.Event()
    opened: list[Body] = []
    release = threading.Event()

    class Endless(Body):
        def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
            yield b"hello\nworld\n"
            release.wait(10)  # blocked on the socket until interrupted

        @property
        def connection(self) -> Any:
            class Sock:
                def shutdown(self, how: int) -> None:
                    release.set()

            class Conn:
                sock = Sock()

            return Conn()

    def open_log() -> Body:
        assert started.is_set(), "opened before the container started"
        opened.append(Endless())
        return opened[-1]

    lines = []
    stream = follow_pod_log(open_log, started.is_set)
    asyncio.get_running_loop().call_later(0.1, started.set)
    async for line in stream:
        lines.append(line)
        if len(lines) == 2:
            break
    assert lines == ["hello", "world"]
    assert await asyncio.to_thread(release.wait, 5)  # the interrupt woke the reader
    for _ in range(100):
        if opened[0].closed:
            break
        await asyncio.sleep(0.02)
    assert opened[0].closed  # and the reading thread closed the response


def test_the_runtime_turns_an_http_410_into_gone_for_the_watch() -> None:
    from kubernetes.client.exceptions import ApiException

    from emulator.runtime.kubernetes import KubernetesRuntime

    class Core:
        def list_namespaced_pod(self, namespace: str, **options: Any) -> Any:
            assert options["watch"] is True and options["resource_version"] == "41"
            error = ApiException(status=410, reason="Gone")
            error.body = json.dumps({"message": "too old resource version: 41 (97)"})
            raise error

    runtime = KubernetesRuntime(namespace="ns")
    runtime._core = Core  # type: ignore[method-assign]
    try:
        runtime._open_watch("41")
    except Gone as gone:
        assert str(gone) == "too old resource version: 41 (97)"
    else:
        raise AssertionError("HTTP 410 must raise Gone")
    finally:
        runtime._pool.shutdown(wait=False)


async def test_image_and_gpu_checks_list_the_nodes_once_per_ttl() -> None:
    from emulator.runtime.kube_docs import valid_pod_name
    from emulator.runtime.kubernetes import KubernetesRuntime

    calls: list[str] = []
    node = {"status": {"allocatable": {"nvidia.com/gpu": "8"}, "images": [{"names": ["img:1"]}]}}

    class Response:
        data = json.dumps({"items": [node]}).encode()

    class Core:
        def list_node(self, **options: Any) -> Response:
            calls.append("list_node")
            return Response()

    runtime = KubernetesRuntime(namespace="ns")
    runtime._core = Core  # type: ignore[method-assign]
    try:
        assert await runtime.image_exists("img:1") and not await runtime.image_exists("img:2")
        assert await runtime.gpu_runtime_available()
        assert calls == ["list_node"]  # a scale-out of 1,000 workers does not list the nodes 1,000 times
    finally:
        runtime._pool.shutdown(wait=False)
    assert valid_pod_name("se-ep-w1-abcde") and not valid_pod_name("Se_ep") and not valid_pod_name("")
