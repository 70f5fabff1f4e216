"""``serverless-emulator test IMAGE_OR_DIR --type LB``: the CI check of a load-balancing image.

A throw-away emulator with one real Docker worker of a load-balancing endpoint (RunPod's type ``LB``);
waits until the worker's health check answers 200 (reporting its cold start), then sends each request
of the list (``emulator.cli.lbtests``) through the emulator's proxy (``/lb/{id}/PATH``, as a client
calls ``https://ENDPOINT_ID.api.runpod.ai/PATH``) and judges each answer. The same reports as for
queue images (table, ``--junit-xml``, GitHub Actions summary); the same exit codes: 0 all passed, 1
a request failed (or the request file is wrong), 2 the image did not build or its worker never got
ready.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.table import Table
from rich.text import Text

from emulator.cli import lbtests
from emulator.cli.common import console, err_console, fail, load_json_file, parse_env
from emulator.cli.hubtests import NOTHING, Verdict
from emulator.cli.reports import JobResult

REQUESTS_FILE = lbtests.REQUESTS_FILE
READY = frozenset({"IDLE", "RUNNING"})
GIVE_UP_RESTARTS = 2


def load_cases(
    directory: Path | None, requests_file: Path | None, health_path: str
) -> tuple[list[lbtests.HttpCase], str]:
    """The requests to send and where they came from (``--requests``, ``DIR/test_requests.json``, or
    the default health request); exits 1 naming what is wrong in the file."""
    path = requests_file
    if path is None and directory is not None and (directory / REQUESTS_FILE).is_file():
        path = directory / REQUESTS_FILE
    if path is None:
        return lbtests.default_cases(health_path), f"the default (GET {health_path} answers 200)"
    if not path.is_file():
        fail(
            f"no request file: {path} does not exist",
            'write [{"method": "GET", "path": "/ping", "status": 200}]',
        )
    data = load_json_file(path, "the request file")
    try:
        return lbtests.parse_requests(data, str(path)), str(path)
    except ValueError as exc:
        fail(str(exc))


def wait_ready(emu: Any, timeout_s: float) -> tuple[dict[str, Any] | None, str | None]:
    """Wait for the worker's first 200 from its health path: (the worker, None), or (the worker or
    None, the reason it is not ready: UNHEALTHY after restarts, or the time ran out)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    worker: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        worker = emu.worker()
        if worker is not None:
            status = str(worker.get("status"))
            line = f"worker {worker['id']} {status} ({worker.get('health') or worker.get('reason') or 'no answer yet'})"
            if line != last:
                err_console.print(line, style="dim")
                last = line
            if status in READY:
                return worker, None
            if status == "UNHEALTHY" and int(worker.get("restarts") or 0) >= GIVE_UP_RESTARTS:
                reason = str(worker.get("reason") or "no reason given").splitlines()[0]
                return worker, f"the worker keeps failing to start: {reason}"
        time.sleep(0.2)
    health = (worker or {}).get("health") or "its health path never answered"
    return worker, f"no worker ready within {timeout_s:g} s (last health check: {health})"


def send(http: httpx.Client, endpoint_id: str, case: lbtests.HttpCase, timeout_s: float) -> JobResult:
    """Send one request through the proxy and judge the answer."""
    result = JobResult(case.as_test_case(), timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    kw: dict[str, Any] = {"headers": case.headers, "timeout": case.timeout_s or timeout_s}
    if case.json_body is not NOTHING:
        kw["json"] = case.json_body
    elif case.body is not None:
        kw["content"] = case.body.encode()
    started = time.monotonic()
    try:
        r = http.request(case.method, f"/lb/{endpoint_id}{case.path}", **kw)
    except httpx.HTTPError as exc:
        result.seconds = time.monotonic() - started
        result.verdict = Verdict(f"no answer: {exc!r}")
        return result
    result.seconds = time.monotonic() - started
    text = r.text
    result.body = {
        "status": r.status_code,
        "workerId": r.headers.get("x-runpod-worker-id"),
        "output": _json_or_text(text),
        "executionTime": round(result.seconds * 1000),
    }
    result.verdict = lbtests.judge(case, r.status_code, text)
    return result


def results_table(results: list[JobResult], image: str, cold_start_s: float | None) -> Table:
    title = f"serverless-emulator test (load-balancing): {image}"
    if cold_start_s is not None:
        title += f" · cold start {cold_start_s:.1f} s"
    table = Table(title=title, title_justify="left")
    for column in ("TEST", "REQUEST", "STATUS", "CHECK", "WORKER", "TIME"):
        table.add_column(column, justify="right" if column == "TIME" else "left", no_wrap=True)
    for r in results:
        request = r.case.request
        table.add_row(
            r.case.name,
            f"{request.get('method')} {request.get('path')}",
            str(r.body.get("status") or "-"),
            Text("pass", style="green") if r.ok else Text("FAIL", style="bold red"),
            str(r.body.get("workerId") or "-"),
            f"{r.seconds * 1000:.0f} ms",
        )
    return table


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text[:2000]


def run_lb_tests(
    image: str,
    cases: list[lbtests.HttpCase],
    env: dict[str, str],
    gpus: int,
    settings: dict[str, Any],
    timeout_s: float,
    cold_start_s: float,
    port: int,
    verbose: bool,
) -> tuple[list[JobResult], float | None, str | None]:
    """Start a throw-away emulator with one worker of ``image`` on a load-balancing endpoint, wait for
    it, send ``cases``. Returns (results, the worker's cold start in seconds, why the worker never got
    ready or None)."""
    from emulator.cli.ephemeral import EphemeralEmulator

    results: list[JobResult] = []
    with EphemeralEmulator(port, verbose, settings=settings) as emu:
        err_console.print(
            f"emulator on {emu.url} (network {emu.network}); starting a load-balancing worker from {image}",
            style="dim",
        )
        emu.create_endpoint(image, env, gpus, timeout_s, endpoint_type="LB")
        worker, problem = wait_ready(emu, cold_start_s)
        if problem is not None:
            logs = emu.worker_logs((worker or {}).get("id"))
            return [], None, problem + (f"\nlast lines of the worker's log:\n{logs}" if logs.strip() else "")
        assert worker is not None and emu.http is not None
        cold = None  # container start to its first 200, as RunPod measures a load-balancing cold start
        if worker.get("readyAt") and worker.get("startedAt"):
            cold = float(worker["readyAt"]) - float(worker["startedAt"])
        err_console.print(
            f"worker {worker['id']} ready" + (f" after {cold:.1f} s" if cold is not None else ""), style="dim"
        )
        for number, case in enumerate(cases, 1):
            result = send(emu.http, emu.endpoint_id, case, timeout_s)
            if not result.ok:
                result.logs = emu.worker_logs(result.body.get("workerId") or worker["id"])
            mark = Text("✓ ", style="green") if result.ok else Text("✗ ", style="red")
            err_console.print(
                Text.assemble(
                    mark, f"{case.name} ({number}/{len(cases)}) HTTP {result.body.get('status', '-')}"
                )
            )
            results.append(result)
    return results, cold, None


def check_lb_image(
    target: str,
    directory: Path | None,
    tests_from: Path | None,
    requests_file: Path | None,
    env: list[str] | None,
    gpu_count: int | None,
    timeout: float,
    cold_start: float,
    tag: str | None,
    base_image: str | None,
    port: int,
    junit_xml: Path | None,
    verbose: bool,
) -> None:
    """``test --type LB``: build or find the image, run its requests (emulator.cli.lbcheck), report."""
    from emulator.cli.check import IMAGE_FAILED, finish, gpu_settings, image_to_test

    worker_env = parse_env(env)
    health_path = worker_env.get("HEALTH_CHECK_PATH", "").strip() or "/ping"
    cases, source = load_cases(directory or tests_from, requests_file, health_path)
    err_console.print(f"{len(cases)} request(s) from {source}", style="dim")
    image = image_to_test(target, directory, tag, base_image, verbose, junit_xml)
    overrides, notes = gpu_settings(gpu_count or 0)
    for note in notes:
        err_console.print(note, style="yellow")
    try:
        results, cold, problem = run_lb_tests(
            image, cases, worker_env, gpu_count or 0, overrides, timeout, cold_start, port, verbose
        )
    except KeyboardInterrupt:
        fail("interrupted; the worker, endpoint and network it started were removed", code=130)
    if problem is not None:
        finish([], image, junit_xml, notes, image_problem=problem)
        fail(
            problem,
            "check PORT/PORT_HEALTH/HEALTH_CHECK_PATH (--env) against what the server listens on",
            code=IMAGE_FAILED,
        )
    console.print(results_table(results, image, cold))
    finish(results, image, junit_xml, notes, table=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)
