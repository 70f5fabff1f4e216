"""The reconcile plan (emulator.supervisor.reconcile): observed workers and containers in, actions out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emulator.config import Settings
from emulator.models import Endpoint, WorkerState
from emulator.runtime.base import LABEL_VERSION, LABEL_WORKER, ContainerInfo
from emulator.store.jobs import QueueStats
from emulator.supervisor.reconcile import (
    Adopt,
    CreateStandby,
    Drain,
    Fail,
    MarkOutdated,
    Observed,
    Remove,
    RemoveContainer,
    Restart,
    Start,
    leaked_containers,
    plan,
    plan_adoption,
)
from emulator.workers.records import WorkerRecord

S = WorkerState
NOW = 10_000.0
SETTINGS = Settings(data_dir=Path("/nonexistent"), startup_timeout_s=30, worker_lost_after_s=15)
EMPTY = QueueStats(0, 0, 0, 0.0)


def ep(**fields: Any) -> Endpoint:
    data: dict[str, Any] = {"id": "ep", "name": "ep", "imageName": "img", "extraWorkers": 0}
    data.update(fields)
    return Endpoint.model_validate(data)


def worker(wid: str, state: S = S.IDLE, **fields: Any) -> WorkerRecord:
    data: dict[str, Any] = dict(
        id=wid,
        endpoint_id="ep",
        token=f"t-{wid}",
        version=1,
        state=state,
        container_id=f"c-{wid}",
        created_at=NOW - 100,
        started_at=NOW - 100,
        state_since=NOW - 1,
        last_seen_at=NOW - 1,
        ready_at=None if state == S.INITIALIZING else NOW - 99,
    )
    data.update(fields)
    return WorkerRecord(**data)


def container(w: WorkerRecord, status: str = "running", **fields: Any) -> ContainerInfo:
    labels = {LABEL_WORKER: w.id, LABEL_VERSION: str(w.version)}
    return ContainerInfo(id=w.container_id or f"c-{w.id}", name=w.id, labels=labels, status=status, **fields)  # type: ignore[arg-type]


def obs(
    *workers: WorkerRecord, status: str = "running", busy: set[str] | None = None, **fields: Any
) -> list[Observed]:
    return [Observed(w, container(w, status, **fields), busy=w.id in (busy or set())) for w in workers]


def kinds(actions: Sequence[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_a_new_endpoint_gets_workers_min_and_its_standby_containers() -> None:
    actions = plan(ep(workersMin=2, workersMax=5, extraWorkers=2), [], EMPTY, NOW, SETTINGS)
    assert actions == [
        Start("ep", "workersMin is 2"),
        Start("ep", "workersMin is 2"),
        CreateStandby("ep"),
        CreateStandby("ep"),
    ]


def test_a_steady_endpoint_needs_nothing_and_planning_twice_gives_the_same_answer() -> None:
    e = ep(workersMin=2, workersMax=3)
    observed = obs(worker("a"), worker("b", S.RUNNING, job_ids=["j"]))
    assert plan(e, observed, QueueStats(0, 1, 0, 0), NOW, SETTINGS) == []
    starting = obs(worker("a", S.INITIALIZING, started_at=NOW - 1))
    assert (
        plan(ep(workersMin=1), starting, EMPTY, NOW, SETTINGS)
        == plan(ep(workersMin=1), starting, EMPTY, NOW, SETTINGS)
        == []
    )


def test_a_dead_container_fails_the_worker_with_the_classified_exit() -> None:
    a = worker("a", S.RUNNING, job_ids=["j"])
    (action,) = plan(ep(workersMin=1), obs(a, status="exited", exit_code=137), EMPTY, NOW, SETTINGS)
    assert isinstance(action, Fail) and action.worker_id == "a" and "killed (exit 137" in action.reason
    (action,) = plan(
        ep(workersMin=1), obs(a, status="exited", exit_code=137, oom_killed=True), EMPTY, NOW, SETTINGS
    )
    assert isinstance(action, Fail) and "out of memory" in action.reason
    (action,) = plan(ep(workersMin=1), [Observed(a, None)], EMPTY, NOW, SETTINGS)
    assert isinstance(action, Fail) and "disappeared" in action.reason


def test_startup_timeout_and_silence_fail_and_kill() -> None:
    slow = worker("a", S.INITIALIZING, started_at=NOW - 31)
    (action,) = plan(ep(workersMin=1), obs(slow), EMPTY, NOW, SETTINGS)
    assert (
        isinstance(action, Fail)
        and action.kill
        and action.with_logs
        and "start-up timed out" in action.reason
    )
    assert (
        plan(ep(workersMin=1), obs(worker("a", S.INITIALIZING, started_at=NOW - 29)), EMPTY, NOW, SETTINGS)
        == []
    )
    silent = worker("a", S.IDLE, last_seen_at=NOW - 16)
    (action,) = plan(ep(workersMin=1), obs(silent), EMPTY, NOW, SETTINGS)
    assert isinstance(action, Fail) and action.kill and "stopped answering" in action.reason


def test_a_worker_that_asked_to_be_recycled_is_removed_after_its_job_and_replaced() -> None:
    e = ep(workersMin=0, workersMax=3)
    busy = worker("a", S.RUNNING, job_ids=["j"], refresh_requested=True)
    assert plan(e, obs(busy), QueueStats(0, 1, 0, 0), NOW, SETTINGS) == []
    done = worker("a", S.IDLE, refresh_requested=True)
    assert kinds(plan(e, obs(done), EMPTY, NOW, SETTINGS)) == ["Remove", "Start"]
    exited = plan(e, obs(done, status="exited", exit_code=0), EMPTY, NOW, SETTINGS)
    assert kinds(exited) == ["Remove", "Start"]  # exit 0 after stopPod is not a crash


def test_unhealthy_workers_restart_when_due_and_wanted_else_go() -> None:
    crashed = worker("a", S.UNHEALTHY, next_retry_at=NOW, reason="container killed")
    (action,) = plan(ep(workersMin=1), obs(crashed, status="exited"), EMPTY, NOW, SETTINGS)
    assert isinstance(action, Restart) and action.worker_id == "a"
    assert (
        plan(ep(workersMin=1), obs(worker("a", S.UNHEALTHY, next_retry_at=NOW + 5)), EMPTY, NOW, SETTINGS)
        == []
    )
    (action,) = plan(ep(workersMin=0), obs(crashed, status="exited"), EMPTY, NOW, SETTINGS)
    assert isinstance(action, Remove)
    (action,) = plan(ep(workersMin=0), obs(crashed), QueueStats(1, 0, 1, 0.0), NOW, SETTINGS)
    assert isinstance(action, Restart)


def test_a_worker_that_was_given_up_on_holds_its_place() -> None:
    dead = worker("a", S.UNHEALTHY, next_retry_at=None)
    assert plan(ep(workersMin=1, workersMax=1), obs(dead, status="exited"), EMPTY, NOW, SETTINGS) == []


def test_outdated_workers_take_no_job_and_go_once_they_hold_none() -> None:
    e = ep(workersMin=1).model_copy(update={"version": 2})
    running = worker("a", S.RUNNING, job_ids=["j"])
    actions = plan(e, obs(running), QueueStats(0, 1, 0, 0), NOW, SETTINGS)
    assert actions[0] == MarkOutdated("a", "endpoint version 2 replaces version 1")
    assert kinds(actions) == ["MarkOutdated", "Start"]  # a current worker for workersMin
    idle = worker("a", S.OUTDATED)
    assert kinds(plan(e, obs(idle), EMPTY, NOW, SETTINGS)) == ["Remove", "Start"]


def test_stopping_workers_drain_then_go() -> None:
    assert plan(ep(), obs(worker("a", S.RUNNING, stopping=True, job_ids=["j"])), EMPTY, NOW, SETTINGS) == []
    (action,) = plan(
        ep(), obs(worker("a", S.IDLE, stopping=True, reason="draining: x")), EMPTY, NOW, SETTINGS
    )
    assert action == Remove("a", "draining: x")


def test_busy_workers_are_counted_but_left_alone() -> None:
    starting = worker("a", S.INITIALIZING, container_id=None, started_at=None)
    assert plan(ep(workersMin=1), obs(starting, busy={"a"}), EMPTY, NOW, SETTINGS) == []
    assert plan(ep(workersMin=1), [Observed(starting, None)], EMPTY, NOW, SETTINGS) == [
        Remove("a", "its container was never created (creation interrupted)"),
        Start("ep", "workersMin is 1"),
    ]


def test_idle_timeout_stops_flex_workers_down_to_workers_min() -> None:
    e = ep(workersMin=1, workersMax=3, idleTimeout=5)
    ws = [
        worker("a", state_since=NOW - 10),
        worker("b", state_since=NOW - 20),
        worker("c", state_since=NOW - 2),
    ]
    assert plan(e, obs(*ws), EMPTY, NOW, SETTINGS) == [
        Remove("b", "idle for 5s (idleTimeout)"),
        Remove("a", "idle for 5s (idleTimeout)"),
    ]
    e = ep(workersMin=0, workersMax=3, idleTimeout=5, scalerType="REQUEST_COUNT", scalerValue=1)
    assert kinds(plan(e, obs(*ws), QueueStats(0, 2, 0, 0), NOW, SETTINGS)) == ["Remove"]


def test_queue_delay_scale_up_uses_standby_containers_first() -> None:
    e = ep(workersMax=3, extraWorkers=1, scalerValue=1)
    standby = worker("s", S.INITIALIZING, standby=True, started_at=None)
    actions = plan(e, obs(standby, status="created"), QueueStats(5, 0, 5, 2.0), NOW, SETTINGS)
    assert kinds(actions) == ["Start", "Start", "Start"]
    assert [a.standby_id for a in actions if isinstance(a, Start)] == ["s", None, None]


def test_stale_or_broken_standby_containers_are_removed_and_made_again() -> None:
    e = ep(workersMax=3, extraWorkers=1).model_copy(update={"version": 2})
    old = worker("s", S.INITIALIZING, standby=True, started_at=None)
    assert kinds(plan(e, obs(old, status="created"), EMPTY, NOW, SETTINGS)) == ["Remove", "CreateStandby"]
    current = worker("s", S.INITIALIZING, standby=True, started_at=None, version=2)
    assert kinds(plan(e, obs(current, status="exited"), EMPTY, NOW, SETTINGS)) == ["Remove", "CreateStandby"]
    assert plan(e, obs(current, status="created"), EMPTY, NOW, SETTINGS) == []


def test_lowering_workers_max_removes_idle_and_drains_running_workers() -> None:
    e = ep(workersMin=0, workersMax=1)
    ws = [worker("a", S.RUNNING, job_ids=["j"]), worker("b", S.RUNNING, job_ids=["k"]), worker("c")]
    actions = plan(e, obs(*ws), QueueStats(0, 2, 0, 0), NOW, SETTINGS)
    assert actions == [Remove("c", "workersMax lowered to 1"), Drain("b", "workersMax lowered to 1")]


def test_external_workers_are_not_the_supervisors() -> None:
    ext = worker("x", kind="external", container_id=None)
    assert plan(ep(workersMin=1), [Observed(ext, None)], EMPTY, NOW, SETTINGS) == [
        Start("ep", "workersMin is 1")
    ]


# --- after a control-plane restart ------------------------------------------------------------------------
def test_adoption_keeps_matching_containers_and_removes_everything_else() -> None:
    a, b = worker("a"), worker("b", container_id="c-b-new")
    lonely = worker("d")  # its container is gone
    gave_up = worker("e", S.UNHEALTHY)
    found = [
        container(a),
        ContainerInfo("c-b", "b", {LABEL_WORKER: "b", LABEL_VERSION: "1"}, "running"),  # record names another
        ContainerInfo("c-ghost", "ghost", {LABEL_WORKER: "ghost", LABEL_VERSION: "1"}, "running"),
        ContainerInfo("c-a2", "a2", {LABEL_WORKER: "a", LABEL_VERSION: "7"}, "running"),
    ]
    actions = plan_adoption(found, [a, b, lonely, gave_up], {"ep": 1})
    assert Adopt("a", "c-a") in actions
    removed = {x.container_id for x in actions if isinstance(x, RemoveContainer)}
    assert removed == {"c-b", "c-ghost", "c-a2"}
    assert {x.worker_id for x in actions if isinstance(x, Remove)} == {"b", "d"}  # e keeps its record


def test_adoption_removes_workers_and_containers_of_deleted_endpoints() -> None:
    a = worker("a")
    actions = plan_adoption([container(a)], [a], {})
    assert kinds(actions) == ["RemoveContainer", "Remove"]


def test_leaked_containers_are_those_no_worker_owns() -> None:
    a = worker("a")
    found = [
        container(a),
        ContainerInfo("c-x", "x", {LABEL_WORKER: "x"}, "exited"),
        ContainerInfo("c-a-old", "a", {LABEL_WORKER: "a"}, "exited"),
        ContainerInfo("c-y", "y", {LABEL_WORKER: "y"}, "created"),
    ]
    leaks = leaked_containers(found, {"a": "c-a"}, busy={"y"})
    assert [x.container_id for x in leaks] == ["c-x", "c-a-old"]


def test_lowering_workers_max_removes_waiting_unhealthy_workers_first() -> None:
    e = ep(workersMin=0, workersMax=1)
    sick = worker("s", S.UNHEALTHY, next_retry_at=NOW + 100)
    due = worker("d", S.UNHEALTHY, next_retry_at=NOW)
    actions = plan(e, obs(worker("a"), sick, due), QueueStats(3, 0, 3, 0.0), NOW, SETTINGS)
    assert actions == [
        Remove("d", "not restarted: workersMax lowered to 1"),
        Remove("s", "workersMax lowered to 1"),
    ]


def test_a_worker_still_running_an_ended_job_is_stopped_and_replaced_past_the_grace() -> None:
    """#13 item 2: "when exceeded, the job fails and the worker stops"; the next job gets a fresh worker."""
    grace = SETTINGS.ended_job_grace_s
    busy = dict(job_ids=["j1"], ending_reason="execution timeout")
    within = worker("w1", S.RUNNING, ending={"j1": NOW - grace + 0.5}, **busy)
    assert plan(ep(workersMax=1), obs(within), EMPTY, NOW, SETTINGS) == []
    past = worker("w1", S.RUNNING, ending={"j1": NOW - grace - 0.5}, **busy)
    stats = QueueStats(1, 0, 1, 0.1)  # the next job waits for it
    actions = plan(ep(workersMax=1), obs(past), stats, NOW, SETTINGS)
    assert kinds(actions) == ["Remove", "Start"]
    assert isinstance(actions[0], Remove) and actions[0].reason.startswith(
        "execution timeout: worker stopped"
    )
