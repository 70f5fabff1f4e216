"""PURE: compare what an endpoint should have with what is observed, and answer the actions to take.

``plan(endpoint, observed, stats, now, settings)`` reads worker records and container snapshots and
returns a list of actions; it changes nothing. Running it twice on the same input gives the same
answer, and acting on its answer then planning again gives no new action for the same situation
(the loop is level-triggered). Workers with an operation in flight (``busy``) are counted but left
alone until the operation ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from emulator.config import Settings
from emulator.models import Endpoint, WorkerState
from emulator.runtime.base import LABEL_VERSION, LABEL_WORKER, ContainerInfo, classify_exit
from emulator.store.jobs import QueueStats
from emulator.supervisor import policy
from emulator.workers.records import WorkerRecord

S = WorkerState
_DEAD = ("exited", "dead")


# --- actions -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    """Start a serving worker: a standby container when ``standby_id`` is set, else a new worker."""

    endpoint_id: str
    reason: str
    standby_id: str | None = None


@dataclass(frozen=True)
class CreateStandby:
    endpoint_id: str


@dataclass(frozen=True)
class Restart:
    """An UNHEALTHY worker whose retry is due: replace its container."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class Fail:
    """The worker is lost: UNHEALTHY, its jobs requeued; ``kill`` a container still running."""

    worker_id: str
    reason: str
    with_logs: bool = True
    kill: bool = False


@dataclass(frozen=True)
class Drain:
    """Take no new job; the worker is removed once it holds none."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class Remove:
    """Stop and remove the container, requeue anything it still holds, forget the worker."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class MarkOutdated:
    worker_id: str
    reason: str


@dataclass(frozen=True)
class Adopt:
    """After a control-plane restart: a container that matches its worker record is kept."""

    worker_id: str
    container_id: str


@dataclass(frozen=True)
class RemoveContainer:
    """A container of this control plane with no (matching) worker record: never leak it."""

    container_id: str
    reason: str


Action = Start | CreateStandby | Restart | Fail | Drain | Remove | MarkOutdated | Adopt | RemoveContainer


@dataclass(frozen=True)
class Observed:
    """One worker record with its container as last seen (None: no such container)."""

    worker: WorkerRecord
    container: ContainerInfo | None
    busy: bool = False


# --- the plan ---------------------------------------------------------------------------------------
def _health(o: Observed, now: float, settings: Settings) -> Fail | None:
    """A Fail when a worker that should be alive is not (dead container, start-up timeout, silence)."""
    w, c = o.worker, o.container
    if c is None:
        return Fail(w.id, "its container disappeared", with_logs=False)
    if c.status in _DEAD:
        what = classify_exit(c.exit_code, c.oom_killed)
        detail = f" ({c.error})" if c.error else ""
        return Fail(w.id, f"container {what}{detail}")
    if c.status == "created":
        return Fail(w.id, "its container was created but never started", with_logs=False)
    if w.state == S.INITIALIZING and w.ready_at is None and w.started_at is not None:
        waited = now - w.started_at
        if waited > settings.startup_timeout_s:
            return Fail(
                w.id,
                f"start-up timed out: no contact with the control plane within "
                f"{settings.startup_timeout_s:g}s (startup_timeout_s)",
                kill=True,
            )
    if w.state in (S.IDLE, S.RUNNING) and not w.paused:
        last = w.last_seen_at or w.ready_at or w.started_at
        if last is not None and now - last > settings.worker_lost_after_s:
            return Fail(
                w.id,
                f"worker stopped answering: no ping or request for {now - last:.1f}s "
                f"(worker_lost_after_s={settings.worker_lost_after_s:g})",
                kill=True,
            )
    return None


def plan(
    endpoint: Endpoint, observed: Sequence[Observed], stats: QueueStats, now: float, settings: Settings
) -> list[Action]:
    actions: list[Action] = []
    serving = healthy = idle = starting = 0
    standbys: list[WorkerRecord] = []
    busy_standbys = 0
    unhealthy_due: list[WorkerRecord] = []
    idle_since: list[tuple[str, float]] = []
    recycled = 0
    by_state: dict[str, list[WorkerRecord]] = {}

    for o in sorted(observed, key=lambda o: (o.worker.created_at, o.worker.id)):
        w, c = o.worker, o.container
        if w.kind != "container":
            continue
        if w.standby:
            if o.busy:
                busy_standbys += 1
            elif w.version != endpoint.version:
                actions.append(
                    Remove(w.id, f"standby container of version {w.version} replaced by {endpoint.version}")
                )
            elif c is None or c.status != "created":
                state = "is gone" if c is None else f"is {c.status}"
                actions.append(Remove(w.id, f"standby container {state}"))
            else:
                standbys.append(w)
            continue
        if o.busy:
            if not w.stopping:
                serving += 1
                if w.state == S.INITIALIZING:
                    starting += 1
                    healthy += 1
            continue
        if w.stopping:
            if not w.job_ids or c is None or c.status in _DEAD:
                actions.append(Remove(w.id, w.reason or "drained"))
            continue
        if w.version < endpoint.version:
            reason = f"endpoint version {endpoint.version} replaces version {w.version}"
            if w.state != S.OUTDATED:
                actions.append(MarkOutdated(w.id, reason))
            if not w.job_ids or c is None or c.status in _DEAD:
                actions.append(Remove(w.id, f"outdated: {reason}"))
            continue
        if w.state == S.OUTDATED:  # the version moved back: treat as outdated all the same
            if not w.job_ids:
                actions.append(Remove(w.id, "outdated"))
            continue
        if w.state == S.UNHEALTHY:
            serving += 1
            if w.next_retry_at is not None and now >= w.next_retry_at:
                unhealthy_due.append(w)
            else:
                by_state.setdefault(w.state.value, []).append(w)
            continue
        if w.state == S.THROTTLED:  # waits for capacity (no container): holds its place
            serving += 1
            continue
        if w.container_id is None:
            actions.append(Remove(w.id, "its container was never created (creation interrupted)"))
            continue
        if c is not None and c.status in _DEAD and w.refresh_requested:
            # it asked to be recycled (stopPod) and went: expected, whatever its exit code, not a crash
            what = classify_exit(c.exit_code, c.oom_killed)
            actions.append(Remove(w.id, f"recycled at the worker's request (container {what})"))
            recycled += 1
            continue
        failure = _health(o, now, settings)
        if failure is not None:
            actions.append(failure)
            serving += 1  # it restarts in place
            continue
        if w.refresh_requested:
            if not w.job_ids:
                actions.append(Remove(w.id, "recycled at the worker's request (stopPod)"))
                recycled += 1
            continue  # finishing its last job: no longer a serving worker
        serving += 1
        healthy += 1
        by_state.setdefault(w.state.value, []).append(w)
        if w.state == S.IDLE:
            idle += 1
            idle_since.append((w.id, w.state_since))
        elif w.state == S.INITIALIZING:
            starting += 1

    # crashed workers due for a restart: restarted while wanted, removed when not
    for w in unhealthy_due:
        if serving > endpoint.workersMax:
            actions.append(Remove(w.id, f"not restarted: workersMax lowered to {endpoint.workersMax}"))
            serving -= 1
        elif policy.restart_needed(endpoint, stats, healthy):
            actions.append(Restart(w.id, f"restart {w.restarts + 1} after: {w.reason or 'failure'}"))
            healthy += 1
            starting += 1
        else:
            actions.append(Remove(w.id, "not restarted: no queued work and workersMin is met"))
            serving -= 1

    # too many workers (workersMax lowered): the least useful go first, running ones drain
    over = serving - endpoint.workersMax
    if over > 0:
        for w in by_state.get(S.UNHEALTHY.value, [])[:over]:
            actions.append(Remove(w.id, f"workersMax lowered to {endpoint.workersMax}"))
            serving -= 1
        over = serving - endpoint.workersMax
    if over > 0:
        order = [S.INITIALIZING.value, S.IDLE.value, S.RUNNING.value]
        victims = [w for state in order for w in reversed(by_state.get(state, []))][:over]
        for w in victims:
            reason = f"workersMax lowered to {endpoint.workersMax}"
            actions.append(Drain(w.id, reason) if w.job_ids else Remove(w.id, reason))
            serving -= 1
            healthy -= 1
            if w.state == S.IDLE:
                idle_since = [(wid, t) for wid, t in idle_since if wid != w.id]

    # scale up: workersMin, the scaler, and a replacement for each recycled worker
    capacity = policy.Capacity(serving=serving, idle=idle, starting=starting)
    add = policy.to_add(endpoint, stats, capacity)
    add = max(add, min(recycled, endpoint.workersMax - serving))
    for i in range(add):
        reason = _start_reason(endpoint, stats, serving + i)
        if standbys:
            actions.append(Start(endpoint.id, reason, standby_id=standbys.pop(0).id))
        else:
            actions.append(Start(endpoint.id, reason))
    serving += add

    # scale down: idle workers past idleTimeout, above the floor
    if add == 0:
        keep = policy.floor(endpoint, stats)
        for wid in policy.idle_to_stop(endpoint, idle_since, healthy, keep, now):
            actions.append(Remove(wid, f"idle for {endpoint.idleTimeout:g}s (idleTimeout)"))

    # standby containers (extraWorkers)
    have = len(standbys) + busy_standbys
    target = policy.standby_target(endpoint, serving)
    cap = policy.standby_cap(endpoint)
    if have < target:
        actions.extend(CreateStandby(endpoint.id) for _ in range(target - have))
    elif have > cap:
        for w in standbys[: have - cap]:
            actions.append(Remove(w.id, f"standby not needed (extraWorkers={endpoint.extraWorkers})"))
    return actions


def _start_reason(endpoint: Endpoint, stats: QueueStats, serving: int) -> str:
    if serving < endpoint.workersMin:
        return f"workersMin is {endpoint.workersMin}"
    if endpoint.scalerType == "REQUEST_COUNT":
        return (
            f"REQUEST_COUNT: {stats.in_queue_scaling} queued + {stats.in_progress} in progress "
            f"/ scalerValue {endpoint.scalerValue:g}"
        )
    if stats.in_queue_scaling:
        return f"QUEUE_DELAY: a job has waited {stats.oldest_scaling_wait_s:.1f}s > {endpoint.scalerValue:g}s"
    return "replaces a recycled worker"


# --- leftovers ------------------------------------------------------------------------------------
def plan_adoption(
    containers: Iterable[ContainerInfo], workers: Iterable[WorkerRecord], endpoint_versions: dict[str, int]
) -> list[Action]:
    """After a restart: keep containers that match their worker record, remove every other one.

    A worker record of a container-backed worker whose container is gone is removed too (its jobs
    are requeued by the caller). Records of versions the endpoint has moved past are kept: the loop
    drains them like any outdated worker.
    """
    actions: list[Action] = []
    records = {w.id: w for w in workers if w.kind == "container"}
    matched: set[str] = set()
    for c in containers:
        wid = c.labels.get(LABEL_WORKER, "")
        w = records.get(wid)
        if w is None:
            actions.append(RemoveContainer(c.id, "no worker record for it"))
        elif w.endpoint_id not in endpoint_versions:
            actions.append(RemoveContainer(c.id, "its endpoint no longer exists"))
        elif c.labels.get(LABEL_VERSION) != str(w.version):
            actions.append(RemoveContainer(c.id, f"its version label differs from the record's {w.version}"))
        elif w.container_id != c.id:
            actions.append(RemoveContainer(c.id, "its worker record names another container"))
        elif wid in matched:
            actions.append(RemoveContainer(c.id, "a duplicate container for the same worker"))
        else:
            matched.add(wid)
            actions.append(Adopt(wid, c.id))
    for wid, w in records.items():
        if wid in matched:
            continue
        if w.endpoint_id not in endpoint_versions:
            actions.append(Remove(wid, "its endpoint no longer exists"))
        elif w.state != S.UNHEALTHY and w.state != S.THROTTLED:
            actions.append(Remove(wid, "its container is gone (found at start-up)"))
    return actions


def leaked_containers(
    containers: Iterable[ContainerInfo], owned: dict[str, str | None], busy: set[str]
) -> list[RemoveContainer]:
    """Containers of this control plane that no worker owns (``owned``: worker id -> its container id).

    A worker with an operation in flight (``busy``) may be creating or replacing its container: its
    containers are left alone until the operation ends.
    """
    out = []
    for c in containers:
        wid = c.labels.get(LABEL_WORKER, "")
        if wid in busy:
            continue
        if wid not in owned:
            out.append(RemoveContainer(c.id, f"worker {wid or '?'} no longer exists"))
        elif owned[wid] != c.id:
            out.append(RemoveContainer(c.id, f"worker {wid} has another container"))
    return out
