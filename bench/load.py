"""Load generators: aiohttp with keep-alive, in several client processes when one would be the bottleneck.

A single Python client process costs more CPU per request than the server it measures (about 2.8 ms
per request for httpx against ~0.7 ms of server CPU per ``/run``), so throughput and bulk submission
run in a pool of spawned processes, each with its own event loop and connection pool. Every child
reports its own CPU time, so the client's share of the machine is visible in the results.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from typing import Any

import aiohttp

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
LAST_FAILURE: list[str] = []  # the last /runsync answer that was not COMPLETED (for error messages)


def _session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), keepalive_timeout=75, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


# --- one job, the four ways ------------------------------------------------------------------------
async def one_job(
    http: aiohttp.ClientSession, kind: str, base: str, endpoint: str, body: dict[str, Any], poll_s: float
) -> tuple[bool, int]:
    """Run one job; (completed?, status calls made)."""
    if kind in ("runsync", "peer_runsync"):
        url = f"{base}/v2/{endpoint}/runsync" if kind == "runsync" else f"{base}/runsync"
        async with http.post(url, json=body) as resp:
            data = await resp.json(content_type=None)
        ok = resp.status == 200 and data.get("status") == "COMPLETED"
        if not ok:
            LAST_FAILURE[:] = [f"HTTP {resp.status}: {str(data)[:300]}"]
        return ok, 0
    if kind == "run_poll":
        run_url, status_url, status_method = (
            f"{base}/v2/{endpoint}/run",
            f"{base}/v2/{endpoint}/status/",
            "GET",
        )
    elif kind == "peer_run_status":  # the peer's /run only stashes the job; its /status runs it
        run_url, status_url, status_method = f"{base}/run", f"{base}/status/", "POST"
    else:
        raise ValueError(kind)
    async with http.post(run_url, json=body) as resp:
        data = await resp.json(content_type=None)
    if resp.status != 200:
        return False, 0
    job_id, polls = data["id"], 0
    while True:
        await asyncio.sleep(poll_s)
        async with http.request(status_method, status_url + job_id) as resp:
            data = await resp.json(content_type=None)
        polls += 1
        if data.get("status") in TERMINAL:
            return data["status"] == "COMPLETED", polls


async def sequential(
    kind: str, base: str, endpoint: str, body: dict[str, Any], n: int, warmup: int
) -> list[float]:
    """n jobs one after another on one keep-alive connection; wall milliseconds of each."""
    out: list[float] = []
    async with _session(1) as http:
        for i in range(warmup + n):
            began = time.perf_counter()
            ok, _ = await one_job(http, kind, base, endpoint, body, 0.0)
            elapsed = (time.perf_counter() - began) * 1000
            if not ok:
                raise RuntimeError(f"a {kind} job against {base}/{endpoint} did not complete: {LAST_FAILURE}")
            if i >= warmup:
                out.append(elapsed)
    return out


# --- children ------------------------------------------------------------------------------------
async def _throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """``clients`` loops, each running jobs back to back from go_at until end_at; counts jobs that
    completed inside [start_at, end_at]."""
    start_at, end_at = spec["start_at"], spec["end_at"]
    stats: dict[str, Any] = {"completed": 0, "errors": 0, "polls": 0, "latencies_ms": [], "cpu_s": 0.0}
    cpu_marks: list[float] = []

    async def client(http: aiohttp.ClientSession) -> None:
        while time.time() < end_at:
            began = time.time()
            try:
                ok, polls = await one_job(
                    http, spec["kind"], spec["base"], spec["endpoint"], spec["body"], spec["poll_s"]
                )
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError):
                ok, polls = False, 0
            done = time.time()
            if start_at <= done <= end_at:
                stats["completed" if ok else "errors"] += 1
                stats["polls"] += polls
                stats["latencies_ms"].append((done - began) * 1000)

    async def cpu_meter() -> None:
        for mark in (start_at, end_at):
            await asyncio.sleep(max(0.0, mark - time.time()))
            cpu_marks.append(_cpu())

    await asyncio.sleep(max(0.0, spec["go_at"] - time.time()))
    async with _session(spec["clients"]) as http:
        await asyncio.gather(cpu_meter(), *(client(http) for _ in range(spec["clients"])))
    stats["cpu_s"] = cpu_marks[1] - cpu_marks[0]
    return stats


def throughput_child(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_throughput(spec))


async def _submit(spec: dict[str, Any]) -> dict[str, Any]:
    """Submit ``n`` jobs to ``/run`` with ``concurrency`` connections; ids accepted, 429s, errors."""
    await asyncio.sleep(max(0.0, spec["go_at"] - time.time()))
    cpu0, ids, rejected, errors = _cpu(), [], 0, 0
    remaining = spec["n"]
    url = f"{spec['base']}/v2/{spec['endpoint']}/run"
    first = time.time()

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal remaining, rejected, errors
        while remaining > 0:
            remaining -= 1
            try:
                async with http.post(url, json=spec["body"]) as resp:
                    data = await resp.json(content_type=None)
                if resp.status == 200:
                    ids.append(data["id"])
                elif resp.status == 429:
                    rejected += 1
                else:
                    errors += 1
            except (TimeoutError, aiohttp.ClientError, ValueError):
                errors += 1

    async with _session(spec["concurrency"]) as http:
        await asyncio.gather(*(client(http) for _ in range(spec["concurrency"])))
    return {
        "ids": ids,
        "rejected": rejected,
        "errors": errors,
        "first": first,
        "last": time.time(),
        "cpu_s": _cpu() - cpu0,
    }


def submit_child(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_submit(spec))


async def _statuses(spec: dict[str, Any]) -> dict[str, Any]:
    """The status of every id; counts per status ('missing' for a 404)."""
    counts: dict[str, int] = {}
    queue = list(spec["ids"])
    prefix = f"{spec['base']}/v2/{spec['endpoint']}/status/"

    async def client(http: aiohttp.ClientSession) -> None:
        while queue:
            job_id = queue.pop()
            async with http.get(prefix + job_id) as resp:
                data = await resp.json(content_type=None)
            status = (
                data.get("status", "?")
                if resp.status == 200
                else ("missing" if resp.status == 404 else f"http {resp.status}")
            )
            counts[status] = counts.get(status, 0) + 1

    async with _session(spec["concurrency"]) as http:
        await asyncio.gather(*(client(http) for _ in range(spec["concurrency"])))
    return counts


def statuses_child(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_statuses(spec))


def _warm(_: int) -> int:
    time.sleep(0.3)  # keep each child busy so that every one of them is started and has imported aiohttp
    return os.getpid()


class Clients:
    """A pool of spawned client processes (ended by ``close``; they are this run's own children)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.pool = multiprocessing.get_context("spawn").Pool(processes)
        self.pids = sorted(set(self.pool.map(_warm, range(processes), chunksize=1)))

    def map(self, fn: Any, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(self.pool.map(fn, specs, chunksize=1))

    def throughput(
        self,
        kind: str,
        base: str,
        endpoint: str,
        clients: int,
        warm_s: float,
        dur_s: float,
        poll_s: float,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        """Split ``clients`` over the processes; returns merged stats with the window's bounds."""
        go_at = time.time() + 0.5
        start_at, end_at = go_at + warm_s, go_at + warm_s + dur_s
        per = [
            clients // self.processes + (1 if i < clients % self.processes else 0)
            for i in range(self.processes)
        ]
        specs = [
            dict(
                kind=kind,
                base=base,
                endpoint=endpoint,
                clients=c,
                go_at=go_at,
                start_at=start_at,
                end_at=end_at,
                poll_s=poll_s,
                body=body,
            )
            for c in per
            if c > 0
        ]
        result = self.pool.map_async(throughput_child, specs, chunksize=1)
        merged = {
            "start_at": start_at,
            "end_at": end_at,
            "completed": 0,
            "errors": 0,
            "polls": 0,
            "latencies_ms": [],
            "client_cpu_s": 0.0,
        }
        merged["_async"] = result
        return merged

    @staticmethod
    def collect(merged: dict[str, Any]) -> dict[str, Any]:
        for part in merged.pop("_async").get(timeout=600):
            for key in ("completed", "errors", "polls"):
                merged[key] += part[key]
            merged["latencies_ms"] += part["latencies_ms"]
            merged["client_cpu_s"] += part["cpu_s"]
        return merged

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()
