"""A test handler whose kind comes from HANDLER_KIND and whose behaviour comes from the job input.

HANDLER_KIND: sync | async | gen | agen.  Other env: CONCURRENCY (fixed concurrency_modifier value),
AGGREGATE=1 (return_aggregate_stream), REFRESH=1 (refresh_worker in config).
Input keys: sleep (s), spin (s of busy CPU), fail (raise ValueError(msg)), progress (list of values,
each followed by progress_gap s), items (yielded by generators, item_gap s apart), error_at (index at
which a generator yields {"error": ...}), return (value returned as is), touch (file written when the
handler body ends), refresh (return {"refresh_worker": True, ...}).
"""

from __future__ import annotations  # this file also runs on the oldest Python worker_sdk supports

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

sys.path.insert(
    0, os.environ.get("WORKER_SDK_PATH", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
)

import worker_sdk

KIND = os.environ.get("HANDLER_KIND", "sync")


def _before(job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    inp = job["input"] if isinstance(job.get("input"), dict) else {}
    return inp, {"started": time.time(), "thread": threading.current_thread().name, "pid": os.getpid()}


def _finish(inp: dict[str, Any], info: dict[str, Any]) -> Any:
    if inp.get("touch"):
        with open(inp["touch"], "w") as fh:
            fh.write("done")
    if inp.get("fail"):
        raise ValueError(inp["fail"])
    if "return" in inp:
        return inp["return"]
    info["ended"] = time.time()
    info["echo"] = inp.get("echo")
    if inp.get("refresh"):
        info["refresh_worker"] = True
    return info


def sync_handler(job: dict[str, Any]) -> Any:
    inp, info = _before(job)
    for value in inp.get("progress", []):
        worker_sdk.progress_update(job, value)
        time.sleep(inp.get("progress_gap", 0.3))
    deadline = time.time() + inp.get("spin", 0)
    while time.time() < deadline:
        pass
    time.sleep(inp.get("sleep", 0))
    return _finish(inp, info)


async def async_handler(job: dict[str, Any]) -> Any:
    inp, info = _before(job)
    for value in inp.get("progress", []):
        worker_sdk.progress_update(job, value)
        await asyncio.sleep(inp.get("progress_gap", 0.3))
    await asyncio.sleep(inp.get("sleep", 0))
    return _finish(inp, info)


def gen_handler(job: dict[str, Any]) -> Iterator[Any]:
    inp, _ = _before(job)
    for i, item in enumerate(inp.get("items", [])):
        if i == inp.get("error_at"):
            yield {"error": f"bad item {i}"}
        yield item
        time.sleep(inp.get("item_gap", 0))
    if inp.get("fail"):
        raise ValueError(inp["fail"])
    if inp.get("touch"):
        with open(inp["touch"], "w") as fh:
            fh.write("done")


async def agen_handler(job: dict[str, Any]) -> AsyncIterator[Any]:
    inp, _ = _before(job)
    for i, item in enumerate(inp.get("items", [])):
        if i == inp.get("error_at"):
            yield {"error": f"bad item {i}"}
        yield item
        await asyncio.sleep(inp.get("item_gap", 0))
    if inp.get("fail"):
        raise ValueError(inp["fail"])


HANDLERS: dict[str, Any] = {
    "sync": sync_handler,
    "async": async_handler,
    "gen": gen_handler,
    "agen": agen_handler,
}

if __name__ == "__main__":
    config: dict[str, Any] = {"handler": HANDLERS[KIND]}
    if os.environ.get("CONCURRENCY"):
        config["concurrency_modifier"] = lambda current: int(os.environ["CONCURRENCY"])
    if os.environ.get("AGGREGATE") == "1":
        config["return_aggregate_stream"] = True
    if os.environ.get("REFRESH") == "1":
        config["refresh_worker"] = True
    worker_sdk.start(config)
