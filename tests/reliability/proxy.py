"""A unix-socket proxy in front of the Docker engine's socket, that a test can cut and restore.

The control plane under test gets ``DOCKER_HOST=unix://<proxy socket>``; the real engine is never
touched. ``cut()`` closes the listener (new connections fail at once) and every open connection (a
container event stream breaks, as when the engine restarts); ``restore()`` listens again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path


def engine_socket() -> Path | None:
    """The engine's unix socket (from DOCKER_HOST, else the default), or None when it is not one."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    path = Path(host.removeprefix("unix://"))
    return path if path.exists() else None


class DockerSocketProxy:
    def __init__(self, listen: Path, target: Path) -> None:
        self.listen = listen
        self.target = target
        self._server: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.refused_while_cut = 0

    @property
    def url(self) -> str:
        return f"unix://{self.listen}"

    def start(self) -> DockerSocketProxy:
        with contextlib.suppress(FileNotFoundError):
            self.listen.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.listen))
        server.listen(128)
        self._server = server
        thread = threading.Thread(target=self._accept, args=(server,), name="docker-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed by cut() or close()
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.target))
            except OSError:
                upstream.close()
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    def cut(self) -> None:
        """The engine is unreachable from now on: no listener, every open connection closed."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with contextlib.suppress(FileNotFoundError):
            self.listen.unlink()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def restore(self) -> None:
        if self._server is None:
            self.start()

    def close(self) -> None:
        self.cut()
