"""The reconcile plan with a cluster engine (Kubernetes): a created container the engine queues is not a failure."""

from __future__ import annotations

from emulator.supervisor.reconcile import Fail, plan
from tests.unit.test_reconcile import EMPTY, NOW, SETTINGS, S, ep, obs, worker

UNSCHEDULABLE = "Unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


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
