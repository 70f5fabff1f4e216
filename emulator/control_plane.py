"""The control plane as one object: store, services, both HTTP listeners, janitor, supervisor.

``ControlPlane(settings)`` is used by ``serverless-emulator serve``, by the ``test`` command, by
the pytest plugin and by the project's own tests (``async with ControlPlane(settings) as cp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from emulator.api.app import create_client_app, create_worker_app
from emulator.api.dashboard import install as install_dashboard
from emulator.api.deps import AppContext, require_api_key
from emulator.api.drain import DrainUnreadBody
from emulator.clock import Clock
from emulator.config import Settings
from emulator.errors import PortInUse
from emulator.loadbalancer.service import LoadBalancer
from emulator.service import metrics
from emulator.service.core import Core, build_core, job_service
from emulator.service.endpoints import EndpointService
from emulator.service.templates import TemplateLinks
from emulator.service.worker_protocol import WorkerProtocol
from emulator.store.db import get_meta, set_meta
from emulator.workers.mounts import check_inputs

log = structlog.get_logger("emulator")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the ControlPlane owns shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return None


def bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP
    # (base_events._set_nodelay); without it every answer on a kept-alive connection after the first
    # waited ~40 ms for the client's delayed ACK (Nagle), a streamed chunk too
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{what} port {host}:{port} is already in use; choose another with --port / EMULATOR_PORT"
            ) from exc
        raise PortInUse(f"cannot listen on {host}:{port} for the {what}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class ControlPlane:
    def __init__(self, settings: Settings, clock: Clock | None = None, runtime: Any = None) -> None:
        self.settings = settings
        self._clock = clock
        self._runtime = runtime
        self.core: Core | None = None
        self.ctx: AppContext | None = None
        self.supervisor: Any = None
        self.lb: LoadBalancer | None = None
        self._servers: list[_Server] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self.client_url = ""
        self.worker_url = ""
        self.client_app: FastAPI | None = None  # the two listeners' apps, once started
        self.worker_app: FastAPI | None = None
        self._s3: Any = None  # LocalS3, with settings.s3

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> ControlPlane:
        s = self.settings
        core = self.core = build_core(s, self._clock)
        metrics.attach(core)  # before the services, which record into it
        jobs = job_service(core)
        endpoints = EndpointService(
            core.endpoints,
            core.workers,
            core.jobs,
            core.hub,
            core.clock,
            templates=TemplateLinks(core),
            inputs=lambda e: check_inputs(s, e, core.secrets.values(), core.s3 is not None),
            logs=core.logs,
        )
        ctx = self.ctx = AppContext(
            core=core, jobs=jobs, protocol=WorkerProtocol(core, jobs), endpoints=endpoints
        )
        install_dashboard(ctx, self._stop)  # dashboard, event stream, /metrics
        lb = self.lb = LoadBalancer(core, s)  # load-balancing endpoints: proxy, health, scaling numbers
        ctx.client_routers.append(lb.router(require_api_key))
        ctx.load_balancer = lb  # the dashboard's per-request rows
        client_sock = bind(s.host, s.port, "client API")
        self.client_url = f"http://{_url_host(s.host)}:{client_sock.getsockname()[1]}"

        worker_host = s.worker_host or "127.0.0.1"
        if s.runtime in ("docker", "kubernetes"):
            from emulator.supervisor.supervisor import build_supervisor

            self.supervisor = await build_supervisor(core, jobs, s, runtime=self._runtime)
            worker_host = s.worker_host or await self.supervisor.network_gateway()
        worker_sock = self._bind_worker(worker_host)
        port = worker_sock.getsockname()[1]
        self.worker_url = s.worker_url or f"http://{_url_host(worker_host)}:{port}"
        ctx.worker_url = self.worker_url
        if s.s3:
            from emulator.service.local_s3 import LocalS3

            self._s3 = LocalS3(s.s3_access_key_id, s.s3_secret_access_key)
            core.s3 = self._s3.start(worker_host, s.s3_port, s.s3_url)
            log.info("local S3 server ready", url=core.s3.endpoint_url)
        ctx.supervisor = endpoints.supervisor = self.supervisor
        if self.supervisor is not None:
            self.supervisor.set_worker_url(self.worker_url)

        if s.config is not None:
            await endpoints.apply_file(s.config)
        self._tasks.append(asyncio.create_task(jobs.run_janitor(self._stop), name="janitor"))
        core.webhooks.resume_pending()
        self.worker_app = create_worker_app(ctx)
        self.client_app = create_client_app(ctx)
        worker_server = self._server(self.worker_app)
        client_server = self._server(lb.wrap(self.client_app))  # load-balancing requests go to the proxy
        self._tasks.append(asyncio.create_task(worker_server.serve(sockets=[worker_sock]), name="worker-api"))
        self._tasks.append(asyncio.create_task(client_server.serve(sockets=[client_sock]), name="client-api"))
        for server in self._servers:
            # uvicorn sets a flag, no event: polled for the few ms it takes
            while not server.started:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        if self.supervisor is not None:
            await self.supervisor.start()
            lb.attach(self.supervisor)
        log.info(
            "control plane ready",
            client_url=self.client_url,
            worker_url=self.worker_url,
            runtime=s.runtime,
            data_dir=str(s.data_dir),
        )
        return self

    def _bind_worker(self, host: str) -> socket.socket:
        assert self.core is not None
        conn = self.core.jobs.conn
        port = self.settings.worker_port
        remembered = get_meta(conn, f"worker_port:{host}")
        if port == 0 and remembered is not None:
            try:
                return bind(host, int(remembered), "worker protocol")
            except PortInUse:
                log.warning("remembered worker port is taken; picking another", port=remembered)
        sock = bind(host, port, "worker protocol")
        set_meta(conn, f"worker_port:{host}", str(sock.getsockname()[1]))
        return sock

    def _server(self, app: Any) -> _Server:
        config = uvicorn.Config(
            DrainUnreadBody(
                app, self.settings.drain_body_max_mb * 1024 * 1024, self.settings.drain_body_max_s
            ),
            log_level="warning",
            log_config=None,  # uvicorn logs through the root logger (emulator.logs formats it)
            access_log=False,
            lifespan="off",
            timeout_keep_alive=75,
            http=_http_protocol(),
            timeout_graceful_shutdown=3,
        )
        server = _Server(config)
        self._servers.append(server)
        return server

    async def stop(self) -> None:
        """Drain and remove workers (unless keep_workers), then close the listeners and the store."""
        if self.lb is not None:
            await self.lb.stop_health()
        if self.supervisor is not None:
            try:
                await self.supervisor.stop()
            except Exception:
                log.exception("supervisor shutdown failed")
        self._stop.set()
        if self.lb is not None:
            await self.lb.close()
        if self.core is not None:
            self.core.hub.close()  # held long polls answer now instead of holding shutdown up
        for server in self._servers:
            server.should_exit = True
        if self.core is not None:
            await self.core.webhooks.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._s3 is not None:
            await asyncio.to_thread(self._s3.stop)
        if self.core is not None:
            self.core.close()
        log.info("control plane stopped")

    async def serve_until_stopped(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> ControlPlane:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _http_protocol() -> Any:
    """uvicorn's httptools protocol with one socket write per answer (emulator/api/coalesce.py), or
    uvicorn's own choice ("auto") when httptools is not installed."""
    try:
        from emulator.api.coalesce import CoalescingHttpToolsProtocol
    except ImportError:
        return "auto"
    return CoalescingHttpToolsProtocol
