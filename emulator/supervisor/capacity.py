"""PURE: host capacity and admission. A worker that should run but does not fit is THROTTLED.

Only for a runtime that does not place workers itself (Docker): on Kubernetes the loop skips this and
the scheduler's verdict makes THROTTLED (``reconcile.queued_reason``).

Each tick the loop takes a snapshot of what running workers hold (``snapshot``) and passes every
endpoint's planned actions through ``admit``, which reserves capacity for each start in order
(THROTTLED workers first, oldest first; then due restarts; then new workers) and turns the starts
that do not fit into ``Throttle`` actions carrying the reason. Capacity is:

* **GPUs** (``gpuCount``): specific device ids from the inventory (``emulator.gpus``), each held by
  one worker at a time;
* **memory** (``EMULATOR_WORKER_MEMORY_BUDGET_MB``): each worker counts its endpoint's
  ``memoryInMb``, or ``DEFAULT_WORKER_MEMORY_MB`` when that is unset;
* **CPU** (``EMULATOR_WORKER_CPU_BUDGET``): each running worker counts its endpoint's ``vcpuCount``
  (its container's CPU limit), or one CPU when that is unset; paused ones count none.

The concurrent-start cap (``EMULATOR_MAX_CONCURRENT_STARTS``) is applied by the actuator, which
reports a worker waiting for a start slot THROTTLED too.

Who holds capacity: workers whose container runs or is being started (INITIALIZING, IDLE, RUNNING,
OUTDATED, and a THROTTLED worker with an operation in flight, i.e. waiting for a start slot with
its reservation). Crashed (UNHEALTHY) and THROTTLED workers hold nothing; standby containers hold
nothing (they are never started, and GPU endpoints get none).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from emulator.config import Settings
from emulator.gpus import pick
from emulator.models import Endpoint, WorkerState
from emulator.supervisor.actions import Action, Restart, Start, Throttle, Unthrottle
from emulator.workers.records import WorkerRecord
from emulator.workers.resources import worker_cpus

S = WorkerState
DEFAULT_WORKER_MEMORY_MB = 1024
_HOLDING = (S.INITIALIZING, S.IDLE, S.RUNNING, S.OUTDATED)


@dataclass(frozen=True)
class Need:
    gpus: int
    memory_mb: float
    cpus: float = 1.0


def need_of(endpoint: Endpoint) -> Need:
    return Need(
        endpoint.gpuCount, float(endpoint.memoryInMb or DEFAULT_WORKER_MEMORY_MB), worker_cpus(endpoint)
    )


@dataclass
class Host:
    """What is left on the host; ``take`` reserves, ``refusal`` explains why a need does not fit."""

    gpu_inventory: tuple[str, ...] = ()
    gpus_held: set[str] = field(default_factory=set)
    memory_budget_mb: float | None = None
    memory_used_mb: float = 0.0
    cpu_budget: float | None = None
    cpu_used: float = 0.0

    def refusal(self, need: Need) -> str | None:
        if need.gpus:
            if need.gpus > len(self.gpu_inventory):
                return f"needs {need.gpus} GPUs but the host has {len(self.gpu_inventory)}"
            if pick(self.gpu_inventory, self.gpus_held, need.gpus) is None:
                free = len(self.gpu_inventory) - len(self.gpus_held & set(self.gpu_inventory))
                return (
                    f"no free GPU: needs {need.gpus}, {free} of {len(self.gpu_inventory)} free "
                    f"(each GPU is held by one worker at a time)"
                )
        if self.memory_budget_mb is not None and self.memory_used_mb + need.memory_mb > self.memory_budget_mb:
            return (
                f"memory budget: needs {need.memory_mb:g} MB, {self.memory_budget_mb - self.memory_used_mb:g} "
                f"of {self.memory_budget_mb:g} MB left (EMULATOR_WORKER_MEMORY_BUDGET_MB)"
            )
        if self.cpu_budget is not None and self.cpu_used + need.cpus > self.cpu_budget:
            return (
                f"CPU budget: needs {need.cpus:g} CPU, {self.cpu_budget - self.cpu_used:g} of "
                f"{self.cpu_budget:g} left (EMULATOR_WORKER_CPU_BUDGET)"
            )
        return None

    def take(self, need: Need) -> tuple[str, ...]:
        ids = pick(self.gpu_inventory, self.gpus_held, need.gpus) or ()
        self.gpus_held.update(ids)
        self.memory_used_mb += need.memory_mb
        self.cpu_used += need.cpus
        return ids


def holds(worker: WorkerRecord, busy: bool) -> bool:
    if worker.kind != "container" or worker.standby:
        return False
    return worker.state in _HOLDING or (worker.state == S.THROTTLED and busy)


def snapshot(
    workers: Iterable[WorkerRecord],
    endpoints: dict[str, Endpoint],
    gpu_inventory: Sequence[str],
    settings: Settings,
    busy: set[str],
) -> Host:
    host = Host(
        gpu_inventory=tuple(gpu_inventory),
        memory_budget_mb=settings.worker_memory_budget_mb,
        cpu_budget=settings.worker_cpu_budget,
    )
    for w in workers:
        if not holds(w, w.id in busy):
            continue
        host.gpus_held.update(w.gpu_ids)
        endpoint = endpoints.get(w.endpoint_id)
        memory = endpoint.memoryInMb if endpoint is not None else None
        host.memory_used_mb += float(memory or DEFAULT_WORKER_MEMORY_MB)
        if not w.paused:
            host.cpu_used += worker_cpus(endpoint) if endpoint is not None else 1.0
    return host


def admit(
    planned: Sequence[tuple[Endpoint, Sequence[Action]]],
    host: Host,
    workers: dict[str, WorkerRecord],
) -> list[tuple[Endpoint, Action]]:
    """Every planned action, with capacity reserved for the starts that fit and the others THROTTLED.

    Actions that need no capacity come first, in their planned order; then THROTTLED workers (oldest
    first), due restarts, and new workers.
    """
    other: list[tuple[Endpoint, Action]] = []
    waiting: list[tuple[float, str, Endpoint, Unthrottle]] = []
    restarts: list[tuple[Endpoint, Restart]] = []
    starts: list[tuple[Endpoint, Start]] = []
    for endpoint, actions in planned:
        for action in actions:
            if isinstance(action, Unthrottle):
                w = workers.get(action.worker_id)
                waiting.append((w.created_at if w else 0.0, action.worker_id, endpoint, action))
            elif isinstance(action, Restart):
                restarts.append((endpoint, action))
            elif isinstance(action, Start):
                starts.append((endpoint, action))
            else:
                other.append((endpoint, action))
    out = list(other)
    for _, _, endpoint, unthrottle in sorted(waiting, key=lambda item: (item[0], item[1])):
        need = need_of(endpoint)
        refused = host.refusal(need)
        worker = workers.get(unthrottle.worker_id)
        if refused is None:
            out.append((endpoint, replace(unthrottle, gpu_ids=host.take(need))))
        elif worker is not None and worker.reason != refused:
            out.append((endpoint, Throttle(endpoint.id, refused, worker_id=unthrottle.worker_id)))
    for endpoint, restart in restarts:
        need = need_of(endpoint)
        refused = host.refusal(need)
        if refused is None:
            out.append((endpoint, replace(restart, gpu_ids=host.take(need))))
        else:
            out.append((endpoint, Throttle(endpoint.id, refused, worker_id=restart.worker_id)))
    for endpoint, start in starts:
        need = need_of(endpoint)
        refused = host.refusal(need)
        if refused is None:
            out.append((endpoint, replace(start, gpu_ids=host.take(need))))
        else:
            out.append((endpoint, Throttle(endpoint.id, refused)))
    return out
