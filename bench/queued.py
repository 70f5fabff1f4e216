"""8. A deep queue: 100,000 jobs submitted to ``/run`` on an endpoint with no workers, then the
control plane's memory and how fast it still answers ``/health`` while they wait.

The control plane runs with ``EMULATOR_MAX_QUEUE_PER_ENDPOINT`` above the count (the default bound would
answer 429 first) and the endpoint has ``workersMin: 0, workersMax: 0``, so nothing takes a job. RSS is
read from /proc (VmRSS now, VmHWM the peak); ``/health`` is timed from this process, one call at a
time on a new connection each, before the submission (empty queue) and after it (all queued).
"""

from __future__ import annotations

import time

from bench import dockerx
from bench.context import Run
from bench.load import Clients, submit_child
from bench.procs import ControlPlane, http_json
from bench.report import Row, Section, ms, pct, ratio, verdict

ROWS = [
    ("queued.accept", "Deep queue: N jobs submitted to /run, no workers: time to accept all"),
    ("queued.rss", "Deep queue: control-plane RSS with N jobs queued (peak)"),
    ("queued.health", "Deep queue: GET /v2/{id}/health with N jobs queued, p50"),
]
AIM_RSS_MB = 300.0  # issue #19: 100,000 queued jobs with control-plane RSS under 300 MB ...
AIM_HEALTH_MS = 50.0  # ... and /health still under 50 ms
HEALTH_CALLS = 20


def health_ms(cp: ControlPlane, eid: str, calls: int) -> tuple[list[float], dict[str, int]]:
    """Wall milliseconds of ``calls`` sequential /health calls, and the last answer's job counts."""
    out: list[float] = []
    jobs: dict[str, int] = {}
    for _ in range(calls):
        began = time.perf_counter()
        code, body = http_json("GET", f"{cp.url}/v2/{eid}/health", timeout_s=60)
        out.append((time.perf_counter() - began) * 1000)
        if code != 200:
            raise RuntimeError(f"/health answered {code}: {body}")
        jobs = body["jobs"]
    return out, jobs


def run(ctx: Run, section: Section) -> None:
    c = ctx.counts
    n, eid = c.queued_jobs, "deep"
    cp = ctx.plane("queued", env={"EMULATOR_MAX_QUEUE_PER_ENDPOINT": str(n + 1000)})
    clients: Clients | None = None
    try:
        cp.create_endpoint(
            {"name": eid, "id": eid, "imageName": dockerx.BENCH_ECHO, "workersMin": 0}
            | {"workersMax": 0, "extraWorkers": 0, "idleTimeout": 600}
        )
        clients = Clients(c.scale_procs)
        empty_ms, _ = health_ms(cp, eid, HEALTH_CALLS)
        rss_idle_kb = cp.mem_kb()["VmRSS"]
        go_at = time.time() + 0.3
        per = [n // c.scale_procs + (1 if i < n % c.scale_procs else 0) for i in range(c.scale_procs)]
        specs = [
            dict(
                base=cp.url,
                endpoint=eid,
                n=k,
                concurrency=c.scale_concurrency,
                go_at=go_at,
                body={"input": {}},
            )
            for k in per
        ]
        cpu0 = cp.cpu_s()
        parts = clients.map(submit_child, specs)
        cpu_s = cp.cpu_s() - cpu0
        accepted = sum(len(p["ids"]) for p in parts)
        rejected, errors = sum(p["rejected"] for p in parts), sum(p["errors"] for p in parts)
        accept_s = max(p["last"] for p in parts) - min(p["first"] for p in parts)
        full_ms, jobs = health_ms(cp, eid, HEALTH_CALLS)
        mem = cp.mem_kb()
    finally:
        if clients is not None:
            clients.close()
        ctx.stop_plane(cp)

    label = f"{n:,}"
    peak_mb, now_mb = mem["VmHWM"] / 1024, mem["VmRSS"] / 1024
    h50, e50 = pct(full_ms, 50), pct(empty_ms, 50)
    at = "" if n == 100_000 else f" (measured at {label}, the aim is for 100,000)"
    section.rows += [
        Row(
            "queued.accept",
            ROWS[0][1].replace("N", label),
            f"{accept_s:.2f} s ({accepted / accept_s:.0f} jobs/s)",
        ),
        Row(
            "queued.rss",
            ROWS[1][1].replace("N", label),
            f"{peak_mb:.0f} MB",
            f"idle before: {rss_idle_kb / 1024:.0f} MB",
            "",
            f"< {AIM_RSS_MB:g} MB{at}",
            verdict(peak_mb < AIM_RSS_MB and accepted == n),
        ),
        Row(
            "queued.health",
            ROWS[2][1].replace("N", label),
            ms(h50),
            f"queue empty: {ms(e50)}",
            ratio(h50, e50),
            f"< {AIM_HEALTH_MS:g} ms{at}",
            verdict(h50 < AIM_HEALTH_MS),
        ),
    ]
    section.notes += [
        f"{label} jobs (`{{'input': {{}}}}`) from {c.scale_procs} client processes x {c.scale_concurrency} "
        f"keep-alive connections to an endpoint with no workers: {accepted:,} accepted, {rejected} answered 429, "
        f"{errors} errors; /health then counted {jobs.get('inQueue', '?')} in queue. Control-plane CPU during "
        f"the submission: {cpu_s:.1f} s ({cpu_s / max(1, accepted) * 1000:.2f} ms per job).",
        f"RSS: idle {rss_idle_kb / 1024:.0f} MB, {now_mb:.0f} MB with the queue full, peak (VmHWM) {peak_mb:.0f} MB.",
        f"/health, {HEALTH_CALLS} sequential calls each (urllib, a new connection per call): queue full p50 "
        f"{ms(h50)} max {ms(max(full_ms))}; queue empty p50 {ms(e50)} max {ms(max(empty_ms))}.",
    ]
