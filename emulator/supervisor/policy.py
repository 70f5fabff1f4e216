"""PURE: how many workers an endpoint should have, which idle ones go, and when a crashed one restarts.

Worker kinds, as the emulator runs them
---------------------------------------
* **Active workers** (``workersMin``): always kept running, even with an empty queue. A worker that
  crashes is restarted (see back-off below); one that is removed is replaced at once.
* **Flex workers** (up to ``workersMax`` in all): started by the scaler when work waits, stopped when
  they have been IDLE for ``idleTimeout`` seconds while more than ``workersMin`` workers serve.
  The scaler never counts ``lowPriority`` jobs as a reason to add a worker (they run on whatever
  workers exist); it runs on every reconcile tick (``EMULATOR_RECONCILE_INTERVAL_S``, 0.25 s) and
  whenever a job is queued or finishes.

  - An endpoint scaled to zero starts one worker as soon as a (not lowPriority) job is queued:
    that job pays a cold start, not the queue delay too.
  - ``QUEUE_DELAY``: when the oldest queued (not lowPriority) job has waited longer than
    ``scalerValue`` seconds, workers are added, **as many as the queued jobs need at once** (one per
    queued job that no IDLE or starting worker will pick up), not one per check as RunPod does: a
    local emulator has no reason to make a burst wait several checks.
  - ``REQUEST_COUNT``: the endpoint wants ``ceil((inQueue + inProgress) / scalerValue)`` workers
    (lowPriority jobs left out of ``inQueue``); idle workers are not stopped below that number.

* **Extra workers** (``extraWorkers``, default 2): RunPod describes them as workers it may spin up
  during traffic spikes because their image is already cached on a host. Locally every image is
  cached, so the emulator gives the setting the meaning that actually saves time on one machine:
  up to ``extraWorkers`` **standby containers** are pre-created per endpoint (``docker create``,
  never started) while the endpoint can still grow (``workersMax`` above the number of serving
  workers). A scale-up takes a standby first and only has to ``docker start`` it, so its cold start
  skips the create step (``coldStart.createMs`` is 0 for such a job). Standby containers use no
  CPU or memory; they carry ``standby: true`` in ``GET /v1/endpoints/{id}/workers``, are never given
  a job, and are not counted in ``/health`` or against ``workersMax``. They are removed and
  re-created when the endpoint's version changes, and the surplus is removed when ``extraWorkers``
  or ``workersMax`` is lowered below their number. Set ``extraWorkers: 0`` to have none.

Restarts of crashed workers (``backoff``, per endpoint)
-------------------------------------------------------
A worker whose container dies, whose start-up times out, or that stops answering becomes UNHEALTHY
(its jobs go back to the queue with ``retries + 1``). The first restart of a crash loop is immediate;
then the delay grows ``initialDelayS * factor ** (n - 1)`` up to ``maxDelayS``. A worker that stayed
ready for ``resetAfterS`` before failing starts a new crash loop (``restarts`` counts the restarts of
the current loop). After ``giveUpAfterS`` of crash looping the worker stays UNHEALTHY with no next
retry (it still holds its place, so a broken image cannot make the emulator start ever more
containers); changing the endpoint (a new version) replaces it. A crashed flex worker that is no
longer needed when its retry comes (no queued work, ``workersMin`` met) is removed instead.

Recycling and new versions
--------------------------
A worker that reports a result with ``stopPod: true`` takes no new job, is stopped once it holds
none (its exit is not a crash, whatever the code) and replaced by a fresh worker. When a change
bumps the endpoint's ``version``, older workers are replaced by a rolling update, at most
``max(1, ceil(10% of workersMax))`` at a time (see ``rollout``): they become OUTDATED, take no new
job, finish the ones they hold, then go, and a worker of the new version takes each one's place.

Capacity (THROTTLED) and FlashBoot
----------------------------------
A worker that should run but does not fit on the host (no free GPU, the memory or CPU budget for
workers, the concurrent-start cap) waits THROTTLED with the reason and starts as soon as capacity
frees (see ``capacity``). GPU endpoints get no standby containers: a created container already pins
its GPUs. With ``flashboot: true`` an idle worker past ``idleTimeout`` is paused (``docker pause``)
instead of removed, for up to ``EMULATOR_FLASHBOOT_PAUSE_S``; it is reported IDLE with
``paused: true``, takes no job while paused, and is resumed first when work arrives.

On a runtime whose engine places workers (Kubernetes, ``Capabilities.places_workers``) the cluster's
scheduler is the admission: a worker whose Pod fits on no node is THROTTLED with the scheduler's message
and starts when the scheduler places it; such a runtime cannot pause (FlashBoot removes the idle worker,
saying so) nor keep standby containers (``extraWorkers`` makes none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from emulator.models import BackoffPolicy, Endpoint
from emulator.store.jobs import QueueStats


@dataclass(frozen=True)
class Capacity:
    """What the endpoint has right now (standby containers and leaving workers excluded)."""

    serving: int  # every worker that holds a place: starting, idle, running, unhealthy (restarting)
    idle: int = 0  # ready and waiting
    starting: int = 0  # started or about to start, not yet ready: will take work soon


def scaler_wants(endpoint: Endpoint, stats: QueueStats) -> int:
    """The number of workers the scaler asks for on its own (before clamping), given the queue."""
    if endpoint.scalerType == "REQUEST_COUNT":
        return math.ceil((stats.in_queue_scaling + stats.in_progress) / endpoint.scalerValue)
    return 0  # QUEUE_DELAY has no standing target: it adds workers when jobs wait (see to_add)


def floor(endpoint: Endpoint, stats: QueueStats) -> int:
    """Idle timeouts never take the number of healthy workers below this."""
    return max(endpoint.workersMin, min(endpoint.workersMax, scaler_wants(endpoint, stats)))


def to_add(endpoint: Endpoint, stats: QueueStats, capacity: Capacity) -> int:
    """How many workers to start now: workersMin first, then the scaler, never past workersMax."""
    want = endpoint.workersMin - capacity.serving
    if endpoint.scalerType == "REQUEST_COUNT":
        want = max(want, scaler_wants(endpoint, stats) - capacity.serving)
    elif stats.in_queue_scaling > 0 and capacity.serving == 0:
        # scaled to zero: the first job starts a worker at once (a cold start), as on RunPod;
        # the queue delay decides when to add more
        want = max(want, 1)
    if (
        endpoint.scalerType == "QUEUE_DELAY"
        and stats.in_queue_scaling > 0
        and stats.oldest_scaling_wait_s > endpoint.scalerValue
    ):
        # one worker per waiting job that no idle or starting worker will pick up
        want = max(want, stats.in_queue_scaling - capacity.idle - capacity.starting)
    room = endpoint.workersMax - capacity.serving
    return max(0, min(want, room))


def restart_needed(endpoint: Endpoint, stats: QueueStats, healthy: int) -> bool:
    """Whether a crashed worker due for restart is still wanted (else it is removed)."""
    return healthy < floor(endpoint, stats) or stats.in_queue > 0


def idle_to_stop(
    endpoint: Endpoint, idle_since: Sequence[tuple[str, float]], healthy: int, keep: int, now: float
) -> list[str]:
    """The idle workers to stop: idle for ``idleTimeout`` or more, longest idle first, down to ``keep``."""
    expired = sorted((since, wid) for wid, since in idle_since if now - since >= endpoint.idleTimeout)
    excess = max(0, healthy - keep)
    return [wid for _, wid in expired[:excess]]


def standby_target(endpoint: Endpoint, serving: int) -> int:
    """How many standby (created, not started) containers to keep: only while the endpoint can grow."""
    if endpoint.workersMax <= 0 or endpoint.gpuCount > 0:
        return 0
    return max(0, min(endpoint.extraWorkers, endpoint.workersMax - serving))


def standby_cap(endpoint: Endpoint) -> int:
    """More standby containers than this are removed (the settings were lowered)."""
    if endpoint.workersMax <= 0 or endpoint.gpuCount > 0:
        return 0
    return min(endpoint.extraWorkers, endpoint.workersMax)


def to_resume(endpoint: Endpoint, stats: QueueStats, capacity: Capacity, healthy: int, paused: int) -> int:
    """FlashBoot: how many paused workers to resume now, before any new worker is started.

    One per queued job (lowPriority ones too: resuming is not scaling out) that no idle or starting
    worker will pick up, and as many as the floor (workersMin, REQUEST_COUNT) is short of."""
    demand = max(0, stats.in_queue - capacity.idle - capacity.starting)
    short = max(0, floor(endpoint, stats) - healthy)
    return min(paused, max(demand, short))


# --- restarts --------------------------------------------------------------------------------------
def restart_delay_s(restarts_in_loop: int, backoff: BackoffPolicy) -> float:
    """Delay before the next restart when ``restarts_in_loop`` restarts of this crash loop were made.

    0 restarts made: restart at once; then initialDelayS, initialDelayS * factor, ... up to maxDelayS.
    """
    if restarts_in_loop <= 0:
        return 0.0
    exponent = min(restarts_in_loop - 1, 64)  # factor ** 64 already exceeds any cap
    return float(min(backoff.maxDelayS, backoff.initialDelayS * backoff.factor**exponent))


@dataclass(frozen=True)
class FailurePlan:
    restarts: int  # restarts made in the current crash loop (reset when the worker had been stable)
    first_failure_at: float  # when the current crash loop began
    next_retry_at: float | None  # None: gave up
    note: str  # appended to the reason ("restart in 4.0s", "gave up after ...")


def on_failure(
    restarts: int,
    first_failure_at: float | None,
    ready_at: float | None,
    now: float,
    backoff: BackoffPolicy,
) -> FailurePlan:
    """What a failure means for the restart schedule of a worker."""
    stable = ready_at is not None and now - ready_at >= backoff.resetAfterS
    if stable or first_failure_at is None:
        restarts, first_failure_at = 0, now
    looping_s = now - first_failure_at
    if looping_s >= backoff.giveUpAfterS:
        return FailurePlan(
            restarts, first_failure_at, None, f"gave up restarting after {looping_s:.0f}s of failures"
        )
    delay = restart_delay_s(restarts, backoff)
    note = "restarting now" if delay == 0 else f"restart {restarts + 1} in {delay:.1f}s"
    return FailurePlan(restarts, first_failure_at, now + delay, note)
