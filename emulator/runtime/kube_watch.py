"""The Kubernetes runtime's watch thread: list once, then watch from that resourceVersion, relist on 410 Gone.

No client import: ``runtime/kubernetes.py`` hands in two calls, ``list_pods()`` (the raw ``PodList``
document) and ``open_watch(resource_version)`` (an HTTP response whose body is the watch's JSON lines;
it raises ``Gone`` when the API server answers 410). Every event is applied to the ``PodCache``; a
``BOOKMARK`` only moves the resourceVersion on. When the version we resume from has been compacted away
the API server says so with HTTP 410 or an ``ERROR`` event of code 410 ("Efficient detection of changes",
https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes): the cache is
rebuilt from a fresh list, and Pods that vanished meanwhile get their ``destroy`` event.

The HTTP helpers (``iter_lines``, ``interrupt``, ``close_response``) serve the log follower too.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from emulator.runtime.kube_cache import PodCache

FIRST_RETRY_S = 0.2
MAX_RETRY_S = 5.0


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410, or an ERROR event with code 410): relist."""


def iter_lines(response: Any) -> Iterator[str]:
    """The body of ``response`` (a urllib3 response) as text lines, as they arrive (no ``\\n``; empty kept)."""
    buffer = bytearray()
    for chunk in response.stream(amt=None, decode_content=False):
        buffer.extend(chunk)
        while (end := buffer.find(b"\n")) != -1:
            line = bytes(buffer[:end]).rstrip(b"\r")
            del buffer[: end + 1]
            yield line.decode("utf-8", "replace")
    if buffer:
        yield bytes(buffer).decode("utf-8", "replace")


def interrupt(response: Any) -> None:
    """Wake a thread blocked reading ``response`` (shut its socket down); that thread then closes it.

    Closing the response from another thread would wait for the reader's lock.
    """
    connection = getattr(response, "connection", None) or getattr(response, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def close_response(response: Any) -> None:
    """Close ``response`` and give its connection back to the pool, ignoring any error."""
    with contextlib.suppress(Exception):
        response.close()
        response.release_conn()


class PodWatch:
    """Keeps ``cache`` in step with the API server from a thread of its own (``sync`` starts it).

    ``relists`` counts the full lists (1 + one per 410 Gone); ``version`` is the resourceVersion the
    next watch resumes from (None: relist first); ``error`` is the last error the watch met (it keeps
    retrying, 0.2 s doubling to 5 s, while ``list``/``inspect`` go on serving the cache).
    """

    def __init__(
        self,
        cache: PodCache,
        list_pods: Callable[[], dict[str, Any]],
        open_watch: Callable[[str | None], Any],
    ) -> None:
        self.cache = cache
        self._list_pods = list_pods
        self._open_watch = open_watch
        self._lock = cache.lock
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self.synced = False
        self.relists = 0
        self.version: str | None = None
        self.error: BaseException | None = None

    def relist(self) -> None:
        """Replace the cache's Pods by a fresh list: vanished ones deleted, the others updated."""
        raw = self._list_pods()
        now = time.time()
        fresh = {item["metadata"]["name"]: item for item in raw.get("items") or []}
        with self._lock:
            for name in set(self.cache.pods) - set(fresh):
                self.cache.apply("DELETED", self.cache.pods[name], now)
            for item in fresh.values():
                self.cache.apply("MODIFIED", item, now)
            self.version = (raw.get("metadata") or {}).get("resourceVersion")
            self.relists += 1
            self.synced = True

    def sync(self) -> None:
        """List once and start the watch thread (first use only)."""
        with self._lock:
            if self.synced and self._thread is not None:
                return
        self.relist()
        with self._lock:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._run, name="kube-watch", daemon=True)
                self._thread.start()

    def close(self, wait_s: float = 0.0) -> None:
        """Stop the thread (its blocked read is interrupted); wait up to ``wait_s`` for it to end."""
        self._closed.set()
        with self._lock:
            response, self._response = self._response, None
            thread = self._thread
        if response is not None:
            interrupt(response)
        if thread is not None and wait_s > 0:
            thread.join(wait_s)

    def _run(self) -> None:
        delay_s = FIRST_RETRY_S
        while not self._closed.is_set():
            try:
                if self.version is None:
                    self.relist()
                self.watch_once()
                delay_s = FIRST_RETRY_S
            except Gone:
                self.version = None  # our resourceVersion was compacted away: relist at once
            except Exception as exc:  # the API server went away: keep serving the cache, retry
                self.error = exc
                self._closed.wait(delay_s)
                delay_s = min(delay_s * 2, MAX_RETRY_S)

    def watch_once(self) -> None:
        """One watch request, applied to the cache until the API server ends it. Raises ``Gone``."""
        response = self._open_watch(self.version)
        with self._lock:
            self._response = response
        try:
            for line in iter_lines(response):
                if line.strip() and not self._apply(json.loads(line)):
                    return
        finally:
            with self._lock:
                if self._response is response:
                    self._response = None
            close_response(response)

    def _apply(self, event: dict[str, Any]) -> bool:
        """Apply one watch event; False when the stream must end (an ERROR event)."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(str(obj.get("message") or "resourceVersion too old"))
            return False
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind != "BOOKMARK":
            with self._lock:
                self.cache.apply(kind, obj, time.time())
        if version:
            self.version = version
        return True
