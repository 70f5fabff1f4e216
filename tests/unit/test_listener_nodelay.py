"""The control plane's listeners hand out connections with TCP_NODELAY, as asyncio does for sockets it
creates itself: a listening socket made with proto 0 gives accepted sockets asyncio does not recognise
as TCP, and then every answer on a kept-alive connection after the first waited for the client's
delayed ACK (about 40 ms per request, and per streamed chunk)."""

from __future__ import annotations

import asyncio
import socket

from emulator.control_plane import bind


async def test_accepted_connections_have_tcp_nodelay() -> None:
    sock = bind("127.0.0.1", 0, "test")
    assert sock.proto == socket.IPPROTO_TCP
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = writer.get_extra_info("socket")
        seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(seen, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
