"""The same handler file under RunPod's SDK (runpod==1.12.0) and under worker_sdk gives the same results.

Twice: against the real control plane (client-visible /status and /stream), and against the stub
control plane (the exact bodies each SDK puts on the wire).
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker_sdk.control_plane import ControlPlane
from tests.worker_sdk.procs import WorkerProcess
from tests.worker_sdk.stub_control_plane import StubControlPlane, wait_until

Start = Callable[[dict[str, str], str], WorkerProcess]  # processes(env, name)

HANDLER = Path(__file__).resolve().parent / "handlers" / "compat_handler.py"
SKIP_CHECKS = {"RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "RUNPOD_SKIP_GPU_CHECK": "true"}
needs_runpod = pytest.mark.skipif(importlib.util.find_spec("runpod") is None, reason="runpod not installed")
needs_cp = pytest.mark.skipif(
    importlib.util.find_spec("emulator") is None, reason="control plane not available"
)

CASES: dict[str, list[dict[str, Any]]] = {
    "sync": [
        {"numbers": [1, 2, 3], "text": "héllo"},
        {"value": [1, "two", None]},
        {"value": "plain"},
        {"value": {"output": 1}},  # RunPod's double wrap
        {"value": {}},
        {"error": "custom failure"},
        {"fail": "raised"},
        {"progress": {"pct": 50}, "numbers": [5]},
    ],
    "async": [{"numbers": [4], "text": "a"}, {"fail": "async raised"}],
    "gen": [{"text": "one two three"}, {"text": "a ERROR b"}],
}


def normalise_error(error: Any) -> Any:
    """Uncaught-exception errors carry a traceback and SDK versions: keep type and message."""
    try:
        info = json.loads(error)
    except (TypeError, ValueError):
        return error
    if isinstance(info, dict) and "error_type" in info:
        return {"error_type": info["error_type"], "error_message": info["error_message"]}
    return error


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Start]:
    started: list[WorkerProcess] = []

    def _start(env: dict[str, str], name: str) -> WorkerProcess:
        proc = WorkerProcess(HANDLER, dict(env, **SKIP_CHECKS), tmp_path / f"{name}.log")
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        proc.close()


# ---- against the real control plane ------------------------------------------------------------------
@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    root = tmp_path_factory.mktemp("compat-cp")
    (root / "data").mkdir()
    plane = ControlPlane(root / "data", root)
    try:
        yield plane.start()
    finally:
        plane.close()


def run_cases_on_cp(cp: ControlPlane, processes: Start, sdk: str, kind: str) -> list[dict[str, Any]]:
    endpoint = f"compat-{sdk.replace('_', '-')}-{kind}"
    cp.create_endpoint(endpoint)
    registration = cp.register_worker(endpoint)
    proc = processes(dict(registration["env"], SDK=sdk, COMPAT_KIND=kind), f"{sdk}-{kind}")
    results: list[dict[str, Any]] = []
    for case in CASES[kind]:
        job = cp.run(endpoint, case)
        progress = None
        chunks: list[Any] = []
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline and proc.proc.poll() is None, (case, proc.log())
            body = cp.status(endpoint, job)
            if case.get("progress") and body["status"] == "IN_PROGRESS" and body.get("output") is not None:
                progress = body["output"]
            if kind == "gen":
                chunks += [c["output"] for c in cp.stream(endpoint, job).get("stream", [])]
            if body["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
                break
            time.sleep(0.05)
        if kind == "gen":
            chunks += [c["output"] for c in cp.stream(endpoint, job).get("stream", [])]
        results.append(
            {
                "status": body["status"],
                "output": body.get("output"),
                "error": normalise_error(body.get("error")),
                "progress": progress,
                "chunks": chunks,
            }
        )
    return results


@needs_runpod
@needs_cp
@pytest.mark.parametrize("kind", ["sync", "async", "gen"])
def test_same_results_through_the_control_plane(cp: ControlPlane, processes: Start, kind: str) -> None:
    runpod_results = run_cases_on_cp(cp, processes, "runpod", kind)
    ours = run_cases_on_cp(cp, processes, "worker_sdk", kind)
    assert ours == runpod_results
    # and the results are the expected ones, not merely equal
    if kind == "sync":
        assert runpod_results[0]["output"] == {"sum": 6, "upper": "HÉLLO", "has_id": True}
        assert runpod_results[5] == {
            "status": "FAILED",
            "output": None,
            "error": "custom failure",
            "progress": None,
            "chunks": [],
        }
        assert runpod_results[6]["error"] == {"error_type": "<class 'ValueError'>", "error_message": "raised"}
        assert runpod_results[7]["progress"] == {"pct": 50} and runpod_results[7]["output"]["sum"] == 5
    if kind == "gen":
        words = [{"i": 0, "word": "one"}, {"i": 1, "word": "two"}, {"i": 2, "word": "three"}]
        assert runpod_results[0]["chunks"] == words and runpod_results[0]["output"] == words
        assert runpod_results[1]["status"] == "FAILED" and runpod_results[1]["error"] == "found ERROR at 1"


# ---- against the stub: the raw wire bodies ---------------------------------------------------------------
def run_cases_on_stub(processes: Start, sdk: str, kind: str) -> list[dict[str, Any]]:
    stub = StubControlPlane(hold_s=1.0).start()
    try:
        proc = processes(stub.env(worker_id=f"{sdk}-w", SDK=sdk, COMPAT_KIND=kind), f"stub-{sdk}-{kind}")
        wire: list[dict[str, Any]] = []
        for case in CASES[kind]:
            job = stub.add_job(case)

            def has_final(job: str = job) -> bool:
                return stub.final(job) is not None

            wait_until(has_final, 60, f"{sdk} result for {case}: {proc.log()}")
            time.sleep(0.2)
            done = stub.recorded("job-done", job)
            final = stub.final(job)
            if "error" in final:
                final = dict(final, error=normalise_error(final["error"]))
            wire.append(
                {
                    "final": final,
                    "progress": [
                        r.body for r in done if r.body is not final and r.body.get("status") == "IN_PROGRESS"
                    ],
                    "isStream": [
                        r.query.get("isStream") for r in done if r.body.get("status") != "IN_PROGRESS"
                    ],
                    "chunks": stub.chunks(job),
                    "auth": {r.headers.get("Authorization") for r in stub.recorded(job=job)},
                }
            )
        takes = stub.recorded("job-take")
        assert takes and all(t.query.get("gpu") == "local" and "job_in_progress" in t.query for t in takes)
        return wire
    finally:
        stub.stop()


@needs_runpod
@pytest.mark.parametrize("kind", ["sync", "async", "gen"])
def test_same_wire_bodies_against_the_stub(processes: Start, kind: str) -> None:
    cases = CASES[kind]
    if kind == "gen":  # RunPod formats generator exceptions differently; not compared here
        cases = [c for c in cases if "fail" not in c]
    runpod_wire = run_cases_on_stub(processes, "runpod", kind)
    ours = run_cases_on_stub(processes, "worker_sdk", kind)
    assert len(ours) == len(cases)
    assert ours == runpod_wire
