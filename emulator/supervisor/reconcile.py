"""PURE: compare what an endpoint should have with what is observed, and answer the actions to take.

``plan(endpoint, observed, stats, now, settings)`` reads worker records and container snapshots and
returns a list of actions; it changes nothing. Running it twice on the same input gives the same
answer, and acting on its answer then planning again gives no new action for the same situation
(the loop is level-triggered). Workers with an operation in flight (``busy``) are counted but left
alone until the operation ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from emulator.config import Settings
from emulator.models import Endpoint, WorkerState
from emulator.runtime.base import DOCKER_CAPABILITIES, Capabilities, ContainerInfo, classify_exit
from emulator.store.jobs import QueueStats
from emulator.supervisor import policy, rollout
from emulator.supervisor.actions import (
    Action,
    Adopt,
    CreateStandby,
    Drain,
    Fail,
    MarkOutdated,
    Observed,
    Pause,
    Placed,
    Remove,
    RemoveContainer,
    Restart,
    Resume,
    SetRollout,
    Start,
    Throttle,
    Unthrottle,
)
from emulator.supervisor.leftovers import leaked_containers, plan_adoption
from emulator.workers.records import WorkerRecord

S = WorkerState
_DEAD = ("exited", "dead")
NO_PAUSE = "this runtime cannot pause a worker"
UNSCHEDULABLE = "Unschedulable"  # ContainerInfo.pending of a container a cluster engine cannot place yet


def queued_reason(c: ContainerInfo | None) -> str | None:
    """The engine's message when ``c`` waits for room (a Pod the scheduler cannot place), else None."""
    if c is None or c.status != "created" or not (c.pending or "").startswith(UNSCHEDULABLE):
        return None
    message = (c.pending or "")[len(UNSCHEDULABLE) :].lstrip(": ")
    return message or "the engine has no room for it yet"


__all__ = [  # the actions are re-exported: callers and tests import them from here
    "Action",
    "Adopt",
    "CreateStandby",
    "Drain",
    "Fail",
    "MarkOutdated",
    "Observed",
    "Pause",
    "Placed",
    "Remove",
    "RemoveContainer",
    "Restart",
    "Resume",
    "SetRollout",
    "Start",
    "Throttle",
    "Unthrottle",
    "leaked_containers",
    "plan",
    "plan_adoption",
]


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
    if c.status == "created" and c.pending is None:
        return Fail(w.id, "its container was created but never started", with_logs=False)
    if c.status == "created" and c.pending is not None and c.pending.startswith("Unschedulable"):
        return None  # a cluster engine queues it until a node has room: no start-up clock yet
    if w.state == S.INITIALIZING and w.ready_at is None and w.started_at is not None:
        waited = now - w.started_at
        if waited > settings.startup_timeout_s:
            contact = (
                "no contact with the control plane"
                if w.health is None
                else "its health check never answered 200"
            )
            answer = "" if w.health is None else f"; last health check: {w.health}"
            return Fail(
                w.id,
                f"start-up timed out: {contact} within {settings.startup_timeout_s:g}s (startup_timeout_s){answer}",
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


def _ended_job_stop(w: WorkerRecord, now: float, settings: Settings) -> Remove | None:
    """A worker still running the handler of a job that ended (timeout, cancel, TTL) past
    ``ended_job_grace_s``: stopped and replaced, with the reason ("execution timeout: worker stopped")."""
    if not w.ending:
        return None
    since = min(w.ending.values())
    if now - since < settings.ended_job_grace_s:
        return None
    jobs = ", ".join(sorted(w.ending))
    return Remove(
        w.id,
        f"{w.ending_reason or 'job ended'}: worker stopped (its handler still ran {jobs} "
        f"{settings.ended_job_grace_s:g}s after the job ended; ended_job_grace_s)",
    )


@dataclass
class _Tally:
    """What the endpoint has, counted while walking its workers (standby containers excluded)."""

    serving: int = 0  # every worker that holds a place
    healthy: int = 0  # ready or about to be: takes work now or soon
    idle: int = 0
    starting: int = 0
    recycled: int = 0  # removed at their own request (stopPod): each is replaced
    idle_since: list[tuple[str, float]] = field(default_factory=list)
    by_state: dict[str, list[WorkerRecord]] = field(default_factory=dict)
    unhealthy_due: list[WorkerRecord] = field(default_factory=list)
    throttled: list[WorkerRecord] = field(default_factory=list)
    queued: dict[str, str] = field(default_factory=dict)  # worker id -> the engine's reason (in throttled)
    paused: list[WorkerRecord] = field(default_factory=list)
    old: set[str] = field(default_factory=set)  # older-version workers still serving (rollout)


def plan(
    endpoint: Endpoint,
    observed: Sequence[Observed],
    stats: QueueStats,
    now: float,
    settings: Settings,
    caps: Capabilities = DOCKER_CAPABILITIES,
) -> list[Action]:
    """The actions that bring ``endpoint``'s workers where they should be. ``caps``: what the runtime can
    do (without ``pause`` FlashBoot removes idle workers, saying why; without ``standby`` there are no
    standby containers)."""
    actions: list[Action] = []
    t = _Tally()
    ordered = sorted(observed, key=lambda o: (o.worker.created_at, o.worker.id))
    ordered = [o for o in ordered if o.worker.kind == "container"]
    standbys, busy_standbys = _standbys(endpoint, [o for o in ordered if o.worker.standby], actions)
    serving = [o for o in ordered if not o.worker.standby]

    roll = rollout.plan_old(endpoint, serving)
    actions.extend(roll.actions)
    t.serving += roll.waiting
    t.old = {o.worker.id for o in roll.serving}
    old_ids = {o.worker.id for o in roll.serving}
    for o in serving:
        if o.worker.version >= endpoint.version or o.worker.id in old_ids:
            _count(o, now, settings, t, actions, caps)

    _restarts(endpoint, stats, t, actions)
    _throttled(endpoint, stats, t, actions)
    _over_max(endpoint, t, actions)
    resumed = _flashboot(endpoint, stats, now, settings, t, actions)

    # scale up: workersMin, the scaler, and a replacement for each recycled or replaced worker
    capacity = policy.Capacity(serving=t.serving, idle=t.idle, starting=t.starting)
    add = policy.to_add(endpoint, stats, capacity)
    add = max(add, min(t.recycled + roll.replaced, endpoint.workersMax - t.serving))
    for i in range(add):
        reason = _start_reason(endpoint, stats, t.serving + i)
        if standbys:
            actions.append(Start(endpoint.id, reason, standby_id=standbys.pop(0).id))
        else:
            actions.append(Start(endpoint.id, reason))
    t.serving += add

    # scale down: idle workers past idleTimeout, above the floor (FlashBoot pauses them instead)
    if add == 0 and resumed == 0:
        keep = policy.floor(endpoint, stats)
        for wid in policy.idle_to_stop(endpoint, t.idle_since, t.healthy, keep, now):
            reason = f"idle for {endpoint.idleTimeout:g}s (idleTimeout)"
            if endpoint.flashboot and wid not in t.old and caps.pause:
                actions.append(Pause(wid, f"{reason}: paused (FlashBoot)"))
            elif endpoint.flashboot and wid not in t.old:
                actions.append(Remove(wid, f"{reason}: removed, not paused (FlashBoot: {NO_PAUSE})"))
            else:
                actions.append(Remove(wid, reason))

    # standby containers (extraWorkers)
    have = len(standbys) + busy_standbys
    target = policy.standby_target(endpoint, t.serving) if caps.standby else 0
    cap = policy.standby_cap(endpoint) if caps.standby else 0
    if have < target:
        actions.extend(CreateStandby(endpoint.id) for _ in range(target - have))
    elif have > cap:
        for w in standbys[: have - cap]:
            actions.append(Remove(w.id, f"standby not needed (extraWorkers={endpoint.extraWorkers})"))
    return actions


def _standbys(
    endpoint: Endpoint, observed: Sequence[Observed], actions: list[Action]
) -> tuple[list[WorkerRecord], int]:
    """Usable standby containers (oldest first) and how many have an operation in flight."""
    usable: list[WorkerRecord] = []
    busy = 0
    for o in observed:
        w, c = o.worker, o.container
        if o.busy:
            busy += 1
        elif w.version != endpoint.version:
            actions.append(
                Remove(w.id, f"standby container of version {w.version} replaced by {endpoint.version}")
            )
        elif c is None or c.status != "created":
            state = "is gone" if c is None else f"is {c.status}"
            actions.append(Remove(w.id, f"standby container {state}"))
        else:
            usable.append(w)
    return usable, busy


def _count(
    o: Observed, now: float, settings: Settings, t: _Tally, actions: list[Action], caps: Capabilities
) -> None:
    """One serving worker: its health, and what it counts for. Each helper handles one family of
    cases and says whether it did (``True``: nothing more to count)."""
    w = o.worker
    if o.busy:
        if not w.stopping:
            t.serving += 1
            if w.state in (S.INITIALIZING, S.THROTTLED):
                t.starting += 1
                t.healthy += 1
        return
    if _count_leaving(o, now, settings, t, actions):
        return
    if caps.places_workers and _count_queued(o, t, actions):
        return
    if _count_waiting(w, now, t):
        return
    _count_live(o, now, settings, t, actions)


def _count_queued(o: Observed, t: _Tally, actions: list[Action]) -> bool:
    """An engine that places workers: a container it cannot place yet makes the worker THROTTLED with the
    engine's own reason (the scheduler's message); once placed, the worker is INITIALIZING again."""
    w, c = o.worker, o.container
    reason = queued_reason(c)
    if reason is not None and w.state in (S.INITIALIZING, S.THROTTLED):
        t.serving += 1
        t.throttled.append(w)
        t.queued[w.id] = reason
        return True
    if w.state == S.THROTTLED and w.container_id and c is not None and c.status not in _DEAD:
        actions.append(Placed(w.id, f"placed by the engine ({c.pending or c.status})"))
        t.serving += 1
        t.healthy += 1
        t.starting += 1
        return True
    return False


def _count_leaving(o: Observed, now: float, settings: Settings, t: _Tally, actions: list[Action]) -> bool:
    """A worker on its way out: an ended job's grace passed, stopping, or outdated."""
    w, c = o.worker, o.container
    stop = _ended_job_stop(w, now, settings)
    if stop is not None:
        actions.append(stop)
        if not w.stopping and w.state != S.OUTDATED:
            t.recycled += 1  # replaced at once: the next job gets a fresh worker
        return True
    if w.stopping:
        if not w.job_ids or c is None or c.status in _DEAD:
            actions.append(Remove(w.id, w.reason or "drained"))
        return True
    if w.state == S.OUTDATED:  # the version moved back: treat as outdated all the same
        if not w.job_ids:
            actions.append(Remove(w.id, "outdated"))
        return True
    return False


def _count_waiting(w: WorkerRecord, now: float, t: _Tally) -> bool:
    """A worker with no container running that holds its place: UNHEALTHY (back-off) or THROTTLED."""
    if w.state == S.UNHEALTHY:
        t.serving += 1
        if w.next_retry_at is not None and now >= w.next_retry_at:
            t.unhealthy_due.append(w)
        else:
            t.by_state.setdefault(w.state.value, []).append(w)
        return True
    if w.state == S.THROTTLED:  # waits for capacity (no container running): holds its place
        t.serving += 1
        if w.next_retry_at is None or now >= w.next_retry_at:  # (a throttle fault sets a time)
            t.throttled.append(w)
        return True
    return False


def _count_live(o: Observed, now: float, settings: Settings, t: _Tally, actions: list[Action]) -> None:
    """A worker that should have a container: recycled, failed, paused or serving."""
    w, c = o.worker, o.container
    if w.container_id is None:
        actions.append(Remove(w.id, "its container was never created (creation interrupted)"))
        return
    if c is not None and c.status in _DEAD and w.refresh_requested:
        # it asked to be recycled (stopPod) and went: expected, whatever its exit code, not a crash
        what = classify_exit(c.exit_code, c.oom_killed)
        actions.append(Remove(w.id, f"recycled at the worker's request (container {what})"))
        t.recycled += 1
        return
    failure = _health(o, now, settings)
    if failure is not None:
        actions.append(failure)
        t.serving += 1  # it restarts in place
        return
    if w.refresh_requested:
        if not w.job_ids:
            actions.append(Remove(w.id, "recycled at the worker's request (stopPod)"))
            t.recycled += 1
        return  # finishing its last job: no longer a serving worker
    t.serving += 1
    if w.paused:  # FlashBoot: holds its place, takes nothing until resumed
        t.paused.append(w)
        return
    t.healthy += 1
    t.by_state.setdefault(w.state.value, []).append(w)
    if w.state == S.IDLE:
        t.idle += 1
        t.idle_since.append((w.id, w.state_since))
    elif w.state == S.INITIALIZING:
        t.starting += 1


def _restarts(endpoint: Endpoint, stats: QueueStats, t: _Tally, actions: list[Action]) -> None:
    """Crashed workers due for a restart: restarted while wanted, removed when not."""
    for w in t.unhealthy_due:
        if t.serving > endpoint.workersMax:
            actions.append(Remove(w.id, f"not restarted: workersMax lowered to {endpoint.workersMax}"))
            t.serving -= 1
        elif policy.restart_needed(endpoint, stats, t.healthy):
            actions.append(Restart(w.id, f"restart {w.restarts + 1} after: {w.reason or 'failure'}"))
            t.healthy += 1
            t.starting += 1
        else:
            actions.append(Remove(w.id, "not restarted: no queued work and workersMin is met"))
            t.serving -= 1


def _throttled(endpoint: Endpoint, stats: QueueStats, t: _Tally, actions: list[Action]) -> None:
    """THROTTLED workers: started when capacity frees (admission decides), removed when not wanted.

    One whose container the engine queues (``t.queued``) is started by the engine: it only gets the
    engine's latest reason."""
    for w in t.throttled:
        queued = t.queued.get(w.id)
        if t.serving > endpoint.workersMax:
            actions.append(Remove(w.id, f"not started: workersMax lowered to {endpoint.workersMax}"))
            t.serving -= 1
        elif (t.healthy < policy.floor(endpoint, stats) or stats.in_queue > 0) and queued is not None:
            if w.state != S.THROTTLED or w.reason != queued:
                actions.append(Throttle(endpoint.id, queued, worker_id=w.id))
        elif t.healthy < policy.floor(endpoint, stats) or stats.in_queue > 0:
            actions.append(Unthrottle(w.id, "capacity is available"))
        else:
            actions.append(Remove(w.id, "not started: no queued work and workersMin is met"))
            t.serving -= 1


def _over_max(endpoint: Endpoint, t: _Tally, actions: list[Action]) -> None:
    """Too many workers (workersMax lowered): the least useful go first, running ones drain."""
    over = t.serving - endpoint.workersMax
    if over <= 0:
        return
    for w in (t.by_state.get(S.UNHEALTHY.value, []) + list(t.paused))[:over]:
        actions.append(Remove(w.id, f"workersMax lowered to {endpoint.workersMax}"))
        t.serving -= 1
        if w in t.paused:
            t.paused.remove(w)
    over = t.serving - endpoint.workersMax
    if over <= 0:
        return
    order = [S.INITIALIZING.value, S.IDLE.value, S.RUNNING.value]
    victims = [w for state in order for w in reversed(t.by_state.get(state, []))][:over]
    for w in victims:
        reason = f"workersMax lowered to {endpoint.workersMax}"
        actions.append(Drain(w.id, reason) if w.job_ids else Remove(w.id, reason))
        t.serving -= 1
        t.healthy -= 1
        if w.state == S.IDLE:
            t.idle -= 1
            t.idle_since = [(wid, since) for wid, since in t.idle_since if wid != w.id]


def _flashboot(
    endpoint: Endpoint, stats: QueueStats, now: float, settings: Settings, t: _Tally, actions: list[Action]
) -> int:
    """Paused workers: removed after flashboot_pause_s (or when FlashBoot is off), resumed for work."""
    kept = []
    for w in t.paused:
        if not endpoint.flashboot:
            actions.append(Remove(w.id, "paused worker removed: flashboot is off"))
            t.serving -= 1
        elif now - w.state_since >= settings.flashboot_pause_s:
            actions.append(Remove(w.id, f"paused for {settings.flashboot_pause_s:g}s (flashboot_pause_s)"))
            t.serving -= 1
        else:
            kept.append(w)
    kept.sort(key=lambda w: (-w.state_since, w.id))  # the most recently paused first
    capacity = policy.Capacity(serving=t.serving, idle=t.idle, starting=t.starting)
    n = policy.to_resume(endpoint, stats, capacity, t.healthy, len(kept))
    for w in kept[:n]:
        actions.append(Resume(w.id, f"work arrived: {stats.in_queue} queued"))
        t.starting += 1
        t.healthy += 1
    return n


def _start_reason(endpoint: Endpoint, stats: QueueStats, serving: int) -> str:
    if serving < endpoint.workersMin:
        return f"workersMin is {endpoint.workersMin}"
    if endpoint.scalerType == "REQUEST_COUNT":
        return (
            f"REQUEST_COUNT: {stats.in_queue_scaling} queued + {stats.in_progress} in progress "
            f"/ scalerValue {endpoint.scalerValue:g}"
        )
    if stats.in_queue_scaling and serving == 0:
        return f"scale from zero: {stats.in_queue_scaling} job(s) queued and no worker"  # (policy.to_add)
    if stats.in_queue_scaling and stats.oldest_scaling_wait_s > endpoint.scalerValue:
        return f"QUEUE_DELAY: a job has waited {stats.oldest_scaling_wait_s:.1f}s > {endpoint.scalerValue:g}s"
    return "replaces a recycled worker"
