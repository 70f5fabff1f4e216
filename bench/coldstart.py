"""3. Cold start (an endpoint at 0 workers to its first result) against the ``docker run`` floor, and
4. FlashBoot resume (a paused idle worker to its next result).

Cold start: a fresh endpoint (``workersMin: 0``, ``workersMax: 1``, ``scalerType: REQUEST_COUNT``,
``scalerValue: 1``, so the scaler starts a worker for the first queued job at once) gets one
``/runsync``; the wall time to its result is the cold start, and the result's ``coldStart`` body
gives the breakdown. Twice: with ``extraWorkers: 0`` (the container is created after the job
arrives) and with ``extraWorkers: 1`` (a standby container was created ahead, only started). The
floor is ``docker run --rm IMAGE python -c pass`` on the same image, interleaved with the cold starts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import dockerx
from bench.context import Run
from bench.procs import ControlPlane, http_json, wait_until
from bench.report import Row, Section, median, ms, ratio, verdict

COLD_ROWS = [
    ("cold.start", "Cold start: endpoint at 0 workers -> first /runsync result (new container)"),
    ("cold.breakdown", "Cold-start breakdown, median (coldStart: queueWait / create / start / ready)"),
    ("cold.standby", "Cold start from a standby container (extraWorkers: 1; the default is 2)"),
]
FLASH_ROWS = [("flashboot.resume", "FlashBoot: paused idle worker -> next /runsync result")]
AIM_COLD = 1.15  # issue #19: cold start at most 1.15x the docker run floor
AIM_FLASH_MS = 20.0  # issue #19: FlashBoot resume at most 20 ms
PAUSED_FOR_S = 1.0
SUPERVISOR = Path(__file__).resolve().parents[1] / "emulator" / "supervisor"


def spec(eid: str, extra: int = 0, **more: Any) -> dict[str, Any]:
    return {
        "name": eid,
        "id": eid,
        "imageName": dockerx.BENCH_ECHO,
        "workersMin": 0,
        "workersMax": 1,
        "extraWorkers": extra,
        "scalerType": "REQUEST_COUNT",
        "scalerValue": 1,
        "idleTimeout": 600,
        **more,
    }


def runsync(cp: ControlPlane, eid: str) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    code, body = http_json(
        "POST", f"{cp.url}/v2/{eid}/runsync?wait=120000", {"input": {"message": "cold"}}, timeout_s=150
    )
    elapsed = (time.perf_counter() - began) * 1000
    if code != 200 or body.get("status") != "COMPLETED":
        raise RuntimeError(f"the job on {eid} did not complete: {code} {body}; log:\n{cp.log_tail()}")
    return elapsed, body


def cold_once(cp: ControlPlane, eid: str, standby: bool) -> tuple[float, dict[str, Any]]:
    cp.create_endpoint(spec(eid, extra=1 if standby else 0))
    try:
        if standby:
            wait_until(
                lambda: any(w["standby"] and w["containerId"] for w in cp.workers(eid)),
                60,
                f"a standby container on {eid}",
            )
            time.sleep(0.2)  # let the create settle: the cold start below should not overlap it
        elif cp.workers(eid):
            raise RuntimeError(f"{eid} has workers before its first job")
        elapsed, body = runsync(cp, eid)
        return elapsed, body.get("coldStart") or {}
    finally:
        cp.delete_endpoint(eid)


def run_cold(ctx: Run, section: Section) -> None:
    n = ctx.counts.cold_runs
    cp = ctx.plane("coldstart")
    floor: list[float] = []
    cold: list[tuple[float, dict[str, Any]]] = []
    standby: list[tuple[float, dict[str, Any]]] = []
    try:
        dockerx.docker_run_floor(dockerx.BENCH_ECHO, ctx.run_id)  # warm-up (page cache), not counted
        cold_once(cp, "coldwarm", standby=False)
        for i in range(n):
            floor.append(dockerx.docker_run_floor(dockerx.BENCH_ECHO, ctx.run_id) * 1000)
            cold.append(cold_once(cp, f"cold{i}", standby=False))
            standby.append(cold_once(cp, f"standby{i}", standby=True))
    finally:
        ctx.stop_plane(cp)
    f = median(floor)
    c = median([t for t, _ in cold])
    s = median([t for t, _ in standby])

    def part(key: str, runs: list[tuple[float, dict[str, Any]]]) -> str:
        values = [b[key] for _, b in runs if key in b]
        return ms(median(values)) if values else "-"

    keys = ("queueWaitMs", "createMs", "startMs", "readyMs")
    section.rows += [
        Row(
            "cold.start",
            COLD_ROWS[0][1],
            ms(c),
            f"{ms(f)} (docker run)",
            ratio(c, f),
            f"<= {AIM_COLD:g}x floor",
            verdict(c <= AIM_COLD * f),
        ),
        Row(
            "cold.breakdown",
            COLD_ROWS[1][1],
            " / ".join(part(k, cold) for k in keys),
            "standby: " + " / ".join(part(k, standby) for k in keys),
        ),
        Row(
            "cold.standby",
            COLD_ROWS[2][1],
            ms(s),
            f"{ms(f)} (docker run)",
            ratio(s, f),
            f"<= {AIM_COLD:g}x floor",
            verdict(s <= AIM_COLD * f),
        ),
    ]
    section.notes += [
        f"{n} cold starts of each kind, interleaved with {n} `docker run --rm IMAGE python -c pass` (the floor: "
        "the docker CLI creating, starting, attaching to, waiting for and removing a container that runs an empty "
        f"Python) on the same image `{dockerx.BENCH_ECHO}`, after one warm-up of each.",
        f"Cold start, each run (ms): {', '.join(f'{t:.0f}' for t, _ in cold)}; standby: "
        f"{', '.join(f'{t:.0f}' for t, _ in standby)}; floor: {', '.join(f'{t:.0f}' for t in floor)}.",
        "queueWaitMs is the whole wait of the job before a worker took it (it contains create, start and "
        "ready); createMs is `docker create`, startMs `docker start`, readyMs from the start to the worker's "
        "first contact (Python start, `import worker_sdk`, the first job-take).",
        "The emulator's cold start does not wait for a container to exit or be removed, which the floor does; "
        "it does import the SDK and the handler and make a network round trip, which the floor does not.",
    ]


# --- FlashBoot ----------------------------------------------------------------------------------------
def supervisor_mentions() -> int:
    return sum(p.read_text().lower().count("flashboot") for p in SUPERVISOR.glob("*.py"))


def wait_paused(cp: ControlPlane, eid: str, timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """The paused worker, or None and why not (removed, or never paused)."""
    deadline = time.monotonic() + timeout_s
    seen_worker = False
    while time.monotonic() < deadline:
        workers = [w for w in cp.workers(eid) if not w["standby"]]
        seen_worker = seen_worker or bool(workers)
        for w in workers:
            if w.get("paused") and w.get("containerId") and dockerx.container_paused(w["containerId"]):
                return w, ""
        if seen_worker and not workers:
            return None, "the idle worker was removed, not paused"
        time.sleep(0.05)
    return None, f"no worker was paused within {timeout_s:.0f} s"


def run_flashboot(ctx: Run, section: Section) -> None:
    n, idle_s = ctx.counts.flash_runs, 1
    mentions = supervisor_mentions()
    cp = ctx.plane("flashboot")
    resumes: list[tuple[float, dict[str, Any]]] = []
    warm: list[float] = []
    why = ""
    try:
        cp.create_endpoint(spec("flash", flashboot=True, idleTimeout=idle_s))
        cold_ms, _ = runsync(cp, "flash")
        for _ in range(n):
            worker, why = wait_paused(cp, "flash", idle_s + 20)
            if worker is None:
                break
            time.sleep(PAUSED_FOR_S)  # a worker paused a while ago, not one caught in the act
            resumes.append(runsync(cp, "flash"))
            warm.append(runsync(cp, "flash")[0])
    finally:
        ctx.stop_plane(cp)
    name, (key, what) = "FlashBoot", FLASH_ROWS[0]
    if not resumes:
        section.rows.append(
            Row(
                key,
                what,
                f"not available: {why}",
                f"cold start {ms(cold_ms)}",
                "",
                f"<= {AIM_FLASH_MS:g} ms",
                "n/a",
            )
        )
        section.notes.append(
            f"{name} is not available in this build: an endpoint with `flashboot: true` and idleTimeout {idle_s} s "
            f"served a cold job, then {why} (`flashboot` appears {mentions} time(s) in emulator/supervisor/). "
            "The benchmark is ready: it reports the resume time once the supervisor pauses idle workers."
        )
        return
    r = median([t for t, _ in resumes])
    resume_ms = [b["coldStart"]["resumeMs"] for _, b in resumes if "resumeMs" in (b.get("coldStart") or {})]
    detail = f" (coldStart.resumeMs {ms(median(resume_ms))})" if resume_ms else ""
    section.rows.append(
        Row(
            key,
            what,
            ms(r) + detail,
            f"cold start {ms(cold_ms)}",
            ratio(r, cold_ms),
            f"<= {AIM_FLASH_MS:g} ms",
            verdict(r <= AIM_FLASH_MS),
        )
    )
    section.notes += [
        f"{len(resumes)} resume(s): an endpoint with `flashboot: true`, idleTimeout {idle_s} s; after its first (cold) "
        f"job the benchmark waits until the worker is paused (the API's `paused` and Docker's State.Paused), "
        f"{PAUSED_FOR_S:g} s more, then times one /runsync from the client.",
        f"Resumes (ms): {', '.join(f'{t:.0f}' for t, _ in resumes)}; the warm job right after each: "
        f"{', '.join(f'{t:.0f}' for t in warm)}; coldStart of the resumed jobs: {[b.get('coldStart') for _, b in resumes]}.",
        "The figure is the client's wall time for the whole job (unpause, the worker's job-take, the handler, "
        "job-done, the /runsync answer); resumeMs is the control plane's own timing of the unpause.",
    ]
