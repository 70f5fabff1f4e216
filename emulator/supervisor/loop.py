"""The reconcile loop: observe -> plan -> act, level-triggered, forever.

Each tick lists this control plane's containers once, plans every endpoint against its worker
records and the queue (``reconcile.plan``, ``rollout.status``), passes every endpoint's actions
through admission (``capacity.admit``: what does not fit on the host waits THROTTLED; skipped when the
runtime's engine places workers, ``Capabilities.places_workers``), and hands
them to the actuator. A tick that fails is logged and the
next one starts from scratch: the loop never dies on one error. It wakes on ``hub.changed()`` (a job
queued or finished, an endpoint changed), on a container event (a container died), when an
operation ends, and at the latest every ``reconcile_interval_s`` (the full container listing then
every ``relist_interval_s`` while the engine's event stream delivers, else on every tick).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog

from emulator.config import Settings
from emulator.errors import EmulatorError, RuntimeUnavailable
from emulator.models import Endpoint
from emulator.runtime.base import ContainerInfo, Runtime
from emulator.service.core import Core
from emulator.store.jobs import QueueStats
from emulator.supervisor import capacity, rollout
from emulator.supervisor.actions import Action, Observed, Remove, SetRollout
from emulator.supervisor.actuator import Actuator
from emulator.supervisor.containers import owner_labels
from emulator.supervisor.reconcile import leaked_containers, plan

log = structlog.get_logger("emulator.supervisor")

_WAKING_EVENTS = frozenset({"die", "oom", "destroy", "stop", "kill", "start"})
EVENTS_RETRY_S = 2.0


class ReconcileLoop:
    def __init__(
        self, core: Core, actuator: Actuator, settings: Settings, runtime: Runtime, instance: str
    ) -> None:
        self.core = core
        self.actuator = actuator
        self.settings = settings
        self.runtime = runtime
        self.instance = instance
        self.deleting: set[str] = set()  # endpoints being deleted: their workers are handled there
        self.gpu_inventory: tuple[str, ...] = ()  # the host's GPU ids (emulator.gpus), set by the Supervisor
        self.ticks = 0
        self.failed_ticks = 0
        self.runtime_error: str | None = None  # set while the container runtime cannot be reached
        self.runtime_down_since: float | None = None
        self._poke = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._containers: list[ContainerInfo] = []
        self._listed_at = float("-inf")
        self._events_live = False  # the event stream delivered since it was (re)subscribed
        self._containers_changed = True
        # load-balancing endpoints scale on requests waiting and in flight (emulator.loadbalancer)
        self.lb_stats: Callable[[Endpoint, float], QueueStats | None] = lambda endpoint, now: None
        actuator.ops.on_done = self.poke

    # --- one tick ------------------------------------------------------------------------------
    async def tick(self, relist: bool = True) -> None:
        """Observe, plan and act once for every endpoint.

        ``relist=False`` reuses the last container listing unless a container event or a finished
        operation changed something or ``reconcile_interval_s`` passed: a tick woken by a queued or
        finished job then costs no Docker call.
        """
        # an operation that ends while the containers are being listed (a launch) is still busy for
        # this tick: the listing may not show what it did
        busy_before = self.actuator.busy()
        containers = await self._observe(relist)
        by_id = {c.id: c for c in containers}
        now = self.core.clock.now()
        busy = busy_before | self.actuator.busy()
        endpoints = {e.id: e for e in self.core.endpoints.list()}
        planned: list[tuple[Endpoint, list[Action]]] = []
        for endpoint in endpoints.values():
            if endpoint.id in self.deleting:
                continue
            try:
                observed = [
                    Observed(w, by_id.get(w.container_id) if w.container_id else None, busy=w.id in busy)
                    for w in self.core.workers.for_endpoint(endpoint.id)
                    if w.kind == "container"
                ]
                stats = self.lb_stats(endpoint, now) or self.core.jobs.stats(endpoint.id, now)
                actions = plan(endpoint, observed, stats, now, self.settings, self.runtime.capabilities)
                wanted = rollout.status(endpoint, [o for o in observed if not o.worker.standby])
                if wanted != endpoint.rollout:
                    actions.append(SetRollout(endpoint.id, endpoint.version, wanted))
                planned.append((endpoint, actions))
            except Exception:
                log.exception("planning failed for an endpoint", endpoint=endpoint.id)
        for endpoint, action in self._admit(planned, endpoints, busy):
            self.actuator.run(action, endpoint)
        self._sweep(endpoints, containers, busy)
        self.ticks += 1

    def _admit(
        self, planned: list[tuple[Endpoint, list[Action]]], endpoints: dict[str, Endpoint], busy: set[str]
    ) -> list[tuple[Endpoint, Action]]:
        """Host admission (``capacity.admit``), unless the engine places workers itself (a cluster
        scheduler: a worker it cannot place waits THROTTLED with its reason, see ``reconcile``)."""
        if self.runtime.capabilities.places_workers:
            return [(endpoint, action) for endpoint, actions in planned for action in actions]
        everyone = self.core.workers.all()
        host = capacity.snapshot(everyone, endpoints, self.gpu_inventory, self.settings, busy)
        return capacity.admit(planned, host, {w.id: w for w in everyone})

    async def _observe(self, relist: bool) -> list[ContainerInfo]:
        now = asyncio.get_running_loop().time()
        # with a live event stream every change to a container wakes a relisting tick (``poke``): the
        # periodic listing is then only a safety net (``relist_interval_s``), not a per-tick Docker call
        # (a runtime whose listing is a local cache, Kubernetes' watch, is listed on every tick)
        cached = self.runtime.capabilities.cached_list
        every = (
            self.settings.reconcile_interval_s
            if cached or not self._events_live
            else self.settings.relist_interval_s
        )
        stale = now - self._listed_at >= max(every, self.settings.reconcile_interval_s)
        if relist or stale or self._containers_changed:
            self._containers_changed = False
            self._containers = await self.runtime.list(owner_labels(self.instance))
            self._listed_at = now
        return self._containers

    def _sweep(self, endpoints: dict[str, Endpoint], containers: list[ContainerInfo], busy: set[str]) -> None:
        """Workers of endpoints that are gone, and containers no worker owns."""
        workers = [w for w in self.core.workers.all() if w.kind == "container"]
        for w in workers:
            if w.endpoint_id not in endpoints and w.endpoint_id not in self.deleting and w.id not in busy:
                self.actuator.run(Remove(w.id, "its endpoint no longer exists"), None)
        owned = {w.id: w.container_id for w in workers}
        for action in leaked_containers(containers, owned, busy):
            if f"container:{action.container_id}" not in busy:
                self.actuator.run(action, None)

    # --- running -------------------------------------------------------------------------------
    def poke(self) -> None:
        """Tick soon, with a fresh container listing (a container died, an operation ended, ...)."""
        self._containers_changed = True
        self._poke.set()

    def start(self) -> None:
        self._running = True
        self._tasks = [
            asyncio.create_task(self._run(), name="supervisor-loop"),
            asyncio.create_task(self._watch_events(), name="supervisor-events"),
        ]

    async def stop(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(self) -> None:
        interval = max(0.001, self.settings.reconcile_interval_s)
        min_gap = min(0.05, interval)  # a burst of wake-ups makes one tick, not hundreds
        while self._running:
            # Listen for changes before the tick: a change while the tick awaits Docker, or during the
            # pause after it, must bring the next tick at once, not after a whole interval.
            change = asyncio.ensure_future(self.core.hub.wait_for_change(86400.0))
            try:
                await self._iteration(interval, min_gap, change)
            finally:
                change.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await change

    async def _iteration(self, interval: float, min_gap: float, change: asyncio.Future[bool]) -> None:
        began = asyncio.get_running_loop().time()
        try:
            await self.tick(relist=False)
        except asyncio.CancelledError:
            raise
        except RuntimeUnavailable as exc:
            self.failed_ticks += 1
            self._runtime_down(exc.message)
        except EmulatorError as exc:
            self.failed_ticks += 1
            log.warning("reconcile tick failed; retrying", error=exc.message, failed_ticks=self.failed_ticks)
        except Exception:
            self.failed_ticks += 1
            log.exception("reconcile tick failed; retrying", failed_ticks=self.failed_ticks)
        else:
            self._runtime_up()
        elapsed = asyncio.get_running_loop().time() - began
        if elapsed < min_gap:
            await asyncio.sleep(min_gap - elapsed)
        # while the engine is away, look again every second rather than every tick
        await self._wait(max(interval, 1.0) if self.runtime_error else interval, change)

    def _runtime_down(self, message: str) -> None:
        if self.runtime_error is None:
            self.runtime_down_since = self.core.clock.now()
            log.warning("container runtime unreachable: workers cannot be started or watched", error=message)
            self.core.hub.changed()
        self.runtime_error = message

    def _runtime_up(self) -> None:
        if self.runtime_error is not None:
            down_s = self.core.clock.now() - (self.runtime_down_since or self.core.clock.now())
            log.info("container runtime reachable again", down_s=round(down_s, 1))
            self.runtime_error = None
            self.runtime_down_since = None
            self.core.hub.changed()

    def runtime_status(self) -> dict[str, object]:
        """{"status": "ok"} or {"status": "unreachable", "error": ..., "since": epoch seconds}."""
        if self.runtime_error is None:
            return {"status": "ok"}
        return {"status": "unreachable", "error": self.runtime_error, "since": self.runtime_down_since}

    async def _wait(self, timeout_s: float, change: asyncio.Future[bool]) -> None:
        """Until a poke, a change (``change``: registered before the tick), or ``timeout_s``."""
        if self._poke.is_set():
            self._poke.clear()
            return
        if change.done():
            return
        poke = asyncio.ensure_future(self._poke.wait())
        waiters: set[asyncio.Future[Any]] = {change, poke}
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not poke.done():
                poke.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(poke, return_exceptions=True)
            self._poke.clear()

    async def _watch_events(self) -> None:
        """Container events wake the loop at once (a dead container is noticed in milliseconds)."""
        while self._running:
            try:
                async for event in self.runtime.events(owner_labels(self.instance)):
                    self._events_live = True
                    if event.action in _WAKING_EVENTS:
                        self.poke()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the engine restarted, the stream broke: resubscribe
                log.debug("container event stream ended; resubscribing", error=str(exc))
            # until it delivers again, containers are listed on every tick
            self._events_live = False
            self.poke()
            await asyncio.sleep(EVENTS_RETRY_S)
