"""The health poller: asks each load-balancing worker's health path how it is, and acts on the answer.

RunPod (docs.runpod.io/serverless/load-balancing/overview): the balancer polls
``http://worker:PORT_HEALTH/HEALTH_CHECK_PATH``; 200 is healthy, 204 initializing, anything else
unhealthy (out of the routing pool); the cold start runs until the first 200. Here:

* a starting worker is asked every ``lb_health_fast_interval_s`` (0.1 s), a ready one every
  ``lb_health_interval_s`` (1 s); paused (FlashBoot) and standby workers are not asked;
* the first 200 since the container started is the worker's first contact: INITIALIZING -> IDLE,
  ``readyS`` in its cold-start timings (container start to first 200); every 200 after it is its
  liveness (the supervisor's ``worker_lost_after_s`` applies as to a worker that pings);
* a worker answering neither 200 nor 204 for ``lb_unhealthy_after_s``, or a ready worker that stops
  answering for as long, fails (UNHEALTHY, restarted with the endpoint's back-off) with the last
  answer as the reason; a starting worker that does not answer at all is left to
  ``startup_timeout_s`` (its reason then names the last answer too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx
import structlog

from emulator.config import Settings
from emulator.errors import EmulatorError
from emulator.loadbalancer import rules
from emulator.loadbalancer.pool import Pool
from emulator.models import Endpoint, WorkerState
from emulator.runtime.base import Runtime
from emulator.service.core import Core
from emulator.workers.ports import Ports, ports
from emulator.workers.records import WorkerRecord

log = structlog.get_logger("emulator.loadbalancer")

_ASKED = (WorkerState.INITIALIZING, WorkerState.IDLE, WorkerState.RUNNING, WorkerState.OUTDATED)
Fail = Callable[[WorkerRecord, Endpoint, str], None]


class HealthPoller:
    def __init__(self, core: Core, settings: Settings, pool: Pool, runtime: Runtime, fail: Fail) -> None:
        self.core = core
        self.settings = settings
        self.pool = pool
        self.runtime = runtime
        self.fail = fail
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.lb_health_timeout_s),
            limits=httpx.Limits(max_keepalive_connections=50, keepalive_expiry=30.0),
            trust_env=False,
        )
        self._due: dict[str, float] = {}
        self._checking: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lb-health")

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *self._checking.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.aclose()

    async def _run(self) -> None:
        interval = max(0.01, self.settings.lb_health_fast_interval_s)
        while True:
            try:
                self.sweep()
            except Exception:  # the poller never dies on one error
                log.exception("health sweep failed")
            await asyncio.sleep(interval)

    def sweep(self) -> None:
        """Start a check for every load-balancing worker that is due one."""
        now = self.core.clock.monotonic()
        live: set[str] = set()
        for endpoint in self.core.endpoints.list():
            if endpoint.type != "LB":
                continue
            for worker in self.core.workers.for_endpoint(endpoint.id):
                live.add(worker.id)
                if not self._asked(worker):
                    self.pool.set_routable(worker.id, False)
                    continue
                if worker.id in self._checking or self._due.get(worker.id, 0.0) > now:
                    continue
                task = asyncio.create_task(self._check(worker, endpoint), name=f"lb-health-{worker.id}")
                self._checking[worker.id] = task
                task.add_done_callback(self._done(worker.id))
        for worker_id in [w for w in self._due if w not in live]:
            self._due.pop(worker_id, None)

    def _done(self, worker_id: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(task: asyncio.Task[None]) -> None:
            self._checking.pop(worker_id, None)
            if not task.cancelled() and task.exception() is not None:
                log.warning("health check failed", worker=worker_id, error=repr(task.exception()))

        return forget

    @staticmethod
    def _asked(worker: WorkerRecord) -> bool:
        return (
            worker.kind == "container"
            and not worker.standby
            and not worker.paused
            and worker.container_id is not None
            and worker.started_at is not None
            and worker.state in _ASKED
        )

    async def _check(self, worker: WorkerRecord, endpoint: Endpoint) -> None:
        clock = self.core.clock
        ready_before = worker.ready_at is not None
        fast, slow = self.settings.lb_health_fast_interval_s, self.settings.lb_health_interval_s
        self._due[worker.id] = clock.monotonic() + (slow if ready_before else fast)
        slot = self.pool.slot(worker.id)
        container_id = worker.container_id
        if slot.container_id != container_id or slot.address is None:
            slot.container_id, slot.address, slot.bad_since = container_id, None, None
            slot.address = await self._address(worker)
            if slot.address is None:
                return
        try:
            where = ports(endpoint.env)
        except ValueError:
            where = Ports()
        url = f"http://{slot.address}:{where.health_port}{where.health_path}"
        status, detail = await self._ask(url)
        if self.core.workers.get(worker.id) is not worker or worker.container_id != container_id:
            return  # removed or restarted while it was asked
        if not self._asked(worker):
            return
        answer = rules.verdict(status)
        step = rules.health_step(
            answer,
            detail,
            ready_before,
            slot.bad_since,
            clock.monotonic(),
            self.settings.lb_unhealthy_after_s,
            busy=slot.in_flight > 0,
        )
        slot.bad_since = step.bad_since
        if worker.health != detail:
            worker.health = detail
            self.core.workers.save(worker)
        if step.fail is not None:
            self.pool.set_routable(worker.id, False)
            self.fail(worker, endpoint, step.fail)
            return
        if step.contact:
            self.core.workers.touch(worker)
            if worker.ready_at is not None and not ready_before:
                log.info(
                    "load-balancing worker ready",
                    endpoint=endpoint.id,
                    worker=worker.id,
                    ready_s=worker.timings.get("readyS"),
                )
        self.pool.set_routable(worker.id, step.routable and self.core.workers.may_take(worker))

    async def _address(self, worker: WorkerRecord) -> str | None:
        assert worker.container_id is not None
        try:
            info = await self.runtime.inspect(worker.container_id)
        except EmulatorError as exc:
            log.debug("worker address unknown", worker=worker.id, error=exc.message)
            return None
        return info.ip_address

    async def _ask(self, url: str) -> tuple[int | None, str]:
        """(status, the answer in words) of one GET; status None when nothing answered."""
        where = url.split("://", 1)[-1]
        try:
            response = await self.client.get(url)
        except httpx.ConnectError as exc:
            return None, f"GET {where}: no answer ({_reason(exc)})"
        except httpx.TimeoutException:
            return None, f"GET {where}: no answer within {self.settings.lb_health_timeout_s:g}s"
        except httpx.HTTPError as exc:
            return None, f"GET {where}: {_reason(exc)}"
        with contextlib.suppress(httpx.HTTPError):
            await response.aclose()
        return response.status_code, f"GET {where} answered {response.status_code}"


def _reason(exc: Exception) -> str:
    return rules.transport_error(exc)
