"""The load balancer as the control plane holds it: the routing pool, the client to the workers, the
health poller (once a supervisor runs containers), the per-request rows and metrics.

``ControlPlane`` builds one ``LoadBalancer``, wraps the client app with ``wrap`` (the proxy), adds
``router`` (``GET /v1/endpoints/{id}/requests``) and calls ``attach(supervisor)``: from then on the
supervisor scales load-balancing endpoints on the pool's numbers (``Pool.stats``) and the poller
watches their workers' health.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import structlog
from fastapi import APIRouter, Depends, Query, Request
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Scope

from emulator.config import Settings
from emulator.errors import NotFound
from emulator.loadbalancer import rules
from emulator.loadbalancer.health import HealthPoller
from emulator.loadbalancer.pool import IN_FLIGHT, Lease, Pool
from emulator.models import Endpoint
from emulator.service import metrics
from emulator.service.core import Core
from emulator.store.jobs import QueueStats
from emulator.supervisor.actions import Fail, Resume
from emulator.workers.ports import Ports, ports
from emulator.workers.records import WorkerRecord

if TYPE_CHECKING:
    from emulator.supervisor.supervisor import Supervisor

log = structlog.get_logger("emulator.loadbalancer")

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 330)


class Refused(Exception):
    """A request the proxy answers itself: ``status`` with a JSON ``body``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.status = status
        self.body = body


class LoadBalancer:
    def __init__(self, core: Core, settings: Settings) -> None:
        self.core = core
        self.settings = settings
        self.pool = Pool(core.workers, core.clock, core.endpoints.get, settings.lb_requests_kept)
        self.pool.on_wait = lambda _endpoint_id: core.hub.changed()
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=10.0, read=None, write=None, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=200, keepalive_expiry=60.0),
            trust_env=False,  # workers are reached directly, never through a proxy from the environment
        )
        self.poller: HealthPoller | None = None
        self._requests: Counter | None = None
        self._latency: Histogram | None = None
        found = metrics.of(core)
        if found is not None:
            self._requests = Counter(
                "emulator_lb_requests",
                "Requests to load-balancing endpoints, by answer status",
                ["endpoint", "status"],
                registry=found.registry,
            )
            self._latency = Histogram(
                "emulator_lb_request_seconds",
                "Time to serve a request to a load-balancing endpoint (waiting for a worker included)",
                ["endpoint"],
                buckets=LATENCY_BUCKETS_S,
                registry=found.registry,
            )
        self._clear_stale_requests()

    # --- wiring --------------------------------------------------------------------------------------------
    def attach(self, supervisor: Supervisor) -> None:
        """Scale load-balancing endpoints on the pool and watch their workers' health."""
        supervisor.loop.lb_stats = self.stats
        actuator = supervisor.actuator

        def fail(worker: WorkerRecord, endpoint: Endpoint, reason: str) -> None:
            actuator.run(Fail(worker.id, reason, kill=True), endpoint)

        def resume(worker_id: str) -> None:
            worker = self.core.workers.get(worker_id)
            if worker is not None and worker.paused:
                actuator.run(
                    Resume(worker_id, "a request with strict-resume affinity"),
                    self.core.endpoints.get(worker.endpoint_id),
                )

        self.pool.on_resume = resume
        self.poller = HealthPoller(self.core, self.settings, self.pool, supervisor.runtime, fail)
        self.poller.start()

    def wrap(self, app: ASGIApp) -> ASGIApp:
        from emulator.loadbalancer.proxy import ProxyApp

        return ProxyApp(app, self)

    async def stop_health(self) -> None:
        """Stop asking workers (before the supervisor removes them at shutdown)."""
        if self.poller is not None:
            poller, self.poller = self.poller, None
            await poller.stop()

    async def close(self) -> None:
        await self.stop_health()
        await self.client.aclose()

    def stats(self, endpoint: Endpoint, now: float) -> QueueStats | None:
        """The scaler's numbers for a load-balancing endpoint; None for a queue-based one."""
        if endpoint.type != "LB":
            return None
        return self.pool.stats(endpoint.id)

    def _clear_stale_requests(self) -> None:
        """Requests in flight when a previous run stopped are gone: their workers hold nothing."""
        for worker in self.core.workers.all():
            stale = [j for j in worker.job_ids if j == IN_FLIGHT]
            for request_id in stale:
                self.core.workers.job_released(worker, request_id)

    # --- what the proxy asks -------------------------------------------------------------------------------
    def target(self, scope: Scope) -> tuple[str, str] | None:
        """(endpoint id, path for the worker) when the request is for a load-balancing endpoint."""
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        endpoint_id = rules.endpoint_from_host(host)
        if endpoint_id is not None:
            return endpoint_id, scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or scope["path"]
        split = rules.split_lb_path(scope["path"])
        if split is None:
            return None
        raw = scope.get("raw_path")
        if raw:  # keep the client's own encoding of the path (%2F stays %2F)
            raw_split = rules.split_lb_path(raw.decode("latin-1").split("?", 1)[0])
            if raw_split is not None:
                return split[0], raw_split[1]
        return split

    def job_route_refusal(self, scope: Scope) -> Refused | None:
        """``/v2/{id}/run`` or ``/runsync`` on a load-balancing endpoint: a job no worker would ever take."""
        if scope["type"] != "http" or not scope["path"].startswith("/v2/"):
            return None
        parts = scope["path"].split("/")
        if len(parts) != 4 or parts[3] not in ("run", "runsync"):
            return None
        endpoint = self.core.endpoints.get(parts[2])
        if endpoint is None or endpoint.type != "LB":
            return None
        key = self.settings.api_key
        if key and not rules.has_token(_header(scope, b"authorization"), key):
            return None  # the client app answers 401 as for any /v2 route
        return Refused(
            400,
            {
                "error": f"endpoint {endpoint.id!r} is load-balancing (type LB): it has no job queue; send "
                f"HTTP requests to /lb/{endpoint.id}/<path> (or http://{endpoint.id}.localhost:<port>/<path>)"
            },
        )

    def admit(self, scope: Scope, endpoint_id: str) -> tuple[Endpoint, Ports]:
        """The endpoint and its ports, or Refused (401, 404, 400) with RunPod-like error bodies."""
        key = self.settings.api_key
        if key and not rules.has_token(_header(scope, b"authorization"), key):
            raise Refused(401, {"error": "missing or wrong API key: send 'Authorization: Bearer <key>'"})
        endpoint = self.core.endpoints.get(endpoint_id)
        if endpoint is None:
            raise Refused(404, {"error": f"endpoint {endpoint_id!r} does not exist"})
        if endpoint.type != "LB":
            raise Refused(
                400,
                {
                    "error": f"endpoint {endpoint_id!r} is queue-based (type QB): send jobs to "
                    f"/v2/{endpoint_id}/run or /runsync, or create it with type LB"
                },
            )
        try:
            where = ports(endpoint.env)
        except ValueError as exc:
            raise Refused(400, {"error": f"endpoint {endpoint_id!r}: {exc}"}) from exc
        return endpoint, where

    def affinity(self, scope: Scope) -> rules.Affinity:
        try:
            return rules.affinity(_header(scope, b"x-runpod-worker-id"))
        except ValueError as exc:
            raise Refused(400, {"error": str(exc)}) from exc

    def wait_s(self, wanted: rules.Affinity) -> float:
        """How long a request waits for its worker: ~5 min for strict affinity, else 2 min (RunPod's)."""
        if wanted.mode in ("strict", "strict-resume"):
            return self.settings.lb_affinity_wait_s
        return self.settings.lb_wait_for_worker_s

    def served(
        self, scope: Scope, endpoint_id: str, path: str, status: int, lease: Lease | None, seconds: float
    ) -> None:
        """One request done: a dashboard row, metrics, a log line."""
        row = {
            "endpointId": endpoint_id,
            "at": self.core.clock.now(),
            "method": scope.get("method", "WEBSOCKET") if scope["type"] == "http" else "WEBSOCKET",
            "path": path,
            "status": status,
            "workerId": lease.worker_id if lease is not None else None,
            "ms": round(seconds * 1000, 1),
            "waitMs": round(lease.waited_s * 1000, 1) if lease is not None else None,
            "coldStart": lease.cold_start or None if lease is not None else None,
        }
        self.pool.record(row)
        self.core.hub.changed()  # the dashboard's snapshot (rate-limited there)
        if self._requests is not None and self._latency is not None:
            self._requests.labels(endpoint_id, str(status)).inc()
            self._latency.labels(endpoint_id).observe(seconds)
        log.debug(
            "load-balancing request",
            endpoint=endpoint_id,
            worker=row["workerId"],
            method=row["method"],
            path=path,
            status=status,
            ms=row["ms"],
        )

    def view(self, endpoint_id: str, limit: int) -> tuple[int, int, list[dict[str, Any]]]:
        """The dashboard's numbers: (requests waiting, requests in flight, the last ``limit`` rows)."""
        stats = self.pool.stats(endpoint_id)
        return stats.in_queue, stats.in_progress, self.pool.recent(endpoint_id, limit)

    # --- management ------------------------------------------------------------------------------------------
    def router(self, auth: Any) -> APIRouter:
        router = APIRouter(tags=["load balancing"], dependencies=[Depends(auth)])
        pool, core = self.pool, self.core

        @router.get(
            "/v1/endpoints/{endpoint_id}/requests",
            summary="The last requests a load-balancing endpoint served (method, path, status, worker, ms)",
        )
        async def recent_requests(
            request: Request, endpoint_id: str, limit: int = Query(100, ge=1, le=1000)
        ) -> dict[str, Any]:
            if core.endpoints.get(endpoint_id) is None:
                raise NotFound(f"endpoint {endpoint_id!r} does not exist", endpoint=endpoint_id)
            stats = pool.stats(endpoint_id)
            return {
                "requests": pool.recent(endpoint_id, limit),
                "waiting": stats.in_queue,
                "inFlight": stats.in_progress,
            }

        return router


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (``name`` in lower case), or None."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None
