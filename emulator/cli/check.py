"""``serverless-emulator test IMAGE_OR_DIR``: the CI check of a handler image.

Builds the image (given a folder), starts a throw-away emulator with real Docker workers, runs the
job(s) of ``test_input.json``, compares each output with ``expected_output.json``, prints the
cold-start breakdown per job, and removes everything it started. Exit code 0 only if every job
COMPLETED with the expected output.
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from emulator.cli.common import (
    TERMINAL,
    busy,
    console,
    err_console,
    fail,
    fmt_ms,
    format_error,
    job_status_text,
    load_json_file,
    parse_env,
    state_text,
)

STATUS_KEYS = {"id", "status", "output", "error", "delayTime", "executionTime", "retries", "workerId", "coldStart"}
NOTHING = object()  # no expected output for a job
GIVE_UP_RESTARTS = 2  # a queued job's worker UNHEALTHY after this many restarts: stop waiting


@dataclass
class JobResult:
    index: int
    body: dict[str, Any] = field(default_factory=dict)
    expected: Any = NOTHING
    problem: str | None = None  # why the job failed the test
    diff: str | None = None
    logs: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem is None


# --- inputs and expectations (pure) ------------------------------------------------------------------------


def parse_inputs(data: Any, source: str) -> list[dict[str, Any]]:
    """``{"input": ...}`` or a list of them -> request bodies."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ValueError(f"{source} holds an empty list: nothing to run")
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or "input" not in item:
            where = f" (item {number})" if isinstance(data, list) else ""
            raise ValueError(f'{source}{where} must be an object like {{"input": {{...}}}} '
                             "(or a list of such objects)")
    return items


def unwrap_expected(value: Any) -> Any:
    """``{"output": X}`` (or a whole status body) -> X; anything else is the bare output."""
    if isinstance(value, dict) and "output" in value and set(value) <= STATUS_KEYS:
        return value["output"]
    return value


def parse_expected(data: Any, jobs: int, many: bool, source: str) -> list[Any]:
    """One expected output per job: for a list of inputs, a list of the same length pairs up;
    otherwise the expected value applies to every job."""
    if many and isinstance(data, list):
        if len(data) != jobs:
            raise ValueError(f"{source} holds {len(data)} expected outputs for {jobs} inputs")
        return [unwrap_expected(item) for item in data]
    return [unwrap_expected(data)] * jobs


def canonical(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def json_diff(expected: Any, actual: Any) -> str | None:
    """A unified diff of pretty-printed, key-sorted JSON; None when they are equal."""
    want, got = canonical(expected), canonical(actual)
    if want == got:
        return None
    lines = difflib.unified_diff(want.splitlines(), got.splitlines(), "expected", "actual", lineterm="")
    return "\n".join(lines)


def check(result: JobResult) -> None:
    body = result.body
    status = body.get("status")
    if status != "COMPLETED":
        error = body.get("error")
        detail = f": {format_error(error)}" if error is not None else ""
        result.problem = result.problem or f"job {status}{detail}"
        return
    if result.expected is not NOTHING:
        result.diff = json_diff(result.expected, body.get("output"))
        if result.diff is not None:
            result.problem = "output differs from the expected output"


# --- running -------------------------------------------------------------------------------------------------


def run_job(emu: Any, request: dict[str, Any], index: int, total: int, timeout_s: float) -> JobResult:
    result = JobResult(index)
    started = time.monotonic()
    base = f"/v2/{emu.endpoint_id}"
    job_id = emu.post(f"{base}/run", json=request)["id"]
    body: dict[str, Any] = {"id": job_id, "status": "IN_QUEUE"}
    label = f"job {index}/{total}"
    last_line = ""
    with busy(label) as spinner:
        while body.get("status") not in TERMINAL:
            elapsed = time.monotonic() - started
            worker = emu.worker()
            line = Text.assemble(f"{label} ", job_status_text(body.get("status")))
            if worker is not None and body.get("status") == "IN_QUEUE":
                line.append(" · worker ")
                line.append_text(state_text(worker.get("status")))
                if worker.get("reason"):
                    line.append(f" ({str(worker['reason']).splitlines()[0]})", style="dim")
            if spinner is not None:
                spinner.update(Text.assemble(line, (f"  {elapsed:.0f}s", "dim")))
            elif line.plain != last_line:
                err_console.print(line)
                last_line = line.plain
            if elapsed > timeout_s:
                result.problem = f"no result within {timeout_s:g} s (the job was {body.get('status')})"
                break
            if (body.get("status") == "IN_QUEUE" and worker is not None and worker.get("status") == "UNHEALTHY"
                    and int(worker.get("restarts") or 0) >= GIVE_UP_RESTARTS):
                reason = str(worker.get("reason") or "no reason given").splitlines()[0]
                result.problem = f"the worker keeps failing to start: {reason}"
                break
            try:
                body = emu.get(f"{base}/status-sync/{job_id}", params={"wait": 1000}, timeout=30)
            except Exception as exc:  # keep the loop's deadline in charge
                err_console.print(f"status of {job_id} failed: {exc}", style="dim")
                time.sleep(0.5)
    if body.get("status") not in TERMINAL:
        try:
            emu.post(f"{base}/cancel/{job_id}")
        except typer.Exit:
            pass
    result.body = body
    result.seconds = time.monotonic() - started
    if result.problem is not None or body.get("status") != "COMPLETED":
        worker = emu.worker()
        result.logs = emu.worker_logs(body.get("workerId") or (worker or {}).get("id"))
    return result


# --- reporting -------------------------------------------------------------------------------------------------


def results_table(results: list[JobResult], image: str) -> Table:
    table = Table(title=f"serverless-emulator test: {image}", title_justify="left")
    for column in ("JOB", "STATUS", "CHECK", "CREATE", "START", "READY", "QUEUE WAIT", "EXECUTION", "TOTAL"):
        table.add_column(column, justify="left" if column in ("JOB", "STATUS", "CHECK") else "right", no_wrap=True)
    for r in results:
        cold = r.body.get("coldStart") or {}
        warm = bool(cold) and not cold.get("coldStart")
        check_text = (Text("pass", style="green") if r.ok and r.expected is not NOTHING
                      else Text("ran", style="green") if r.ok else Text("FAIL", style="bold red"))
        table.add_row(
            str(r.index), job_status_text(r.body.get("status")), check_text,
            *(Text("warm", style="dim") if warm else fmt_ms(cold.get(key)) for key in ("createMs", "startMs", "readyMs")),
            fmt_ms(cold.get("queueWaitMs", r.body.get("delayTime"))), fmt_ms(r.body.get("executionTime")),
            f"{r.seconds:.1f} s",
        )
    return table


def print_failure(r: JobResult) -> None:
    console.print(Text.assemble(("✗ ", "bold red"), f"job {r.index}: ", (r.problem or "", "red")))
    if r.diff:
        for line in r.diff.splitlines():
            style = ("red" if line.startswith("-") else "green" if line.startswith("+")
                     else "cyan" if line.startswith("@@") else "")
            console.print(Text(line, style=style))
    if r.logs.strip():
        console.print(Text(f"last lines of the worker's log (job {r.index}):", style="bold"))
        for line in r.logs.rstrip().splitlines()[-30:]:
            console.print(Text("  " + line, style="dim"))


def check_image_command(
    target: str = typer.Argument(..., metavar="IMAGE_OR_DIR", help="A handler folder (built first) or an image"),
    input_file: Path | None = typer.Option(None, "--input", "-i", help="Job(s) to run: {\"input\": ...} or a "
                                           "list of them [DIR/test_input.json]"),
    expect: Path | None = typer.Option(None, "--expect", "-e", help="Expected output: {\"output\": ...} or the "
                                       "bare output, or a list per job [DIR/expected_output.json if present]"),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds each job may take, cold start included"),
    tag: str | None = typer.Option(None, "--tag", "-t", help="Tag for the image built from DIR"),
    base_image: str | None = typer.Option(None, "--base-image", help="BASE_IMAGE for the build"),
    env: list[str] | None = typer.Option(None, "--env", help="KEY=VALUE for the worker (repeatable)"),
    gpu_count: int = typer.Option(0, "--gpu-count", help="GPUs for the worker"),
    port: int = typer.Option(0, "--port", help="Port of the throw-away emulator [any free port]"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show build output and the emulator's log"),
) -> None:
    """Run a handler image's test input(s) in a throw-away emulator and check the output(s) (for CI)."""
    from emulator.cli.ephemeral import DOCKER_HINT, EphemeralEmulator, require_image

    path = Path(target)
    directory = path if path.is_dir() else None
    if directory is None and (path.exists() or target.startswith((".", "/", "~")) or target.endswith("/")):
        fail(f"{target} is not a directory", "pass a folder with a Dockerfile, or an image name")
    input_path = input_file or (directory / "test_input.json" if directory else Path("test_input.json"))
    if not input_path.is_file():
        fail(f"no test input: {input_path} does not exist",
             'write {"input": {...}} to test_input.json beside the Dockerfile, or pass --input FILE')
    raw_inputs = load_json_file(input_path, "--input")
    expect_path = expect or (directory / "expected_output.json" if directory else None)
    if expect is None and expect_path is not None and not expect_path.is_file():
        expect_path = None
    try:
        requests = parse_inputs(raw_inputs, str(input_path))
        expected = ([NOTHING] * len(requests) if expect_path is None else
                    parse_expected(load_json_file(expect_path, "--expect"), len(requests),
                                   isinstance(raw_inputs, list), str(expect_path)))
    except ValueError as exc:
        fail(str(exc))
    worker_env = parse_env(env)

    from emulator.errors import RuntimeUnavailable
    from emulator.images import build as images

    try:
        images.require_docker()
    except RuntimeUnavailable as exc:
        fail(exc.message, DOCKER_HINT)
    if directory is not None:
        from emulator.cli.images import build_directory

        image = build_directory(directory, tag, base_image, verbose)
    else:
        image = target
        require_image(image)

    try:
        results = _run_all(EphemeralEmulator(port, verbose), image, requests, expected, worker_env, gpu_count, timeout)
    except KeyboardInterrupt:
        fail("interrupted; the worker, endpoint and network it started were removed", code=130)
    _report(results, image)


def _run_all(emulator: Any, image: str, requests: list[dict[str, Any]], expected: list[Any],
             worker_env: dict[str, str], gpu_count: int, timeout: float) -> list[JobResult]:
    results: list[JobResult] = []
    with emulator as emu:
        err_console.print(f"emulator on {emu.url} (network {emu.network}); starting a worker from {image}",
                          style="dim")
        emu.create_endpoint(image, worker_env, gpu_count, timeout)
        for number, (request, want) in enumerate(zip(requests, expected, strict=True), 1):
            result = run_job(emu, request, number, len(requests), timeout)
            result.expected = want
            check(result)
            results.append(result)
            mark = Text("✓ ", style="green") if result.ok else Text("✗ ", style="red")
            err_console.print(Text.assemble(mark, f"job {number}/{len(requests)} ",
                                            job_status_text(result.body.get("status")), f" in {result.seconds:.1f}s"))
    return results


def _report(results: list[JobResult], image: str) -> None:
    console.print(results_table(results, image))
    failed = [r for r in results if not r.ok]
    for r in failed:
        print_failure(r)
    if failed:
        console.print(Text(f"FAILED: {len(failed)} of {len(results)} job(s)", style="bold red"))
        raise typer.Exit(1)
    checked = sum(1 for r in results if r.expected is not NOTHING)
    console.print(Text(f"PASSED: {len(results)} job(s)" + (f", {checked} output(s) as expected" if checked
                                                             else " (no expected output to compare)"),
                       style="bold green"))
