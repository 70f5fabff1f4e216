"""One handler file that runs unchanged under RunPod's SDK and under worker_sdk.

SDK=runpod | worker_sdk picks the runtime (the only line that differs is the import);
COMPAT_KIND=sync | async | gen picks the handler.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

if os.environ.get("SDK", "worker_sdk") == "runpod":
    from runpod import serverless
else:
    from worker_sdk import serverless


def compute(job: dict[str, Any]) -> Any:
    inp = job["input"]
    if inp.get("fail"):
        raise ValueError(inp["fail"])
    if inp.get("error"):
        return {"error": inp["error"]}
    if inp.get("progress"):
        serverless.progress_update(job, inp["progress"])
        time.sleep(1.5)
    if "value" in inp:
        return inp["value"]
    return {
        "sum": sum(inp.get("numbers", [])),
        "upper": inp.get("text", "").upper(),
        "has_id": bool(job.get("id")),
    }


def handler(job: dict[str, Any]) -> Any:
    return compute(job)


async def async_handler(job: dict[str, Any]) -> Any:
    await asyncio.sleep(0.05)
    return compute(job)


def gen_handler(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for i, word in enumerate(job["input"].get("text", "").split()):
        if word == "ERROR":
            yield {"error": f"found ERROR at {i}"}
        yield {"i": i, "word": word}


KIND = os.environ.get("COMPAT_KIND", "sync")

if __name__ == "__main__":
    config: dict[str, Any] = {"handler": {"sync": handler, "async": async_handler, "gen": gen_handler}[KIND]}
    if KIND == "gen":
        config["return_aggregate_stream"] = True
    serverless.start(config)
