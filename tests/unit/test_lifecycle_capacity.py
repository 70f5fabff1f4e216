"""Host capacity and admission (emulator.supervisor.capacity): who holds what, and which starts wait
THROTTLED with which reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.config import Settings
from emulator.models import Endpoint, WorkerState
from emulator.supervisor.actions import Action, Remove, Restart, Start, Throttle, Unthrottle
from emulator.supervisor.capacity import DEFAULT_WORKER_MEMORY_MB, Host, admit, holds, snapshot
from emulator.workers.records import WorkerRecord

S = WorkerState


def ep(eid: str = "ep", **fields: Any) -> Endpoint:
    return Endpoint.model_validate({"id": eid, "name": eid, "imageName": "img", **fields})


def worker(wid: str, state: S = S.IDLE, **fields: Any) -> WorkerRecord:
    return WorkerRecord(
        id=wid, endpoint_id=fields.pop("endpoint_id", "ep"), token=wid, version=1, state=state, **fields
    )


def settings(**fields: Any) -> Settings:
    return Settings(data_dir=Path("/nonexistent"), **fields)


def test_who_holds_capacity() -> None:
    assert holds(worker("a", S.IDLE), busy=False) and holds(worker("a", S.OUTDATED), busy=False)
    assert holds(worker("a", S.INITIALIZING), busy=False)
    assert not holds(worker("a", S.UNHEALTHY), busy=False)
    assert not holds(worker("a", S.THROTTLED), busy=False)
    assert holds(worker("a", S.THROTTLED), busy=True)  # waiting for a start slot with its reservation
    assert not holds(worker("a", S.INITIALIZING, standby=True), busy=False)
    assert not holds(worker("a", S.IDLE, kind="external"), busy=False)


def test_snapshot_counts_gpus_memory_and_cpus() -> None:
    endpoints = {"ep": ep(memoryInMb=512), "other": ep("other")}
    workers = [
        worker("a", S.RUNNING, gpu_ids=["0"]),
        worker("b", S.IDLE, gpu_ids=["2"], paused=True),  # paused: memory and GPU, no CPU
        worker("c", S.UNHEALTHY, gpu_ids=["1"]),  # crashed: nothing
        worker("d", S.IDLE, endpoint_id="other"),
    ]
    host = snapshot(workers, endpoints, ("0", "1", "2"), settings(worker_memory_budget_mb=4096), busy=set())
    assert host.gpus_held == {"0", "2"}
    assert host.memory_used_mb == 512 + 512 + DEFAULT_WORKER_MEMORY_MB
    assert host.cpu_used == 2.0 and host.memory_budget_mb == 4096 and host.cpu_budget is None


def test_admission_reserves_in_order_and_throttles_the_rest() -> None:
    gpu = ep(gpuCount=1)
    workers = {
        "t-old": worker("t-old", S.THROTTLED, created_at=1.0, reason="no free GPU: old text"),
        "t-new": worker("t-new", S.THROTTLED, created_at=2.0),
        "u": worker("u", S.UNHEALTHY),
    }
    planned: list[tuple[Endpoint, list[Action]]] = [
        (
            gpu,
            [
                Start("ep", "workersMin is 4"),
                Restart("u", "restart 2"),
                Unthrottle("t-new", "capacity is available"),
                Remove("x", "idle"),
                Unthrottle("t-old", "capacity is available"),
            ],
        )
    ]
    host = Host(gpu_inventory=("0", "1"), gpus_held={"1"})
    out = [action for _, action in admit(planned, host, workers)]
    assert out[0] == Remove("x", "idle")  # actions needing no capacity first
    assert out[1] == Unthrottle("t-old", "capacity is available", gpu_ids=("0",))  # the oldest waiter
    refusal = "no free GPU: needs 1, 0 of 2 free (each GPU is held by one worker at a time)"
    assert out[2] == Throttle("ep", refusal, worker_id="t-new")  # its reason is refreshed
    assert out[3] == Throttle("ep", refusal, worker_id="u")  # the restart waits THROTTLED
    assert out[4] == Throttle("ep", refusal)  # a new worker THROTTLED
    assert host.gpus_held == {"0", "1"}


def test_a_throttled_worker_whose_reason_is_current_gets_no_action() -> None:
    refusal = "needs 2 GPUs but the host has 1"
    workers = {"t": worker("t", S.THROTTLED, reason=refusal)}
    assert admit([(ep(gpuCount=2), [Unthrottle("t", "x")])], Host(gpu_inventory=("0",)), workers) == []


def test_memory_and_cpu_budgets() -> None:
    host = Host(memory_budget_mb=1000, memory_used_mb=700, cpu_budget=2, cpu_used=1)
    out = [a for _, a in admit([(ep(memoryInMb=300), [Start("ep", "a"), Start("ep", "b")])], host, {})]
    assert out[0] == Start("ep", "a")
    assert isinstance(out[1], Throttle) and "memory budget: needs 300 MB, 0 of 1000 MB left" in out[1].reason
    host = Host(cpu_budget=1.5, cpu_used=1)
    (throttled,) = [a for _, a in admit([(ep(), [Start("ep", "a")])], host, {})]
    assert isinstance(throttled, Throttle) and "CPU budget: needs 1 CPU, 0.5 of 1.5 left" in throttled.reason
