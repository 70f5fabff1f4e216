"""A minimal asyncio HTTP/1.1 client (one connection per request) on the standard library."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class TransportError(Exception):
    """The request did not get an HTTP answer: refused, reset, timed out, malformed."""


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


async def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """Send one request and read the whole answer; raises TransportError when there is no answer."""
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
    context = None
    if secure:
        import ssl

        context = ssl.create_default_context()
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    host = parts.netloc.rpartition("@")[2]

    lines = [f"{method} {target} HTTP/1.1", "Host: " + host, "Connection: close", "Accept-Encoding: identity"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    for name, value in headers.items():
        lines.append("{}: {}".format(name, str(value).replace("\r", "").replace("\n", "")))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
    try:
        writer.write(head + (body or b""))
        await writer.drain()
        while True:
            status, response_headers = await _read_head(reader)
            if status >= 200 or status == 101:
                break  # skip interim 1xx answers
        if method == "HEAD" or status in (204, 304) or status < 200:
            data = b""
        elif "chunked" in response_headers.get("transfer-encoding", "").lower():
            data = await _read_chunked(reader)
        elif "content-length" in response_headers:
            data = await reader.readexactly(int(response_headers["content-length"]))
        else:
            data = await reader.read()
        return Response(status, response_headers, data)
    finally:
        writer.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    line = await reader.readline()
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
