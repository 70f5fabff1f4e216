"""9. RunPod's SDK worker (runpod, in a container) between two sequential jobs: its pacing and ours.

One client sends ``/runsync`` jobs one after another to an endpoint served by one worker: the
``bench-runpod`` image (bench/handler.py on RunPod's SDK), started by this benchmark as a registered
external worker whose ``RUNPOD_WEBHOOK_*`` URLs point at a timing proxy on the Docker network's gateway.
The proxy forwards every worker request to the control plane's worker listener and stamps four moments:
the request's arrival, its forwarding, the control plane's answer, the answer's return. The client's
stamps (send, answer) come from the same event loop and clock (``time.perf_counter``).

For each measured job, the client's wait (``/runsync`` sent -> answered) splits into

* the SDK's part: the job waiting in the queue for the SDK to ask (``/runsync`` sent -> the job-take
  that got it reached the proxy), and the SDK handling it (that job-take answered -> its job-done
  reached the proxy: handing the job over, the handler, the result's POST);
* ours: the control plane answering that job-take (from its arrival, or from the job's submission if it
  was waiting already), and the job-done's arrival -> the ``/runsync`` answer at the client (storing the
  output, waking the waiter, answering).

Why the SDK asks late (runpod 1.12.0, ``rp_scale.JobScaler``): its job fetcher and its job runner are
two tasks; with the concurrency (1) taken by the running job, the fetcher finds no room and sleeps one
second (``get_jobs``: "Queue is full. Retrying soon.") before it looks again, so the next job-take
leaves about a second after the previous one, however fast the job and the control plane are. And its
job runner, with no job running, looks at its local queue every 0.1 s (``run_jobs``), so a job taken
waits up to 0.1 s more before the handler sees it (inside the "running" part).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bench import dockerx
from bench.context import Run
from bench.procs import ControlPlane, http_json
from bench.report import Row, Section, median, ms, verdict

ROWS = [
    ("pacing.gap", "RunPod's SDK worker (container): client wait per sequential /runsync job, p50"),
    (
        "pacing.sdk",
        "RunPod's SDK worker: the SDK's share (queue wait for its next job-take + running the job)",
    ),
    ("pacing.ours", "RunPod's SDK worker: our share (answering job-take + job-done -> /runsync answer)"),
]
AIM_OURS_MS = 1.5  # issue #19 "ours removed": at most the warm-path aim of a whole job
SKIP = {"host", "content-length", "transfer-encoding", "connection"}


class TimingProxy:
    """Forward ``/v2/...`` worker requests to ``upstream``, stamping each (perf_counter seconds)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.log: list[dict[str, Any]] = []
        self.first_take = asyncio.Event()
        self.http: aiohttp.ClientSession | None = None

    async def forward(self, request: web.Request) -> web.Response:
        assert self.http is not None
        t_in = time.perf_counter()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIP}
        kind = request.path.split("/")[3] if request.path.count("/") >= 3 else request.path
        if kind == "job-take":
            self.first_take.set()
        t_fwd = time.perf_counter()
        try:
            async with self.http.request(
                request.method, self.upstream + request.path_qs, data=body or None, headers=headers
            ) as resp:
                answer = await resp.read()
                t_up = time.perf_counter()
                status, ctype = resp.status, resp.headers.get("Content-Type")
        except aiohttp.ClientError as exc:  # the control plane went away (the end of the run)
            return web.Response(status=502, text=f"timing proxy: {exc}")
        job_id = request.path.rstrip("/").rsplit("/", 1)[-1] if kind == "job-done" else None
        if kind == "job-take" and status == 200 and answer:
            with contextlib.suppress(ValueError):
                data = json.loads(answer)
                first = data[0] if isinstance(data, list) and data else data
                job_id = first.get("id") if isinstance(first, dict) else None
        out = web.Response(body=answer, status=status, headers={"Content-Type": ctype} if ctype else None)
        self.log.append(dict(kind=kind, job=job_id, status=status, t_in=t_in, t_fwd=t_fwd, t_up=t_up))
        return out


async def measure(cp: ControlPlane, eid: str, env: dict[str, str], run_id: str, jobs: int) -> dict[str, Any]:
    upstream = urlsplit(env["RUNPOD_WEBHOOK_GET_JOB"])
    gateway = str(upstream.hostname)
    proxy = TimingProxy(f"{upstream.scheme}://{upstream.netloc}")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.forward)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    sock = socket.socket()
    sock.bind((gateway, 0))
    site = web.SockSite(runner, sock)
    await site.start()
    ours = f"http://{gateway}:{sock.getsockname()[1]}"
    worker_env = {k: v.replace(f"{upstream.scheme}://{upstream.netloc}", ours) for k, v in env.items()}
    proxy.http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    )
    container = ""
    client: list[tuple[str, float, float]] = []  # (job id, sent, answered)
    try:
        container, _ = await asyncio.to_thread(
            dockerx.run_labelled, dockerx.BENCH_RUNPOD, cp.network, run_id, None, worker_env
        )
        try:
            await asyncio.wait_for(proxy.first_take.wait(), 120)
        except TimeoutError as exc:
            logs = await asyncio.to_thread(dockerx.container_logs, container)
            raise RuntimeError(f"RunPod's SDK worker never asked for a job; its log:\n{logs}") from exc
        async with aiohttp.ClientSession() as http:
            for _ in range(jobs + 1):  # the first one is a warm-up
                sent = time.perf_counter()
                async with http.post(f"{cp.url}/v2/{eid}/runsync", json={"input": {"n": 1}}) as resp:
                    data = await resp.json(content_type=None)
                answered = time.perf_counter()
                if data.get("status") != "COMPLETED":
                    raise RuntimeError(f"a job on RunPod's SDK worker did not complete: {data}")
                client.append((data["id"], sent, answered))
    finally:
        if container:
            await asyncio.to_thread(dockerx.remove_container, container)
        await proxy.http.close()  # ends the held long polls (answered 502), so the cleanup need not wait
        await runner.cleanup()
    return {"client": client, "log": proxy.log}


def split(client: list[tuple[str, float, float]], log: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per job after the first: the client's wait cut at the proxy's stamps, in milliseconds."""
    takes = {r["job"]: r for r in log if r["kind"] == "job-take" and r["job"]}
    dones = {r["job"]: r for r in log if r["kind"] == "job-done"}
    out = []
    for job_id, sent, answered in client[1:]:
        take, done = takes.get(job_id), dones.get(job_id)
        if take is None or done is None:
            raise RuntimeError(f"the proxy saw no job-take or job-done for job {job_id}")
        out.append(
            {
                "wait": (answered - sent) * 1000,
                "queued": max(0.0, take["t_in"] - sent) * 1000,
                "ours_take": (take["t_up"] - max(take["t_fwd"], sent)) * 1000,
                "sdk_run": (done["t_in"] - take["t_up"]) * 1000,
                "ours_done": (answered - done["t_in"]) * 1000,
                "proxy": (take["t_fwd"] - take["t_in"] + done["t_fwd"] - done["t_in"]) * 1000,
            }
        )
    return out


def run(ctx: Run, section: Section) -> None:
    if not ctx.images.get(dockerx.BENCH_RUNPOD):
        section.rows += [Row(k, w, "not measured: no sample-runpod-sdk image") for k, w in ROWS]
        return
    cp = ctx.plane("pacing")
    try:
        eid = "pace"
        cp.create_endpoint(
            {"name": eid, "id": eid, "imageName": dockerx.BENCH_RUNPOD, "workersMin": 0, "workersMax": 0}
            | {"extraWorkers": 0, "idleTimeout": 600}
        )
        code, body = http_json("POST", f"{cp.url}/v1/endpoints/{eid}/workers", {})
        if code != 201:
            raise RuntimeError(f"registering the SDK worker failed: {code} {body}")
        result = asyncio.run(measure(cp, eid, body["env"], ctx.run_id, ctx.counts.pacing_jobs))
    finally:
        ctx.stop_plane(cp)
    parts = split(result["client"], result["log"])
    m = {k: median([p[k] for p in parts]) for k in parts[0]}
    sdk, ours = m["queued"] + m["sdk_run"], m["ours_take"] + m["ours_done"]
    kinds: dict[str, int] = {}
    for r in result["log"]:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    section.rows += [
        Row(
            "pacing.gap",
            ROWS[0][1],
            f"{ms(m['wait'])} ({len(parts)} jobs)",
            f"SDK {ms(sdk)} + ours {ms(ours)}",
        ),
        Row(
            "pacing.sdk", ROWS[1][1], f"{ms(sdk)}: queue wait {ms(m['queued'])} + running {ms(m['sdk_run'])}"
        ),
        Row(
            "pacing.ours",
            ROWS[2][1],
            f"{ms(ours)}: job-take {ms(m['ours_take'])} + job-done -> answer {ms(m['ours_done'])}",
            "",
            "",
            f"<= {AIM_OURS_MS:g} ms",
            verdict(ours <= AIM_OURS_MS),
        ),
    ]
    section.notes += [
        f"{len(parts)} measured jobs after one warm-up, one client (aiohttp), one worker: the bench-runpod image "
        "(bench/handler.py on RunPod's SDK) as a registered external worker behind the timing proxy "
        f"(bench/pacing.py). Worker requests the proxy saw: {dict(sorted(kinds.items()))}.",
        "Medians per job (ms): "
        + ", ".join(
            f"{k} {m[k]:.2f}" for k in ("wait", "queued", "ours_take", "sdk_run", "ours_done", "proxy")
        )
        + ". `queued` is the SDK's pacing; `proxy` is the timing proxy's own time before forwarding the "
        "job-take and the job-done (inside `queued` and `sdk_run`, not in ours).",
        "The SDK asks for its next job about one second after the previous job-take: with its one job slot "
        "taken, its job fetcher sleeps 1 s before looking again (rp_scale.JobScaler.get_jobs in runpod 1.12.0); "
        "a job sent meanwhile waits in the queue. Our share is what is left once the SDK has asked.",
    ]
