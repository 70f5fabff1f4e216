"""PURE: rolling updates. What happens to workers of an older version when the endpoint's version moves.

A change to what workers run (``imageName``, ``env``, ``gpuCount``, ...) bumps the endpoint's
``version``. Then, on every reconcile tick:

* **Budget.** At most ``max(1, ceil(10% of workersMax))`` old workers are being replaced at once.
  A replacement counts from the moment its old worker is picked (it drains: OUTDATED, no new job,
  finishes what it holds, is removed; its new worker is started at once, in its place) until its
  new worker is ready: ``in flight = max(old workers draining, new-version workers not yet ready)``.
* **Who serves meanwhile.** Until a worker of the new version is ready, old workers that have not
  been picked keep their state (IDLE / RUNNING, ``isStale: true`` in the workers list) and keep
  taking jobs, so the endpoint never stops serving. From the moment a new-version worker is ready,
  every old worker is reported OUTDATED and takes no new job: new jobs go to updated workers, the
  old ones finish what they hold and wait their turn.
* **Halt.** When a new-version worker fails before it ever became ready (its container exits, its
  start-up times out, Docker refuses to start it), the rollout stops picking old workers: those not
  yet replaced stay and keep taking jobs (none of the new version is ready, so they were never
  marked OUTDATED). The endpoint's ``rollout`` says why: ``{"status": "halted", "version": N,
  "reason": "the new version's workers fail to start: <exit code, last log lines>"}``. A later
  PATCH (a new version) clears it; a new-version worker that does become ready resumes the rollout.
* Old workers that do not serve anyway (still starting, crashed, THROTTLED, paused) are removed at
  once, outside the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator.models import Endpoint, WorkerState
from emulator.supervisor.actions import Action, Drain, MarkOutdated, Observed, Remove
from emulator.workers.records import WorkerRecord

S = WorkerState
_DEAD = ("exited", "dead")


def budget(endpoint: Endpoint) -> int:
    """How many old workers may be replaced at once: max(1, ceil(10% of workersMax))."""
    return max(1, math.ceil(endpoint.workersMax * 0.1))


def _current(endpoint: Endpoint, observed: Sequence[Observed]) -> list[Observed]:
    return [o for o in observed if o.worker.version >= endpoint.version and not o.worker.stopping]


def _ready(o: Observed) -> bool:
    return o.worker.state in (S.IDLE, S.RUNNING) and o.worker.ready_at is not None


def _failed_start(o: Observed) -> bool:
    return o.worker.state == S.UNHEALTHY and o.worker.ready_at is None


# --- the endpoint's rollout status ------------------------------------------------------------------
def status(endpoint: Endpoint, observed: Sequence[Observed]) -> dict[str, Any] | None:
    """The ``rollout`` the endpoint should show (``observed``: its serving container workers).

    None while no rollout ever ran; "rolling", "halted" (with the reason) or "completed" after.
    """
    previous = endpoint.rollout
    same_version = previous is not None and previous.get("version") == endpoint.version
    old = [o for o in observed if o.worker.version < endpoint.version]
    current = _current(endpoint, observed)
    pending = [o for o in current if not _ready(o) and o.worker.state != S.THROTTLED]
    ongoing = same_version and previous is not None and previous.get("status") in ("rolling", "halted")
    if not old and not (ongoing and pending):
        if ongoing:
            return {"status": "completed", "version": endpoint.version}
        return previous
    failed = next((o.worker for o in current if _failed_start(o)), None)
    base: dict[str, Any] = {"version": endpoint.version, "budget": budget(endpoint), "oldWorkers": len(old)}
    if failed is not None:
        reason = f"the new version's workers fail to start: {failed.reason or 'unknown reason'}"
        return {"status": "halted", **base, "reason": reason, "worker": failed.id}
    if (
        same_version
        and previous is not None
        and previous.get("status") == "halted"
        and not any(_ready(o) for o in current)
    ):
        return {**previous, **base, "status": "halted"}  # the failed worker may be gone: stay halted
    return {"status": "rolling", **base}


def halted(endpoint: Endpoint, observed: Sequence[Observed]) -> bool:
    wanted = status(endpoint, observed)
    return wanted is not None and wanted.get("status") == "halted"


# --- what to do with the old workers ----------------------------------------------------------------
@dataclass
class RolloutPlan:
    actions: list[Action] = field(default_factory=list)
    serving: list[Observed] = field(default_factory=list)  # old, not picked, still taking jobs
    waiting: int = 0  # old, OUTDATED, waiting their turn: they hold a place but take nothing
    replaced: int = 0  # old workers picked now: each one's place goes to a new-version worker


def plan_old(endpoint: Endpoint, observed: Sequence[Observed]) -> RolloutPlan:
    """Decide for every worker older than the endpoint's version (``observed``: all serving workers)."""
    out = RolloutPlan()
    draining, candidates = _sort_old(endpoint, observed, out)
    current = _current(endpoint, observed)
    not_ready = sum(1 for o in current if o.worker.state in (S.INITIALIZING, S.UNHEALTHY))
    new_ready = any(_ready(o) for o in current)
    in_flight = max(draining, not_ready)
    slots = 0 if halted(endpoint, observed) else max(0, budget(endpoint) - in_flight)
    candidates.sort(key=lambda o: (len(o.worker.job_ids), o.worker.created_at, o.worker.id))
    for i, o in enumerate(candidates):
        w = o.worker
        if i < slots:
            if w.state != S.OUTDATED:
                out.actions.append(MarkOutdated(w.id, _replaces(endpoint, w), replacing=True))
            elif w.job_ids:
                out.actions.append(Drain(w.id, f"rolling update: {_replaces(endpoint, w)}"))
            if not w.job_ids:
                out.actions.append(Remove(w.id, f"outdated: {_replaces(endpoint, w)}"))
            out.replaced += 1  # its place is free from now on: a new-version worker takes it
        elif new_ready or w.state == S.OUTDATED:
            if w.state != S.OUTDATED:
                waiting = f"{_replaces(endpoint, w)}; waits its turn in the rolling update"
                out.actions.append(MarkOutdated(w.id, waiting, replacing=False))
            out.waiting += 1
        else:
            out.serving.append(o)
    return out


def _replaces(endpoint: Endpoint, w: WorkerRecord) -> str:
    return f"endpoint version {endpoint.version} replaces version {w.version}"


def _sort_old(
    endpoint: Endpoint, observed: Sequence[Observed], out: RolloutPlan
) -> tuple[int, list[Observed]]:
    """The old workers: those already leaving (counted as draining, removed once empty), those that are
    not live (removed now), and the candidates for replacement (returned with the draining count)."""
    draining = 0
    candidates: list[Observed] = []
    for o in observed:
        w, c = o.worker, o.container
        if w.version >= endpoint.version:
            continue
        if o.busy:  # an operation in flight (removal, failure, pause): counted, left alone
            if w.stopping:
                draining += 1
            else:
                out.waiting += 1
            continue
        if w.stopping:
            draining += 1
            if not w.job_ids or c is None or c.status in _DEAD:
                out.actions.append(Remove(w.id, w.reason or f"outdated: {_replaces(endpoint, w)}"))
            continue
        live = c is not None and c.status == "running" and not w.paused
        if not live or w.state not in (S.IDLE, S.RUNNING, S.OUTDATED):
            if w.state != S.OUTDATED:
                out.actions.append(MarkOutdated(w.id, _replaces(endpoint, w)))
            out.actions.append(Remove(w.id, f"outdated: {_replaces(endpoint, w)}"))
            continue
        candidates.append(o)
    return draining, candidates
