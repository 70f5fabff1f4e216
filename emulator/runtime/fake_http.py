"""The fake runtime's HTTP servers: a load-balancing worker's own server, in-process, on loopback.

A fake container whose image has an ``http_app`` (``ImageBehavior``) serves that ASGI app with
uvicorn on its own loopback address (``127.a.b.c``, one per container: Linux routes all of
127.0.0.0/8 to the loopback interface) at the ports its env names, as a real worker does on its
container IP: ``PORT`` (default 80) and ``PORT_HEALTH`` when it differs. ``ContainerInfo.ip_address``
is that address, so the health poller and the proxy reach it exactly as they reach a Docker worker.

The server stops when the container stops, dies or is removed. A port that cannot be bound makes the
container exit 1 with the error in its log (what a real server process does).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn

AppFactory = Callable[[Mapping[str, str]], Any]  # the container's env -> an ASGI app

_DEFAULT_PORT = 80


def listen_ports(env: Mapping[str, str]) -> list[int]:
    """The ports a worker with this env serves: ``PORT`` (default 80), and ``PORT_HEALTH`` if different.

    A value that is not a port number is skipped (the emulator refuses such endpoints before)."""
    found: list[int] = []
    for name in ("PORT", "PORT_HEALTH"):
        raw = str(env.get(name, "")).strip()
        port = int(raw) if raw.isdigit() and 1 <= int(raw) <= 65535 else None
        if port is None and name == "PORT":
            port = _DEFAULT_PORT
        if port is not None and port not in found:
            found.append(port)
    return found


class AddressPool:
    """Distinct loopback addresses, from a random /16 of 127.0.0.0/8 per pool (so two test processes on
    one machine do not collide)."""

    def __init__(self) -> None:
        self._prefix = f"127.{random.randint(1, 254)}"
        self._next = 0

    def take(self) -> str:
        self._next += 1
        return f"{self._prefix}.{self._next // 250 % 250 + 1}.{self._next % 250 + 1}"


class LoopbackServer:
    """One container's server: ``app`` served by uvicorn on ``host`` at each of ``ports``."""

    def __init__(self, app: Any, host: str, ports: list[int]) -> None:
        self.app = app
        self.host = host
        self.ports = ports
        self._servers: list[uvicorn.Server] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Bind every port and serve; raises OSError (address in use, no permission) on a bind failure."""
        sockets: list[socket.socket] = []
        try:
            for port in self.ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, port))
                sock.listen(128)
                sock.setblocking(False)
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        for sock in sockets:
            config = uvicorn.Config(
                self.app, log_config=None, log_level="warning", lifespan="auto", access_log=False
            )
            server = uvicorn.Server(config)
            self._servers.append(server)
            self._tasks.append(asyncio.create_task(_serve(server, sock), name=f"fake-http-{self.host}"))
        # uvicorn sets a flag, no event: polled for the few ms it takes
        while not all(s.started for s in self._servers) and not any(t.done() for t in self._tasks):  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop serving: open connections are closed, the ports are free after it returns."""
        for server in self._servers:
            server.should_exit = True
            server.force_exit = True
        tasks, self._tasks, self._servers = self._tasks, [], []
        await asyncio.gather(*tasks, return_exceptions=True)


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    finally:
        with contextlib.suppress(OSError):
            sock.close()
