"""One socket write per HTTP answer (emulator/api/coalesce.py): a real uvicorn server on a real socket,
its server-side ``transport.write`` calls counted; uvicorn's own protocol makes two per answer."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from emulator.api.coalesce import CoalescingHttpToolsProtocol, CoalescingTransport


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = b'{"id":"job-1","input":{"n":1}}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _serve_and_count(
    protocol: Any, monkeypatch: pytest.MonkeyPatch, requests: int
) -> tuple[int, bytes]:
    """Serve ``requests`` keep-alive GETs; (server-side socket writes, the bytes the client read)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    writes: Counter[int] = Counter()
    selector_transport = type(_transport_class_probe())
    original = selector_transport.write

    def counting(self: Any, data: Any) -> None:
        writes[self.get_extra_info("sockname")[1]] += 1
        original(self, data)

    monkeypatch.setattr(selector_transport, "write", counting)
    server = uvicorn.Server(
        uvicorn.Config(_app, http=protocol, log_config=None, lifespan="off", access_log=False)
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        received = b""
        for _ in range(requests):
            writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
            )
            received += head + await reader.readexactly(length)
        writer.close()
        return writes[port], received
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def _transport_class_probe() -> Any:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    transport = loop._make_socket_transport(a, asyncio.Protocol())  # type: ignore[attr-defined]
    transport.close()
    b.close()
    return transport


async def test_one_write_per_answer_on_kept_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    writes, received = await _serve_and_count(CoalescingHttpToolsProtocol, monkeypatch, 3)
    assert writes == 3
    assert (
        received.count(b"HTTP/1.1 200 OK\r\n") == 3 and received.count(b'{"id":"job-1","input":{"n":1}}') == 3
    )


async def test_uvicorns_own_protocol_writes_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    writes, received = await _serve_and_count(HttpToolsProtocol, monkeypatch, 3)
    assert writes == 6 and received.count(b"HTTP/1.1 200 OK\r\n") == 3


async def test_close_flushes_and_abort_drops() -> None:
    class Recording:
        def __init__(self) -> None:
            self.written: list[bytes] = []
            self.closed = self.aborted = False

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        def abort(self) -> None:
            self.aborted = True

        def get_write_buffer_size(self) -> int:
            return 0

    loop = asyncio.get_running_loop()
    inner = Recording()
    wrapped = CoalescingTransport(inner, loop)  # type: ignore[arg-type]
    wrapped.write(b"head ")
    wrapped.write(b"body")
    assert inner.written == [] and wrapped.get_write_buffer_size() == 9
    wrapped.close()
    assert inner.written == [b"head body"] and inner.closed
    other = Recording()
    dropped = CoalescingTransport(other, loop)  # type: ignore[arg-type]
    dropped.write(b"x")
    dropped.abort()
    await asyncio.sleep(0)
    assert other.written == [] and other.aborted
    assert dropped.is_closing() is False  # everything else is the wrapped transport's
