"""One socket write per HTTP answer: uvicorn's httptools protocol with its writes coalesced.

uvicorn writes an answer's head and its body with two ``transport.write`` calls, so every answer
costs two ``send`` system calls and two TCP segments (asyncio sets TCP_NODELAY). On the worker
protocol's hot path (job-take, job-done, ping) and for ``/runsync`` those sends were the largest
single cost of the control plane (about a fifth of its CPU in ``python -m bench.profile``). The
transport below keeps what is written during one event-loop turn and hands it to the socket in one
write at the end of that turn (``loop.call_soon``), or at once before ``close``. Bytes, order and
flow control are unchanged: only the number of writes drops.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Wraps an ``asyncio.Transport``: writes made in one loop turn reach it as one write.

    Every other attribute is the wrapped transport's. ``close`` flushes first; ``abort`` drops
    what is pending (as the real transport drops its buffer).
    """

    __slots__ = ("_transport", "_loop", "_pending", "_scheduled")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._pending.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Hand everything pending to the socket now, in one write."""
        self._scheduled = False
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(chunk) for chunk in self._pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol writing through a ``CoalescingTransport``
    (``uvicorn.Config(http=CoalescingHttpToolsProtocol)``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(wrapped)  # type: ignore[arg-type]
