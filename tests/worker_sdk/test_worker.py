"""The worker loop in-process against the stub control plane: kinds, shaping, streaming, concurrency,
progress ordering, cancellation, retries, heartbeat, shutdown."""

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import worker_sdk
from tests.worker_sdk.conftest import RunWorker, until
from tests.worker_sdk.stub_control_plane import DROP, StubControlPlane
from worker_sdk import loop as sdk_loop
from worker_sdk.jobs import Execution


async def result(stub: StubControlPlane, job_id: str, timeout: float = 10.0) -> Any:
    """The job's final job-done body (any JSON), once there is one."""
    await until(lambda: stub.final(job_id) is not None, timeout, "final result of " + job_id)
    return stub.final(job_id)


async def test_sync_handler_dict_output_and_wire_details(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    seen_threads = []

    def handler(job: dict[str, Any]) -> Any:
        seen_threads.append(threading.current_thread().name)
        return {"echo": job["input"]["x"], "id": job["id"]}

    await run_worker({"handler": handler})
    job = stub.add_job({"x": 41})
    assert await result(stub, job) == {"output": {"echo": 41, "id": job}}
    assert seen_threads and seen_threads[0] != "MainThread"  # sync handlers run in their own thread
    take = stub.recorded("job-take")[0]
    assert take.query["gpu"] == "local" and take.query["job_in_progress"] == "0"
    assert take.headers["Authorization"] == "tok"  # raw key, no Bearer
    done = stub.recorded("job-done", job)[0]
    assert done.query == {"gpu": "local", "isStream": "false"} and done.worker == "w-1"
    assert stub.state(job) == "COMPLETED"


async def test_async_handler_and_return_shapes(stub: StubControlPlane, run_worker: RunWorker) -> None:
    async def handler(job: dict[str, Any]) -> Any:
        await asyncio.sleep(0.01)
        return job["input"]["ret"]

    await run_worker({"handler": handler})
    cases = {
        "list": ([1, 2], {"output": [1, 2]}),
        "str": ("s", {"output": "s"}),
        "err": ({"error": "bad"}, {"error": "bad"}),
        "empty": ({}, {}),
        "refresh": ({"refresh_worker": True, "a": 1}, {"output": {"a": 1}, "stopPod": True}),
    }
    ids = {name: stub.add_job({"ret": ret}) for name, (ret, _) in cases.items() if name != "refresh"}
    for name, job in ids.items():
        assert await result(stub, job) == cases[name][1], name
    assert stub.state(ids["err"]) == "FAILED"


async def test_returned_refresh_worker_posts_stop_pod_and_exits(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    worker, task = await run_worker({"handler": lambda job: {"refresh_worker": True, "a": 1}})
    job = stub.add_job({})
    assert await result(stub, job) == {"output": {"a": 1}, "stopPod": True}
    assert await asyncio.wait_for(task, 10) == 0
    second = stub.add_job({})
    await asyncio.sleep(0.3)
    assert stub.state(second) == "IN_QUEUE"


async def test_config_refresh_worker(stub: StubControlPlane, run_worker: RunWorker) -> None:
    worker, task = await run_worker({"handler": lambda job: "x", "refresh_worker": True})
    job = stub.add_job({})
    assert await result(stub, job) == {"output": "x", "stopPod": True}
    assert await asyncio.wait_for(task, 10) == 0


async def test_exception_payload(stub: StubControlPlane, run_worker: RunWorker) -> None:
    def handler(job: dict[str, Any]) -> None:
        raise RuntimeError("kaput")

    await run_worker({"handler": handler}, env={"RUNPOD_POD_HOSTNAME": "box"})
    job = stub.add_job({})
    body = await result(stub, job)
    info = json.loads(body["error"])
    assert info["error_type"] == "<class 'RuntimeError'>" and info["error_message"] == "kaput"
    assert "raise RuntimeError" in info["error_traceback"]
    assert info["hostname"] == "box" and info["worker_id"] == "w-1"
    assert stub.state(job) == "FAILED"


async def _stream_case(
    stub: StubControlPlane, run_worker: RunWorker, handler: Callable[..., Any], aggregate: bool
) -> Any:
    await run_worker({"handler": handler, "return_aggregate_stream": aggregate})
    job = stub.add_job({"n": 4})
    body = await result(stub, job)
    assert stub.chunks(job) == [{"output": i} for i in range(4)]
    assert [r.query["isStream"] for r in stub.recorded("job-stream", job)] == ["false"] * 4
    done = [r for r in stub.recorded("job-done", job)]
    assert done[-1].query["isStream"] == "true"
    chunk_answers = [r.done_t for r in stub.recorded("job-stream", job)]
    assert None not in chunk_answers and max(t for t in chunk_answers if t is not None) <= done[-1].t
    return body


async def test_generator_streams_in_order_and_aggregates(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    def gen(job: dict[str, Any]) -> Iterator[Any]:
        yield from range(job["input"]["n"])

    assert await _stream_case(stub, run_worker, gen, True) == {"output": [0, 1, 2, 3]}


async def test_async_generator_without_aggregation(stub: StubControlPlane, run_worker: RunWorker) -> None:
    async def agen(job: dict[str, Any]) -> AsyncIterator[Any]:
        for i in range(job["input"]["n"]):
            await asyncio.sleep(0.01)
            yield i

    assert await _stream_case(stub, run_worker, agen, False) == {"output": []}


async def test_generator_error_item_and_exception(stub: StubControlPlane, run_worker: RunWorker) -> None:
    def gen(job: dict[str, Any]) -> Iterator[Any]:
        yield 1
        if job["input"].get("item"):
            yield {"error": "nope", "other": 1}
            yield 2
        raise ValueError("gen broke")

    await run_worker({"handler": gen, "return_aggregate_stream": True})
    a, b = stub.add_job({"item": True}), stub.add_job({})
    assert await result(stub, a) == {"error": "nope"}
    assert stub.chunks(a) == [{"output": 1}]  # the error item is not streamed, and nothing after it
    body = await result(stub, b)
    assert json.loads(body["error"])["error_message"] == "gen broke"
    assert stub.state(a) == stub.state(b) == "FAILED"


async def test_sync_handlers_run_concurrently_in_threads_with_batch_take(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    def handler(job: dict[str, Any]) -> Any:
        start = time.time()
        time.sleep(0.6)
        return {"start": start, "end": time.time(), "thread": threading.current_thread().name}

    await run_worker({"handler": handler, "concurrency_modifier": lambda current: 3})
    t0 = time.monotonic()
    ids = [stub.add_job({}) for _ in range(3)]
    outs = [(await result(stub, j))["output"] for j in ids]
    assert time.monotonic() - t0 < 1.6  # 3 x 0.6 s sequentially would be >= 1.8 s
    assert max(o["start"] for o in outs) < min(o["end"] for o in outs)  # all three overlapped
    assert len({o["thread"] for o in outs}) == 3
    batch = stub.recorded("job-take-batch")
    assert batch and batch[0].query["batch_size"] == "3"


async def test_async_handlers_run_concurrently_and_job_in_progress_flag(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    async def handler(job: dict[str, Any]) -> Any:
        await asyncio.sleep(0.5)
        return time.time()

    await run_worker({"handler": handler, "concurrency_modifier": lambda current: 2})
    a = stub.add_job({})
    await until(lambda: stub.state(a) == "IN_PROGRESS")
    b = stub.add_job({})
    await result(stub, a)
    await result(stub, b)
    flags = [r.query["job_in_progress"] for r in stub.recorded() if r.route.startswith("job-take")]
    assert "1" in flags  # asked for more work while one job was in flight


async def test_concurrency_modifier_errors_are_survived(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    def modifier(current: int) -> int:
        raise RuntimeError("bad modifier")

    await run_worker({"handler": lambda job: 1, "concurrency_modifier": modifier})
    job = stub.add_job({})
    assert await result(stub, job) == {"output": 1}


async def test_progress_goes_before_final_and_never_after(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    gate = threading.Event()

    def handler(job: dict[str, Any]) -> Any:
        worker_sdk.progress_update(job, {"pct": 10})
        time.sleep(0.3)
        worker_sdk.progress_update(job, {"pct": 50})
        if job["input"].get("racy"):
            return "done"  # returns right after a progress update: it must not land after the result
        time.sleep(0.3)
        gate.set()
        return "done"

    await run_worker({"handler": handler})
    job = stub.add_job({})
    await result(stub, job)
    posts = stub.recorded("job-done", job)
    assert [p.body for p in posts] == [
        {"status": "IN_PROGRESS", "output": {"pct": 10}},
        {"status": "IN_PROGRESS", "output": {"pct": 50}},
        {"output": "done"},
    ]
    assert all(p.status == 200 for p in posts)
    # Slow progress answers: the final result waits for the one on the wire.
    stub.fault("job-done", ("delay", 0.5), ("delay", 0.5))
    racy = stub.add_job({"racy": True})
    await result(stub, racy)
    await asyncio.sleep(1.0)
    posts = stub.recorded("job-done", racy)
    final_post = [p for p in posts if p.body == {"output": "done"}][0]
    for p in posts:
        if p is not final_post:
            assert p.done_t is not None and p.done_t <= final_post.t and p.status == 200
    assert posts[-1] is final_post


async def test_progress_after_job_end_is_dropped(stub: StubControlPlane, run_worker: RunWorker) -> None:
    kept = {}

    def handler(job: dict[str, Any]) -> Any:
        kept["job"] = job
        return "ok"

    await run_worker({"handler": handler})
    job = stub.add_job({})
    await result(stub, job)
    worker_sdk.progress_update(kept["job"], "late")
    await asyncio.sleep(0.3)
    assert len(stub.recorded("job-done", job)) == 1


async def test_cancel_async_job_posts_nothing_and_frees_the_slot(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    cancelled = asyncio.Event()

    async def handler(job: dict[str, Any]) -> Any:
        if job["input"].get("long"):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return "quick"

    await run_worker({"handler": handler})
    job = stub.add_job({"long": True})
    await until(lambda: stub.state(job) == "IN_PROGRESS")
    await asyncio.sleep(0.2)
    stub.cancel(job)
    await asyncio.wait_for(cancelled.wait(), 5)
    nxt = stub.add_job({})
    assert await result(stub, nxt) == {"output": "quick"}
    assert stub.recorded("job-done", job) == []
    stops = stub.recorded("job-stop")
    assert stops and stops[0].query["job_in_progress"] == "1"


async def test_cancel_sync_job_discards_its_result(
    stub: StubControlPlane, run_worker: RunWorker, tmp_path: Path
) -> None:
    marker = tmp_path / "finished"

    def handler(job: dict[str, Any]) -> Any:
        time.sleep(1.0)
        marker.write_text("x")
        return "should not be posted"

    await run_worker({"handler": handler})
    job = stub.add_job({})
    await until(lambda: stub.state(job) == "IN_PROGRESS")
    await asyncio.sleep(0.2)
    stub.cancel(job)
    await until(marker.exists, 5, "the sync handler to finish")
    await asyncio.sleep(0.3)
    assert stub.recorded("job-done", job) == []


async def test_cancel_generator_stops_between_items(stub: StubControlPlane, run_worker: RunWorker) -> None:
    def gen(job: dict[str, Any]) -> Iterator[Any]:
        for i in range(100):
            time.sleep(0.05)
            yield i

    await run_worker({"handler": gen})
    job = stub.add_job({})
    await until(lambda: len(stub.chunks(job)) >= 3)
    stub.cancel(job)
    await asyncio.sleep(0.5)
    n = len(stub.chunks(job))
    await asyncio.sleep(0.5)
    assert len(stub.chunks(job)) == n < 100 and stub.recorded("job-done", job) == []


async def test_result_retried_through_errors_until_it_lands(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    stub.fault("job-done", 500, DROP, 503, ("delay", 0.1))
    await run_worker({"handler": lambda job: "ok"})
    job = stub.add_job({})
    assert await result(stub, job) == {"output": "ok"}
    await until(lambda: stub.state(job) == "COMPLETED")
    assert [r.status for r in stub.recorded("job-done", job)][:3] == [500, None, 503]


async def test_result_not_retried_when_job_is_gone(
    stub: StubControlPlane, run_worker: RunWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.fault("job-done", 409)
    await run_worker({"handler": lambda job: "ok"})
    job = stub.add_job({})
    await until(lambda: stub.recorded("job-done", job))
    await asyncio.sleep(0.5)
    assert len(stub.recorded("job-done", job)) == 1
    assert "refused the result with HTTP 409" in capsys.readouterr().out


async def test_rejected_result_is_replaced_by_an_error(stub: StubControlPlane, run_worker: RunWorker) -> None:
    stub.fault("job-done", 413)
    await run_worker({"handler": lambda job: "x" * 100})
    job = stub.add_job({})
    await until(lambda: stub.state(job) == "FAILED")
    info = json.loads(stub.recorded("job-done", job)[-1].body["error"])
    assert "413" in info["error_message"]


async def test_unserializable_output_becomes_an_error(stub: StubControlPlane, run_worker: RunWorker) -> None:
    await run_worker({"handler": lambda job: {"obj": object()}})
    job = stub.add_job({})
    body = await result(stub, job)
    assert "not JSON serializable" in json.loads(body["error"])["error_message"]


async def test_job_take_errors_and_429_back_off(stub: StubControlPlane, run_worker: RunWorker) -> None:
    stub.fault("job-take", 500, DROP, 429)
    await run_worker({"handler": lambda job: "ok"}, too_many_requests_s=0.6)
    job = stub.add_job({})
    assert await result(stub, job) == {"output": "ok"}
    takes = stub.recorded("job-take")
    i = [r.status for r in takes].index(429)
    answered_429_at = takes[i].done_t
    assert answered_429_at is not None and takes[i + 1].t - answered_429_at >= 0.55


async def test_stream_chunk_gone_stops_the_job(stub: StubControlPlane, run_worker: RunWorker) -> None:
    def gen(job: dict[str, Any]) -> Iterator[Any]:
        for i in range(50):
            time.sleep(0.02)
            yield i

    stub.fault("job-stream", 200, 410)
    await run_worker({"handler": gen})
    job = stub.add_job({})
    await until(lambda: len(stub.recorded("job-stream", job)) >= 2)
    await asyncio.sleep(0.5)
    assert len(stub.recorded("job-stream", job)) == 2 and stub.recorded("job-done", job) == []


async def test_control_plane_restart_under_a_running_job(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    def handler(job: dict[str, Any]) -> str:
        time.sleep(0.5)
        return "survived"

    await run_worker({"handler": handler})
    job = stub.add_job({})
    await until(lambda: stub.state(job) == "IN_PROGRESS")
    port = stub.port
    stub.stop()
    await asyncio.sleep(1.0)  # result POSTs fail with connection refused meanwhile
    stub.start(port)
    assert await result(stub, job, 10) == {"output": "survived"}
    nxt = stub.add_job({})
    assert await result(stub, nxt, 10) == {"output": "survived"}


async def test_heartbeat_lists_in_flight_jobs(stub: StubControlPlane, run_worker: RunWorker) -> None:
    async def handler(job: dict[str, Any]) -> Any:
        await asyncio.sleep(2.5)
        return 1

    await run_worker({"handler": handler})
    job = stub.add_job({})
    await until(
        lambda: any(r.query.get("job_id") == job for r in stub.recorded("ping")), 5, "ping with job id"
    )
    await result(stub, job, 10)
    pings = stub.recorded("ping")
    assert all(p.query["runpod_version"] == worker_sdk.__version__ for p in pings)
    assert "job_id" not in pings[0].query and pings[0].headers["Authorization"] == "tok"


async def test_shutdown_drains_in_flight_job(stub: StubControlPlane, run_worker: RunWorker) -> None:
    def handler(job: dict[str, Any]) -> str:
        time.sleep(0.8)
        return "drained"

    worker, task = await run_worker({"handler": handler})
    job = stub.add_job({})
    await until(lambda: stub.state(job) == "IN_PROGRESS")
    worker.request_shutdown("test")
    assert await asyncio.wait_for(task, 10) == 0
    assert stub.final(job) == {"output": "drained"}
    later = stub.add_job({})
    await asyncio.sleep(0.3)
    assert stub.state(later) == "IN_QUEUE"


async def test_shutdown_grace_expiry_abandons_job(stub: StubControlPlane, run_worker: RunWorker) -> None:
    async def handler(job: dict[str, Any]) -> None:
        await asyncio.sleep(30)

    worker, task = await run_worker({"handler": handler}, grace_s=0.4)
    job = stub.add_job({})
    await until(lambda: stub.state(job) == "IN_PROGRESS")
    t0 = time.monotonic()
    worker.request_shutdown("test")
    assert await asyncio.wait_for(task, 10) == 0
    assert time.monotonic() - t0 < 3 and stub.recorded("job-done", job) == []


async def test_templates_without_question_mark(stub: StubControlPlane, run_worker: RunWorker) -> None:
    env = {k: v.replace("?gpu=local", "") for k, v in stub.env().items() if k.startswith("RUNPOD_WEBHOOK")}
    await run_worker({"handler": lambda job: 7}, env=env)
    job = stub.add_job({})
    assert await result(stub, job) == {"output": 7}
    assert stub.recorded("job-take")[0].query == {"job_in_progress": "0"}


async def test_batch_answer_runs_every_job(stub: StubControlPlane, run_worker: RunWorker) -> None:
    await run_worker({"handler": lambda job: job["input"], "concurrency_modifier": lambda c: 4})
    ids = [stub.add_job(i) for i in range(4)]
    for i, job in enumerate(ids):
        assert await result(stub, job) == {"output": i}
    assert os.environ.get("RUNPOD_WEBHOOK_GET_JOB") is None  # nothing leaked into this process


async def test_internal_error_still_reports_a_failed_job(
    stub: StubControlPlane, run_worker: RunWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(Execution):  # the class worker_sdk.loop uses
        async def run(self) -> tuple[dict[str, Any], bool]:
            raise RuntimeError("sdk bug")

    monkeypatch.setattr(sdk_loop, "Execution", Broken)
    await run_worker({"handler": lambda job: 1})
    job = stub.add_job({})
    body = await result(stub, job)
    assert json.loads(body["error"])["error_message"] == "sdk bug"
