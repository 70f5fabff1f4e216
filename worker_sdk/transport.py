"""A minimal asyncio HTTP/1.1 client on the standard library, with persistent (keep-alive) connections.

Each event loop keeps a small pool of idle connections per origin (scheme, host, port): the job-take
poll, the job-stop poll and the result posts reuse them instead of opening a TCP connection per
request. A pooled connection the server closed meanwhile (idle timeout, restart) is detected before
reuse or, at the latest, by the answer never starting; the request is then sent once more on a new
connection, so a control-plane restart costs no extra failure. Python >= 3.9, no dependencies.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

MAX_IDLE_PER_ORIGIN = 8  # the polls plus a few result posts in flight; more are closed after use
IDLE_EXPIRY_S = 60.0  # below the control plane's keep-alive timeout (75 s)


class TransportError(Exception):
    """The request did not get an HTTP answer: refused, reset, timed out, malformed."""


class _Stale(Exception):
    """A reused connection was closed by the server before any byte of the answer came."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body parsed as JSON (any JSON value), or None for an empty body; ValueError if not JSON."""
        import json

        return json.loads(self.body.decode("utf-8")) if self.body.strip() else None

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Response {self.status}, {len(self.body)} bytes>"


class _Conn:
    __slots__ = ("reader", "writer", "idle_since", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0
        self.reused = False

    def usable(self, now: float) -> bool:
        """Still open on both sides, nothing unread, and not idle for too long."""
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and now - self.idle_since < IDLE_EXPIRY_S
        )

    def close(self) -> None:
        self.writer.close()


# event loop -> origin -> idle connections (most recently used last); weak: a closed loop's pool goes away
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, list[_Conn]]] = (
    weakref.WeakKeyDictionary()
)
opened = 0  # connections opened by this process (tests and diagnostics read it)


def _idle(origin: tuple[str, str, int]) -> list[_Conn]:
    pools = _pools.setdefault(asyncio.get_running_loop(), {})
    return pools.setdefault(origin, [])


def _checkout(origin: tuple[str, str, int]) -> _Conn | None:
    idle, now = _idle(origin), time.monotonic()
    while idle:
        conn = idle.pop()
        if conn.usable(now):
            conn.reused = True
            return conn
        conn.close()
    return None


def _checkin(origin: tuple[str, str, int], conn: _Conn) -> None:
    idle = _idle(origin)
    if len(idle) >= MAX_IDLE_PER_ORIGIN or conn.writer.is_closing():
        conn.close()
        return
    conn.idle_since = time.monotonic()
    idle.append(conn)


def close_idle() -> None:
    """Close this event loop's idle connections (a worker calls it when it exits)."""
    pools = _pools.pop(asyncio.get_running_loop(), {})
    for idle in pools.values():
        for conn in idle:
            conn.close()


async def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """Send one request and read the whole answer; raises TransportError when there is no answer.

    The connection is kept for the next request to the same origin unless the answer says
    ``Connection: close`` or has no length; a cancelled or failed request closes its connection.
    """
    try:
        return await asyncio.wait_for(_request(method, url, body, headers or {}), timeout)
    except asyncio.TimeoutError:  # noqa: UP041 - not the builtin TimeoutError on Python 3.9
        raise TransportError(f"no answer within {timeout:g}s") from None
    except (OSError, EOFError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise TransportError(_describe(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed mid-answer"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


async def _request(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("unsupported URL " + repr(url))
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    origin = (parts.scheme, parts.hostname, port)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    host = parts.netloc.rpartition("@")[2]

    lines = [f"{method} {target} HTTP/1.1", "Host: " + host, "Accept-Encoding: identity"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    for name, value in headers.items():
        lines.append("{}: {}".format(name, str(value).replace("\r", "").replace("\n", "")))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + (body or b"")

    conn = _checkout(origin)
    if conn is not None:
        try:
            return await _exchange(origin, conn, method, data)
        except _Stale:
            pass  # the server closed it while idle: send once more on a new connection
    conn = await _open(origin)
    try:
        return await _exchange(origin, conn, method, data)
    except _Stale:
        raise EOFError("connection closed before any answer") from None


async def _open(origin: tuple[str, str, int]) -> _Conn:
    global opened
    context = None
    if origin[0] == "https":
        import ssl

        context = ssl.create_default_context()
    reader, writer = await asyncio.open_connection(origin[1], origin[2], ssl=context)
    opened += 1
    return _Conn(reader, writer)


async def _exchange(origin: tuple[str, str, int], conn: _Conn, method: str, data: bytes) -> Response:
    """Write the request and read the answer; the connection goes back to the pool or is closed."""
    keep = False
    try:
        reader = conn.reader
        try:
            conn.writer.write(data)
            await conn.writer.drain()
            line = await reader.readline()
        except (ConnectionResetError, BrokenPipeError):
            if conn.reused:
                raise _Stale() from None
            raise
        if not line:
            if conn.reused:
                raise _Stale()
            raise EOFError("connection closed before any answer")
        while True:
            status, response_headers = await _read_head(reader, line)
            if status >= 200 or status == 101:
                break  # skip interim 1xx answers
            line = await reader.readline()
        reusable = "close" not in response_headers.get("connection", "").lower() and status != 101
        if method == "HEAD" or status in (204, 304) or status < 200:
            body = b""
        elif "chunked" in response_headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        elif "content-length" in response_headers:
            body = await reader.readexactly(int(response_headers["content-length"]))
        else:
            reusable = False  # the body ends when the server closes the connection
            body = await reader.read()
        keep = reusable  # only once the whole answer is read: a cut or cancelled body is never reused
        return Response(status, response_headers, body)
    finally:
        # also on cancellation (a long poll interrupted at shutdown) and errors: never reuse those
        if keep:
            _checkin(origin, conn)
        else:
            conn.close()


async def _read_head(reader: asyncio.StreamReader, line: bytes) -> tuple[int, dict[str, str]]:
    if not line:
        raise EOFError("connection closed before any answer")
    fields = line.decode("latin-1").split(None, 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {line[:80]!r}")
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(fields[1]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise EOFError("connection closed inside a chunked body")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
