"""Scaling and restart decisions (emulator.supervisor.policy): pure functions, no Docker, no clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.models import BackoffPolicy, Endpoint
from emulator.store.jobs import QueueStats
from emulator.supervisor import policy
from emulator.supervisor.policy import Capacity


def ep(**fields: Any) -> Endpoint:
    data: dict[str, Any] = {"id": "ep", "name": "ep", "imageName": "img"}
    data.update(fields)
    return Endpoint.model_validate(data)


def q(in_queue: int = 0, in_progress: int = 0, scaling: int | None = None, wait_s: float = 0.0) -> QueueStats:
    return QueueStats(in_queue, in_progress, in_queue if scaling is None else scaling, wait_s)


# --- QUEUE_DELAY -------------------------------------------------------------------------------------
def test_queue_delay_adds_nothing_until_a_job_has_waited_longer_than_scaler_value() -> None:
    e = ep(workersMax=5, scalerValue=4)
    assert policy.to_add(e, q(3, wait_s=4.0), Capacity(serving=1, starting=1)) == 0
    assert policy.to_add(e, q(3, wait_s=4.1), Capacity(serving=1, starting=1)) == 2
    assert policy.to_add(e, q(3, wait_s=4.1), Capacity(serving=0)) == 3


def test_scaled_to_zero_the_first_job_starts_a_worker_at_once() -> None:
    e = ep(workersMax=5, scalerValue=4)
    assert policy.to_add(e, q(1, wait_s=0.0), Capacity(serving=0)) == 1
    assert policy.to_add(e, q(3, wait_s=0.0), Capacity(serving=0)) == 1
    assert policy.to_add(e, q(0, wait_s=0.0), Capacity(serving=0)) == 0


def test_queue_delay_adds_one_per_waiting_job_nobody_will_pick_up_capped_at_max() -> None:
    e = ep(workersMax=5, scalerValue=1)
    assert policy.to_add(e, q(10, wait_s=2), Capacity(serving=0)) == 5
    assert policy.to_add(e, q(10, wait_s=2), Capacity(serving=5, idle=0)) == 0
    assert policy.to_add(e, q(3, wait_s=2), Capacity(serving=2, idle=1, starting=1)) == 1
    assert policy.to_add(e, q(2, wait_s=2), Capacity(serving=2, idle=0, starting=2)) == 0


def test_low_priority_jobs_never_trigger_scale_up() -> None:
    e = ep(workersMax=5, scalerValue=1)
    assert policy.to_add(e, q(in_queue=7, scaling=0, wait_s=0), Capacity(serving=0)) == 0
    e = ep(workersMax=5, scalerType="REQUEST_COUNT", scalerValue=1)
    assert policy.to_add(e, q(in_queue=7, scaling=0), Capacity(serving=0)) == 0


def test_workers_min_is_always_started() -> None:
    e = ep(workersMin=2, workersMax=3)
    assert policy.to_add(e, q(), Capacity(serving=0)) == 2
    assert policy.to_add(e, q(), Capacity(serving=1)) == 1
    assert policy.to_add(e, q(), Capacity(serving=2)) == 0


def test_workers_max_zero_starts_nothing() -> None:
    e = ep(workersMin=0, workersMax=0)
    assert policy.to_add(e, q(9, wait_s=100), Capacity(serving=0)) == 0
    assert policy.standby_target(e, 0) == 0 and policy.standby_cap(e) == 0


# --- REQUEST_COUNT -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("queued", "running", "value", "serving", "expected"),
    [(0, 0, 1, 0, 0), (1, 0, 1, 0, 1), (5, 0, 2, 0, 3), (3, 2, 2, 1, 2), (40, 0, 1, 0, 4), (1, 4, 5, 0, 1)],
)
def test_request_count_wants_ceil_of_queued_plus_running_over_scaler_value(
    queued: int, running: int, value: float, serving: int, expected: int
) -> None:
    e = ep(workersMax=4, scalerType="REQUEST_COUNT", scalerValue=value)
    assert policy.to_add(e, q(queued, running), Capacity(serving=serving)) == expected


def test_floor_keeps_request_count_workers_and_workers_min() -> None:
    e = ep(workersMin=1, workersMax=4, scalerType="REQUEST_COUNT", scalerValue=2)
    assert policy.floor(e, q(0, 0)) == 1
    assert policy.floor(e, q(3, 2)) == 3
    assert policy.floor(e, q(30, 2)) == 4
    assert policy.floor(ep(workersMin=1, workersMax=4), q(30, 2)) == 1  # QUEUE_DELAY: idle timeout decides


@given(
    st.integers(0, 10),
    st.integers(0, 10),
    st.integers(0, 50),
    st.integers(0, 10),
    st.floats(0, 20),
    st.integers(0, 10),
    st.integers(0, 10),
    st.sampled_from(["QUEUE_DELAY", "REQUEST_COUNT"]),
    st.floats(0.5, 10),
)
def test_to_add_never_exceeds_workers_max(
    lo: int,
    extra: int,
    queued: int,
    running: int,
    wait: float,
    serving: int,
    idle: int,
    kind: str,
    value: float,
) -> None:
    e = ep(workersMin=lo, workersMax=lo + extra, scalerType=kind, scalerValue=value)
    add = policy.to_add(
        e, q(queued, running, wait_s=wait), Capacity(serving=serving, idle=min(idle, serving))
    )
    assert add >= 0
    assert serving + add <= max(serving, e.workersMax)
    if serving < e.workersMin:
        assert serving + add >= e.workersMin


# --- idle timeout ------------------------------------------------------------------------------------
def test_idle_workers_past_idle_timeout_stop_longest_idle_first_down_to_the_floor() -> None:
    e = ep(workersMin=1, workersMax=5, idleTimeout=5)
    idle = [("a", 100.0), ("b", 90.0), ("c", 104.0), ("d", 80.0)]
    assert policy.idle_to_stop(e, idle, healthy=4, keep=1, now=106.0) == ["d", "b", "a"]
    assert policy.idle_to_stop(e, idle, healthy=4, keep=1, now=104.9) == ["d", "b"]
    assert policy.idle_to_stop(e, idle, healthy=4, keep=3, now=200.0) == ["d"]
    assert policy.idle_to_stop(e, idle, healthy=1, keep=1, now=200.0) == []


def test_restart_is_needed_below_the_floor_or_with_queued_work() -> None:
    e = ep(workersMin=1, workersMax=3)
    assert policy.restart_needed(e, q(), healthy=0)
    assert not policy.restart_needed(e, q(), healthy=1)
    assert policy.restart_needed(e, q(in_queue=1, scaling=0), healthy=1)  # even lowPriority work


# --- extraWorkers (standby containers) ------------------------------------------------------------------
def test_standby_containers_only_while_the_endpoint_can_grow() -> None:
    e = ep(workersMin=0, workersMax=3, extraWorkers=2)
    assert [policy.standby_target(e, n) for n in range(5)] == [2, 2, 1, 0, 0]
    assert policy.standby_cap(e) == 2
    assert policy.standby_target(ep(workersMax=3, extraWorkers=0), 0) == 0
    assert policy.standby_cap(ep(workersMax=1, extraWorkers=5)) == 1


# --- restarts and back-off ---------------------------------------------------------------------------
def test_restart_delay_is_immediate_then_exponential_with_a_cap() -> None:
    b = BackoffPolicy(initialDelayS=1, factor=2, maxDelayS=10)
    assert [policy.restart_delay_s(n, b) for n in range(7)] == [0, 1, 2, 4, 8, 10, 10]
    assert policy.restart_delay_s(10_000, b) == 10


def test_on_failure_first_failure_restarts_at_once() -> None:
    b = BackoffPolicy()
    plan = policy.on_failure(restarts=0, first_failure_at=None, ready_at=None, now=1000.0, backoff=b)
    assert plan == policy.FailurePlan(0, 1000.0, 1000.0, "restarting now")


def test_on_failure_in_a_crash_loop_backs_off() -> None:
    b = BackoffPolicy(initialDelayS=1, factor=3, maxDelayS=100, resetAfterS=60)
    plan = policy.on_failure(restarts=3, first_failure_at=900.0, ready_at=990.0, now=1000.0, backoff=b)
    assert plan.restarts == 3 and plan.first_failure_at == 900.0
    assert plan.next_retry_at == 1009.0 and "restart 4 in 9.0s" in plan.note


def test_on_failure_after_a_stable_run_starts_a_new_loop() -> None:
    b = BackoffPolicy(resetAfterS=60)
    plan = policy.on_failure(restarts=5, first_failure_at=100.0, ready_at=900.0, now=1000.0, backoff=b)
    assert plan.restarts == 0 and plan.first_failure_at == 1000.0 and plan.next_retry_at == 1000.0


def test_on_failure_gives_up_after_give_up_after_s() -> None:
    b = BackoffPolicy(giveUpAfterS=3600)
    plan = policy.on_failure(restarts=40, first_failure_at=0.0, ready_at=None, now=3600.0, backoff=b)
    assert plan.next_retry_at is None and "gave up" in plan.note
