"""WorkerRecord.to_json: the same document dataclasses.asdict gave, without sharing the record's lists."""

from __future__ import annotations

import json
from dataclasses import asdict

from emulator.models import WorkerState
from emulator.workers.records import WorkerRecord


def _full() -> WorkerRecord:
    return WorkerRecord(
        id="ep-1",
        endpoint_id="ep",
        token="tok",
        version=3,
        kind="container",
        state=WorkerState.RUNNING,
        container_id="c0ffee",
        gpu_ids=["0", "1"],
        job_ids=["j1", "j2"],
        created_at=1.5,
        started_at=2.5,
        ready_at=3.0,
        last_seen_at=4.0,
        last_ping_at=4.5,
        state_since=3.5,
        restarts=2,
        reason="why",
        next_retry_at=9.0,
        first_failure_at=1.0,
        stopping=True,
        paused=True,
        standby=False,
        refresh_requested=True,
        timings={"createS": 0.1, "startS": 0.2},
    )


def test_to_json_matches_asdict_and_round_trips() -> None:
    record = _full()
    expected = asdict(record)
    expected["state"] = record.state.value
    assert record.to_json() == expected
    assert json.loads(json.dumps(record.to_json())) == expected
    assert WorkerRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_to_json_does_not_share_lists_or_dicts() -> None:
    record = _full()
    data = record.to_json()
    data["job_ids"].append("j3")
    data["gpu_ids"].clear()
    data["timings"]["readyS"] = 1.0
    assert record.job_ids == ["j1", "j2"] and record.gpu_ids == ["0", "1"]
    assert record.timings == {"createS": 0.1, "startS": 0.2}
