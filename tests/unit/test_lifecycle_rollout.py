"""Rolling updates (emulator.supervisor.rollout): the budget, who serves meanwhile, halting and the
endpoint's rollout status; and the same rules through reconcile.plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.config import Settings
from emulator.models import Endpoint, WorkerState
from emulator.runtime.base import LABEL_VERSION, LABEL_WORKER, ContainerInfo
from emulator.store.jobs import QueueStats
from emulator.supervisor import rollout
from emulator.supervisor.actions import Drain, MarkOutdated, Observed, Remove, Start
from emulator.supervisor.reconcile import plan
from emulator.workers.records import WorkerRecord

S = WorkerState
NOW = 10_000.0
SETTINGS = Settings(data_dir=Path("/nonexistent"), startup_timeout_s=30, worker_lost_after_s=15)
EMPTY = QueueStats(0, 0, 0, 0.0)


def ep(version: int = 2, **fields: Any) -> Endpoint:
    data: dict[str, Any] = {"id": "ep", "name": "ep", "imageName": "img", "extraWorkers": 0, "workersMax": 10}
    data.update(fields)
    return Endpoint.model_validate(data).model_copy(update={"version": version})


def worker(wid: str, state: S = S.IDLE, version: int = 1, **fields: Any) -> WorkerRecord:
    data: dict[str, Any] = dict(
        id=wid,
        endpoint_id="ep",
        token=wid,
        version=version,
        state=state,
        container_id=f"c-{wid}",
        created_at=NOW - 100 + len(wid),
        started_at=NOW - 100,
        state_since=NOW - 1,
        last_seen_at=NOW - 1,
        ready_at=None if state in (S.INITIALIZING, S.UNHEALTHY) else NOW - 99,
    )
    data.update(fields)
    return WorkerRecord(**data)


def obs(*workers: WorkerRecord, status: str = "running", busy: set[str] | None = None) -> list[Observed]:
    def info(w: WorkerRecord) -> ContainerInfo:
        labels = {LABEL_WORKER: w.id, LABEL_VERSION: str(w.version)}
        state = "exited" if w.state == S.UNHEALTHY else status
        return ContainerInfo(w.container_id or "", w.id, labels, state)  # type: ignore[arg-type]

    return [Observed(w, info(w), busy=w.id in (busy or set())) for w in workers]


@pytest.mark.parametrize(
    ("workers_max", "budget"), [(0, 1), (1, 1), (10, 1), (11, 2), (20, 2), (25, 3), (100, 10)]
)
def test_the_budget_is_ten_percent_of_workers_max_at_least_one(workers_max: int, budget: int) -> None:
    assert rollout.budget(ep(workersMax=workers_max)) == budget


def test_at_first_the_budget_picks_idle_old_workers_and_the_rest_keep_serving() -> None:
    ws = [
        worker("a1", S.RUNNING, job_ids=["j"]),
        worker("b2"),
        worker("c3"),
        worker("d44", S.RUNNING, job_ids=["k"]),
    ]
    out = rollout.plan_old(ep(workersMax=20), obs(*ws))  # budget 2: the two idle ones
    assert out.actions == [
        MarkOutdated("b2", "endpoint version 2 replaces version 1"),
        Remove("b2", "outdated: endpoint version 2 replaces version 1"),
        MarkOutdated("c3", "endpoint version 2 replaces version 1"),
        Remove("c3", "outdated: endpoint version 2 replaces version 1"),
    ]
    assert out.replaced == 2 and out.waiting == 0
    assert [o.worker.id for o in out.serving] == ["a1", "d44"]  # still taking jobs


def test_replacements_in_flight_use_the_budget_until_the_new_worker_is_ready() -> None:
    draining = worker("a1", S.OUTDATED, stopping=True, job_ids=["j"])
    starting = worker("n1", S.INITIALIZING, version=2)
    out = rollout.plan_old(ep(), obs(draining, starting, worker("b2")))
    assert out.actions == [] and out.replaced == 0 and [o.worker.id for o in out.serving] == ["b2"]
    out = rollout.plan_old(ep(), obs(worker("b2"), starting))  # drained and gone: its new worker still counts
    assert out.actions == []
    out = rollout.plan_old(ep(), obs(worker("b2"), worker("n1", version=2)))  # ready: the next one goes
    assert out.actions[0] == MarkOutdated("b2", "endpoint version 2 replaces version 1")


def test_once_a_new_worker_is_ready_old_ones_are_outdated_and_wait_their_turn() -> None:
    ws = [
        worker("n1", version=2),
        worker("a1", S.RUNNING, job_ids=["j"]),
        worker("b2", S.RUNNING, job_ids=["k"]),
    ]
    out = rollout.plan_old(ep(), obs(*ws))
    assert out.actions == [
        MarkOutdated("a1", "endpoint version 2 replaces version 1", replacing=True),
        MarkOutdated(
            "b2", "endpoint version 2 replaces version 1; waits its turn in the rolling update", False
        ),
    ]
    assert out.waiting == 1 and out.serving == [] and out.replaced == 1
    waiting = worker("b2", S.OUTDATED, job_ids=["k"])
    out = rollout.plan_old(ep(), obs(worker("n1", version=2), waiting))  # its turn, holding a job: drain
    assert out.actions == [Drain("b2", "rolling update: endpoint version 2 replaces version 1")]


def test_old_workers_that_do_not_serve_go_at_once_outside_the_budget() -> None:
    ws = [
        worker("a1", S.UNHEALTHY),
        worker("b2", S.INITIALIZING),
        worker("c3", S.THROTTLED),
        worker("d4", paused=True),
    ]
    out = rollout.plan_old(ep(workersMax=1), obs(*ws))
    assert [type(a).__name__ for a in out.actions] == ["MarkOutdated", "Remove"] * 4
    assert out.replaced == 0


def test_a_new_worker_failing_to_start_halts_the_rollout() -> None:
    failed = worker(
        "n1", S.UNHEALTHY, version=2, reason="container exited with code 3; last log lines:\nboom"
    )
    e = ep(workersMax=10)
    status = rollout.status(e, obs(failed, worker("a1"), worker("b2")))
    assert status is not None and status["status"] == "halted" and status["version"] == 2
    assert status["reason"] == "the new version's workers fail to start: " + (failed.reason or "")
    assert status["oldWorkers"] == 2 and status["worker"] == "n1"
    out = rollout.plan_old(e.model_copy(update={"workersMax": 100}), obs(failed, worker("a1"), worker("b2")))
    assert out.actions == [] and len(out.serving) == 2  # nothing more picked: the old ones keep serving
    # the failed worker was removed: still halted (sticky) until a new worker is ready or a PATCH
    halted = e.model_copy(update={"rollout": status})
    assert rollout.halted(halted, obs(worker("a1")))
    assert rollout.status(halted, obs(worker("a1"), worker("n2", version=2)))["status"] == "rolling"  # type: ignore[index]


def test_rollout_status_from_start_to_completion() -> None:
    e = ep(workersMax=10)
    assert rollout.status(e.model_copy(update={"version": 1}), obs(worker("a1"))) is None  # never rolled
    rolling = rollout.status(e, obs(worker("a1"), worker("n1", S.INITIALIZING, version=2)))
    assert rolling == {"status": "rolling", "version": 2, "budget": 1, "oldWorkers": 1}
    e = e.model_copy(update={"rollout": rolling})
    assert rollout.status(e, obs(worker("n1", S.INITIALIZING, version=2)))["status"] == "rolling"  # type: ignore[index]
    done = rollout.status(e, obs(worker("n1", version=2)))
    assert done == {"status": "completed", "version": 2}
    finished = e.model_copy(update={"rollout": done})
    assert rollout.status(finished, obs(worker("n1", version=2))) == done


def test_through_plan_a_replacement_is_started_in_each_picked_workers_place() -> None:
    e = ep(workersMin=0, workersMax=3)
    actions = plan(e, obs(worker("a1"), worker("b2"), worker("c3")), EMPTY, NOW, SETTINGS)
    assert [type(a).__name__ for a in actions] == ["MarkOutdated", "Remove", "Start"]
    assert isinstance(actions[-1], Start)


_STATES = st.sampled_from([S.IDLE, S.RUNNING, S.OUTDATED, S.INITIALIZING, S.UNHEALTHY, S.THROTTLED])


@given(
    st.integers(1, 40),
    st.lists(st.tuples(_STATES, st.booleans(), st.integers(0, 2)), max_size=25),
    st.lists(st.tuples(_STATES, st.booleans()), max_size=10),
)
def test_never_more_than_the_budget_in_flight(
    workers_max: int, olds: list[tuple[S, bool, int]], news: list[tuple[S, bool]]
) -> None:
    """Whatever the mix of old and new workers, picks never take the replacements in flight past the
    budget, and old workers are OUTDATED (take nothing) as soon as a new-version worker is ready."""
    e = ep(workersMax=workers_max)
    observed = obs(
        *[
            worker(
                f"o{i}",
                state,
                stopping=stopping,
                job_ids=[f"j{i}-{n}" for n in range(jobs)] if state in (S.RUNNING, S.OUTDATED) else [],
            )
            for i, (state, stopping, jobs) in enumerate(olds)
        ],
        *[worker(f"n{i}", state, version=2, stopping=stopping) for i, (state, stopping) in enumerate(news)],
    )
    out = rollout.plan_old(e, observed)
    current = [o for o in observed if o.worker.version == 2 and not o.worker.stopping]
    draining = sum(1 for o in observed if o.worker.version == 1 and o.worker.stopping)
    not_ready = sum(1 for o in current if o.worker.state in (S.INITIALIZING, S.UNHEALTHY))
    picked = {a.worker_id for a in out.actions if isinstance(a, MarkOutdated) and a.replacing} | {
        a.worker_id for a in out.actions if isinstance(a, Drain)
    }
    live_picked = {
        w for w in picked if observed_by_id(observed, w).worker.state in (S.IDLE, S.RUNNING, S.OUTDATED)
    }
    assert max(draining, not_ready) + len(live_picked) <= max(rollout.budget(e), max(draining, not_ready))
    ready_new = any(o.worker.state in (S.IDLE, S.RUNNING) for o in current)
    if ready_new:
        assert out.serving == []  # no old worker keeps taking jobs once a new one is ready


def observed_by_id(observed: list[Observed], wid: str) -> Observed:
    return next(o for o in observed if o.worker.id == wid)
