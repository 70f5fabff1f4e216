"""The worker state machine: a table test over every (state, event) pair, and a Hypothesis state
machine that drives a real WorkerRegistry the way the worker routes and the supervisor do."""

from __future__ import annotations

import itertools
import sqlite3

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from emulator import wire
from emulator.clock import FakeClock
from emulator.models import WorkerState
from emulator.service.workers import WorkerRegistry
from emulator.store.db import migrate
from emulator.workers.states import TABLE, WorkerEvent, has_container, takes_jobs, transition

S, E = WorkerState, WorkerEvent
_: WorkerState | None = None  # the event does not apply: the caller ignores it

# Rows: states; columns in this order.
COLUMNS = (E.STARTED, E.CONTACT, E.JOB_ASSIGNED, E.JOBS_DRAINED, E.OUTDATED, E.FAILED, E.THROTTLED, E.RESTART)
# fmt: off
EXPECTED: dict[WorkerState, tuple[WorkerState | None, ...]] = {
    #                 STARTED          CONTACT     JOB_ASSIGNED  JOBS_DRAINED OUTDATED     FAILED       THROTTLED    RESTART
    S.INITIALIZING: (S.INITIALIZING, S.IDLE,     S.RUNNING,    _,           S.OUTDATED,  S.UNHEALTHY, S.THROTTLED, _),
    S.IDLE:         (_,              _,          S.RUNNING,    _,           S.OUTDATED,  S.UNHEALTHY, _,           _),
    S.RUNNING:      (_,              _,          S.RUNNING,    S.IDLE,      S.OUTDATED,  S.UNHEALTHY, _,           _),
    S.THROTTLED:    (S.INITIALIZING, _,          _,            _,           S.OUTDATED,  _,           S.THROTTLED, S.INITIALIZING),
    S.OUTDATED:     (_,              S.OUTDATED, _,            S.OUTDATED,  _,           S.UNHEALTHY, _,           _),
    S.UNHEALTHY:    (S.INITIALIZING, _,          _,            _,           S.OUTDATED,  S.UNHEALTHY, _,           S.INITIALIZING),
}
# fmt: on
PAIRS = list(itertools.product(WorkerState, WorkerEvent))


def test_the_expected_matrix_covers_every_state_and_event() -> None:
    assert set(EXPECTED) == set(WorkerState)
    assert set(COLUMNS) == set(WorkerEvent) and len(COLUMNS) == len(WorkerEvent)


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s.value}-{e.value}" for s, e in PAIRS])
def test_transition(state: WorkerState, event: WorkerEvent) -> None:
    expected = EXPECTED[state][COLUMNS.index(event)]
    assert transition(state, event) == expected
    assert ((state, event) in TABLE) == (expected is not None)


def test_only_ready_current_workers_take_jobs() -> None:
    assert {s for s in WorkerState if takes_jobs(s)} == {S.IDLE, S.RUNNING}
    assert {s for s in WorkerState if not has_container(s)} == {S.THROTTLED}


def test_no_event_leads_from_unhealthy_straight_to_idle_or_running() -> None:
    for event in WorkerEvent:
        assert transition(S.UNHEALTHY, event) not in (S.IDLE, S.RUNNING)
        assert transition(S.OUTDATED, event) not in (S.IDLE, S.RUNNING, S.INITIALIZING)


# --- invariants, under any sequence of what workers and the supervisor do ------------------------------
class WorkerLife(RuleBasedStateMachine):
    """One container worker in a real registry. The rules are what the worker routes (contact, take,
    finish) and the supervisor (start, fail, restart, outdate, throttle, recycle) do to it."""

    @initialize()
    def setup(self) -> None:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.row_factory = sqlite3.Row
        migrate(conn)
        self.clock = FakeClock()
        self.registry = WorkerRegistry(conn, self.clock)
        self.worker = self.registry.create("ep", 1)
        self.next_job = itertools.count()
        self.crashed = False  # failed, and not restarted since

    @rule(dt=st.floats(0, 100))
    def time_passes(self, dt: float) -> None:
        self.clock.advance(dt)

    @precondition(
        lambda self: self.worker.state in (S.INITIALIZING, S.THROTTLED) and self.worker.ready_at is None
    )
    @rule()
    def container_started(self) -> None:
        """The supervisor's launch of a new or restarted worker (never of a ready one)."""
        self.registry.apply(self.worker, E.STARTED, "container started", started_at=self.clock.now())

    @rule()
    def contact(self) -> None:
        self.registry.touch(self.worker)

    @rule(n=st.integers(1, 3))
    def take(self, n: int) -> None:
        """What WorkerProtocol.take does: only a worker the registry allows gets jobs."""
        if not self.registry.may_take(self.worker):
            return
        assert self.worker.state != S.OUTDATED
        assert self.worker.ready_at is not None  # ready since its last start
        assert not self.crashed
        self.registry.jobs_assigned(self.worker, [f"job-{next(self.next_job)}" for _ in range(n)])

    @precondition(lambda self: bool(self.worker.job_ids))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.worker.job_ids))
        self.registry.job_released(self.worker, job_id)

    @rule()
    def fail(self) -> None:
        """The supervisor's mark_failed, then JobService.worker_lost releasing every held job."""
        changed = self.registry.apply(self.worker, E.FAILED, "container died")
        if self.worker.state == S.UNHEALTHY:
            self.crashed = True
        if changed or self.worker.state == S.UNHEALTHY:
            for job_id in list(self.worker.job_ids):
                self.registry.job_released(self.worker, job_id)

    @precondition(lambda self: self.worker.state in (S.UNHEALTHY, S.THROTTLED))
    @rule()
    def restart(self) -> None:
        """The supervisor's Restart (planned only for such workers): not ready until its first contact."""
        if self.registry.apply(self.worker, E.RESTART, "restart", ready_at=None, started_at=None, job_ids=[]):
            self.crashed = False

    @rule()
    def outdated(self) -> None:
        self.registry.apply(self.worker, E.OUTDATED, "endpoint version 2")

    @rule()
    def throttled(self) -> None:
        self.registry.apply(self.worker, E.THROTTLED, "no capacity")

    @rule()
    def recycle_requested(self) -> None:
        self.worker.refresh_requested = True

    @invariant()
    def outdated_never_takes(self) -> None:
        if self.worker.state == S.OUTDATED:
            assert not self.registry.may_take(self.worker)

    @invariant()
    def running_holds_a_job(self) -> None:
        if self.worker.state == S.RUNNING:
            assert self.worker.job_ids

    @invariant()
    def unhealthy_never_reported_idle(self) -> None:
        public = wire.worker_public(self.worker, 1, self.clock.now())
        if self.crashed:
            assert self.worker.state in (S.UNHEALTHY, S.OUTDATED)
            assert public["status"] not in ("IDLE", "RUNNING")
            assert not self.registry.may_take(self.worker)
        if self.worker.state == S.UNHEALTHY:
            assert public["status"] == "UNHEALTHY"

    @invariant()
    def only_ready_workers_may_take(self) -> None:
        if self.registry.may_take(self.worker):
            assert self.worker.state in (S.IDLE, S.RUNNING)
            assert self.worker.ready_at is not None


WorkerLife.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestWorkerLife = WorkerLife.TestCase
