"""Heartbeat: ``GET ping?job_id=a,b&runpod_version=x`` every RUNPOD_PING_INTERVAL ms, on its own daemon thread.

A thread (not the event loop) so that a busy handler or a blocked loop cannot starve it.
"""

from __future__ import annotations

import http.client
import select
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import log

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .config import Settings


class Heartbeat:
    def __init__(self, settings: Settings, job_ids: Callable[[], tuple[str, ...]]) -> None:
        """``job_ids()`` returns the in-flight job ids (a tuple snapshot, safe to read from a thread)."""
        self.settings = settings
        self.job_ids = job_ids
        self.sent = 0
        self._stop = threading.Event()
        self._failures = 0
        self._pinger = _Pinger()
        self._thread = threading.Thread(target=self._run, name="worker_sdk-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = self.settings.ping_interval_s
        while not self._stop.is_set():
            started = time.monotonic()
            self.ping_once()
            if self._stop.wait(max(0.0, interval - (time.monotonic() - started))):
                self._pinger.close()
                return

    def ping_once(self) -> int | None:
        """Send one ping; returns the HTTP status, or None when the control plane did not answer."""
        url = self.settings.ping_url_for(self.job_ids())
        timeout = min(30.0, max(2.0, 2 * self.settings.ping_interval_s))
        try:
            status = self._pinger.get(url, self.settings.headers(), timeout)
        except Exception as exc:  # any failure is logged and retried on the next beat
            self._failed(f"{type(exc).__name__}: {exc}", url)
            return None
        self.sent += 1
        if status >= 400:
            self._failed(f"HTTP {status}", url)
        elif self._failures:
            log.info(f"heartbeat: control plane answering again after {self._failures} failed ping(s)")
            self._failures = 0
        else:
            log.trace("heartbeat sent")
        return status

    def _failed(self, reason: str, url: str) -> None:
        self._failures += 1
        if self._failures == 1 or self._failures % 30 == 0:
            log.warn(f"heartbeat to {url.partition('?')[0]} failed ({reason}); {self._failures} in a row")


class _Pinger:
    """One persistent HTTP/1.1 connection for the heartbeat thread (``http.client``, stdlib).

    The connection is opened on the first ping and kept; when the server closed it meanwhile
    (idle timeout, restart) the ping is sent once more on a new connection.
    """

    def __init__(self) -> None:
        self._conn: http.client.HTTPConnection | None = None
        self._origin: tuple[str, str, int | None, float] | None = None
        self.opened = 0  # connections opened (tests read it)

    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> int:
        """GET ``url``; returns the HTTP status. Raises OSError / http.client.HTTPException / ValueError."""
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError("no host in the ping URL " + repr(url))
        origin = (parts.scheme, parts.hostname, parts.port, timeout)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        reused = self._conn is not None and origin == self._origin and not _closed_by_peer(self._conn)
        if not reused:
            self.close()
            cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            self._conn, self._origin = cls(parts.hostname, parts.port, timeout=timeout), origin
            self.opened += 1
        try:
            return self._send(target, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                self.close()
                raise
        # the server closed the kept connection just as it was reused: once more on a new one
        self.close()
        return self.get(url, headers, timeout)

    def _send(self, target: str, headers: Mapping[str, str]) -> int:
        conn = self._conn
        assert conn is not None
        try:
            conn.request("GET", target, headers=dict(headers))
            response = conn.getresponse()
            response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            self.close()
        return response.status

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._origin = None


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """True when the idle kept connection is readable: the server closed it (or sent junk)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
