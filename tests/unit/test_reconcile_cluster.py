"""The reconcile plan with a cluster engine (Kubernetes): a created container the engine queues is not a failure."""

from __future__ import annotations

from typing import Any

from emulator.runtime.base import CLUSTER_CAPABILITIES
from emulator.supervisor.reconcile import (
    Action,
    Fail,
    Observed,
    Placed,
    Remove,
    Throttle,
    plan,
    queued_reason,
)
from emulator.workers.records import WorkerRecord
from tests.unit.test_reconcile import EMPTY, NOW, SETTINGS, S, container, ep, kinds, obs, worker

UNSCHEDULABLE = "Unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
"""What ``kube_docs.container_info`` puts in ``ContainerInfo.pending`` for a Pod the scheduler cannot place."""


def test_a_pod_the_scheduler_cannot_place_waits_without_a_start_up_clock() -> None:
    w = worker("w1", S.INITIALIZING, started_at=NOW - 1000)  # far past startup_timeout_s
    actions = plan(ep(workersMin=1), obs(w, status="created", pending=UNSCHEDULABLE), EMPTY, NOW, SETTINGS)
    assert not [a for a in actions if isinstance(a, Fail)]


def test_a_scheduled_pod_still_creating_keeps_the_start_up_timeout() -> None:
    w = worker("w1", S.INITIALIZING, started_at=NOW - 1000)
    actions = plan(
        ep(workersMin=1), obs(w, status="created", pending="ContainerCreating"), EMPTY, NOW, SETTINGS
    )
    [failure] = [a for a in actions if isinstance(a, Fail)]
    assert "start-up timed out" in failure.reason


def test_a_created_container_without_an_engine_queue_still_fails() -> None:
    w = worker("w1", S.INITIALIZING)
    [failure] = [
        a
        for a in plan(ep(workersMin=1), obs(w, status="created"), EMPTY, NOW, SETTINGS)
        if isinstance(a, Fail)
    ]
    assert failure.reason == "its container was created but never started"


# --- an engine that places workers (CLUSTER_CAPABILITIES): THROTTLED with the scheduler's message ----------
MESSAGE = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


def _cluster_plan(w: WorkerRecord, status: str = "created", **fields: Any) -> list[Action]:
    endpoint = fields.pop("endpoint", ep(workersMin=1))
    return plan(endpoint, obs(w, status=status, **fields), EMPTY, NOW, SETTINGS, CLUSTER_CAPABILITIES)


def test_a_queued_pod_makes_its_worker_throttled_with_the_schedulers_message() -> None:
    w = worker("w1", S.INITIALIZING, started_at=NOW - 1000)
    assert queued_reason(container(w, "created", pending=UNSCHEDULABLE)) == MESSAGE
    assert _cluster_plan(w, pending=UNSCHEDULABLE) == [Throttle("ep", MESSAGE, worker_id="w1")]


def test_a_throttled_worker_keeps_its_queued_pod_and_only_its_reason_is_refreshed() -> None:
    w = worker("w1", S.THROTTLED, reason=MESSAGE)
    assert _cluster_plan(w, pending=UNSCHEDULABLE) == []  # no Unthrottle: the scheduler decides
    fresh = "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    [refresh] = _cluster_plan(w, pending=fresh)
    assert refresh == Throttle(
        "ep", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", worker_id="w1"
    )


def test_a_queued_pod_no_longer_wanted_is_removed() -> None:
    w = worker("w1", S.THROTTLED, reason=MESSAGE)
    [removal] = _cluster_plan(w, pending=UNSCHEDULABLE, endpoint=ep(workersMin=0))
    assert isinstance(removal, Remove) and "not started" in removal.reason


def test_a_placed_pod_brings_its_throttled_worker_back_to_initializing() -> None:
    w = worker("w1", S.THROTTLED, reason=MESSAGE)
    [placed] = _cluster_plan(w, status="created", pending="ContainerCreating")
    assert placed == Placed("w1", "placed by the engine (ContainerCreating)")
    assert _cluster_plan(w, status="running") == [Placed("w1", "placed by the engine (running)")]


def test_a_throttled_worker_whose_pod_is_gone_is_started_again() -> None:
    w = worker("w1", S.THROTTLED, reason=MESSAGE)
    actions = plan(ep(workersMin=1), [Observed(w, None)], EMPTY, NOW, SETTINGS, CLUSTER_CAPABILITIES)
    assert kinds(actions) == ["Unthrottle"]


def test_docker_keeps_its_own_admission_for_throttled_workers() -> None:
    w = worker("w1", S.THROTTLED, container_id=None)
    actions = plan(ep(workersMin=1), [Observed(w, None)], EMPTY, NOW, SETTINGS)
    assert kinds(actions) == ["Unthrottle"]
