"""``serverless-emulator test IMAGE_OR_DIR``: the CI check of a handler image, as RunPod's Hub runs it.

Finds the tests (``--input``, else ``DIR/.runpod/tests.json``, ``DIR/.github/tests.json``,
``DIR/test_input.json``; formats in ``emulator.cli.hubtests``), builds ``DIR/.runpod/Dockerfile``
when present (the Hub gives ``.runpod/`` precedence) else ``DIR/Dockerfile``, starts a throw-away
emulator with one real Docker worker, runs each test's job, judges it, prints the cold-start
breakdown per job, writes ``--junit-xml`` and the GitHub Actions summary, and removes everything it
started. Exit codes: 0 every test passed, 1 a test failed (or the test files are wrong), 2 the image
did not build or its worker did not start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.table import Table
from rich.text import Text

from emulator.cli import hubtests, lbtests, reports
from emulator.cli.common import (
    TERMINAL,
    busy,
    console,
    err_console,
    fail,
    fmt_ms,
    job_status_text,
    load_json_file,
    parse_env,
    state_text,
)
from emulator.cli.hubtests import NOTHING, TestCase, TestPlan
from emulator.cli.reports import JobResult

GIVE_UP_RESTARTS = 2  # a queued job's worker UNHEALTHY after this many restarts: stop waiting
IMAGE_FAILED = 2  # exit code: the image did not build or its worker did not start
READY_STATES = frozenset({"IDLE", "RUNNING", "THROTTLED", "OUTDATED"})


# --- finding the tests (file reading around the pure parsers) ---------------------------------------------


def load_plan(directory: Path | None, input_file: Path | None, expect: Path | None) -> TestPlan:
    """The plan for ``directory`` (or ``--input``); exits 1 with a hint when there is none or it is wrong."""
    found = hubtests.find_tests(directory, input_file)
    if found is None:
        fail(
            f"no tests in {directory or '.'}: none of .runpod/tests.json, .github/tests.json, test_input.json",
            'write {"input": {...}} to test_input.json beside the Dockerfile, '
            "add RunPod Hub tests in .runpod/tests.json, or pass --input FILE",
        )
    kind, path = found
    if not path.is_file():
        fail(f"no test input: {path} does not exist", 'pass --input FILE with {"input": {...}}')
    data = load_json_file(path, "--input" if input_file is not None else "the test file")
    if input_file is not None:
        kind = hubtests.sniff_kind(data)
    if kind != "inputs" and expect is not None:
        fail(f"--expect applies to test_input.json-style inputs; {path} carries its own rule")
    try:
        if kind == "hub":
            hub_path = (directory / hubtests.HUB_JSON) if directory is not None else path.parent / "hub.json"
            hub = load_json_file(hub_path, "hub.json") if hub_path.is_file() else None
            return hubtests.parse_hub(data, str(path), hub, str(hub_path))
        if kind == "test-runner":
            return hubtests.parse_runner(data, str(path))
        # DIR/expected_output.json belongs to DIR/test_input.json only, never to another --input
        expect_path = expect
        if expect is None and input_file is None and directory is not None:
            candidate = directory / hubtests.EXPECTED
            expect_path = candidate if candidate.is_file() else None
        expected = NOTHING if expect_path is None else load_json_file(expect_path, "--expect")
        return hubtests.parse_input_file(data, str(path), expected, str(expect_path))
    except ValueError as exc:
        fail(str(exc))


def dockerfile_for(directory: Path) -> Path:
    """``.runpod/Dockerfile`` when present (RunPod's Hub gives ``.runpod/`` precedence), else ``Dockerfile``."""
    override = directory / ".runpod" / "Dockerfile"
    return override if override.is_file() else directory / "Dockerfile"


# --- running -------------------------------------------------------------------------------------------------


def run_job(emu: Any, case: TestCase, index: int, total: int, deadline_s: float) -> tuple[JobResult, bool]:
    """Send one job and wait for its final status (or ``deadline_s``); returns the result and whether
    the worker never started."""
    result = JobResult(case, timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    started = time.monotonic()
    base = f"/v2/{emu.endpoint_id}"
    job_id = emu.post(f"{base}/run", json=case.request)["id"]
    body: dict[str, Any] = {"id": job_id, "status": "IN_QUEUE"}
    label = f"{case.name} ({index}/{total})"
    last_line = ""
    problem: str | None = None
    not_started = False
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
            waiting = body.get("status") == "IN_QUEUE"
            if elapsed > deadline_s:
                problem = f"no result within {deadline_s:g} s (the job was {body.get('status')})"
                not_started = waiting and (worker is None or worker.get("status") not in READY_STATES)
                break
            if (
                waiting
                and worker is not None
                and worker.get("status") == "UNHEALTHY"
                and int(worker.get("restarts") or 0) >= GIVE_UP_RESTARTS
            ):
                reason = str(worker.get("reason") or "no reason given").splitlines()[0]
                problem = f"the worker keeps failing to start: {reason}"
                not_started = True
                break
            try:
                body = emu.get(f"{base}/status-sync/{job_id}", params={"wait": 1000}, timeout=30)
            except Exception as exc:  # keep the loop's deadline in charge
                err_console.print(f"status of {job_id} failed: {exc}", style="dim")
                time.sleep(0.5)
    if body.get("status") not in TERMINAL:
        with contextlib.suppress(typer.Exit):
            emu.post(f"{base}/cancel/{job_id}")
    result.body = body
    result.seconds = time.monotonic() - started
    result.verdict = hubtests.Verdict(problem) if problem else hubtests.judge(case, body)
    if not result.ok:
        worker = emu.worker()
        result.logs = emu.worker_logs(body.get("workerId") or (worker or {}).get("id"))
    return result, not_started


# --- reporting -------------------------------------------------------------------------------------------------


def results_table(results: list[JobResult], image: str) -> Table:
    table = Table(title=f"serverless-emulator test: {image}", title_justify="left")
    for column in ("TEST", "STATUS", "CHECK", "CREATE", "START", "READY", "QUEUE WAIT", "EXECUTION", "TOTAL"):
        table.add_column(
            column, justify="left" if column in ("TEST", "STATUS", "CHECK") else "right", no_wrap=True
        )
    for r in results:
        cold = r.body.get("coldStart") or {}
        warm = bool(cold) and not cold.get("coldStart")
        checked = r.case.expected is not NOTHING or r.case.no_error or r.case.status != "COMPLETED"
        check_text = (
            Text("pass", style="green")
            if r.ok and checked
            else Text("ran", style="green")
            if r.ok
            else Text("FAIL", style="bold red")
        )
        table.add_row(
            r.case.name,
            job_status_text(r.body.get("status")),
            check_text,
            *(
                Text("warm", style="dim") if warm else fmt_ms(cold.get(key))
                for key in ("createMs", "startMs", "readyMs")
            ),
            fmt_ms(cold.get("queueWaitMs", r.body.get("delayTime"))),
            fmt_ms(r.body.get("executionTime")),
            f"{r.seconds:.1f} s",
        )
    return table


def print_failure(r: JobResult) -> None:
    console.print(Text.assemble(("✗ ", "bold red"), f"{r.case.name}: ", (r.verdict.problem or "", "red")))
    if r.verdict.diff:
        for line in r.verdict.diff.splitlines():
            style = (
                "red"
                if line.startswith("-")
                else "green"
                if line.startswith("+")
                else "cyan"
                if line.startswith("@@")
                else ""
            )
            console.print(Text(line, style=style))
    if r.logs.strip():
        console.print(Text(f"last lines of the worker's log ({r.case.name}):", style="bold"))
        for line in r.logs.rstrip().splitlines()[-30:]:
            console.print(Text("  " + line, style="dim"))


def check_image_command(
    target: str = typer.Argument(
        ..., metavar="IMAGE_OR_DIR", help="A handler folder (built first) or an image"
    ),
    input_file: Path | None = typer.Option(
        None,
        "--input",
        "-i",
        help='Tests to run: {"input": ...}, a list of '
        "them, a Hub tests.json or a test-runner list [found in DIR: "
        ".runpod/tests.json, .github/tests.json, test_input.json]",
    ),
    expect: Path | None = typer.Option(
        None,
        "--expect",
        "-e",
        help='Expected output: {"output": ...} or the '
        "bare output, or a list per job [DIR/expected_output.json with "
        "DIR/test_input.json]",
    ),
    timeout: float = typer.Option(
        300.0,
        "--timeout",
        help="Seconds each job may take, cold start included (for tests without a timeout of their own)",
    ),
    cold_start: float = typer.Option(
        300.0, "--cold-start", help="Seconds added to a Hub test's own timeout for the worker's cold start"
    ),
    tag: str | None = typer.Option(None, "--tag", "-t", help="Tag for the image built from DIR"),
    base_image: str | None = typer.Option(None, "--base-image", help="BASE_IMAGE for the build"),
    env: list[str] | None = typer.Option(
        None, "--env", help="KEY=VALUE for the worker (repeatable; overrides hub.json and tests.json)"
    ),
    gpu_count: int | None = typer.Option(
        None,
        "--gpu-count",
        help="GPUs for the worker [tests.json or hub.json "
        "config.gpuCount, else 0]; emulated when the host has none",
    ),
    tests_from: Path | None = typer.Option(
        None,
        "--tests-from",
        help="Folder whose test files to read when "
        "IMAGE_OR_DIR is an image (as if it had been built from there)",
    ),
    port: int = typer.Option(0, "--port", help="Port of the throw-away emulator [any free port]"),
    junit_xml: Path | None = typer.Option(
        None, "--junit-xml", help="Write a JUnit XML report (one test case per job)"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show build output and the emulator's log"),
    endpoint_type: str | None = typer.Option(
        None,
        "--type",
        help="QB: a queue-based handler image (jobs); LB: a load-balancing image (its own HTTP server, "
        "tested with --requests) [LB when --requests or DIR/test_requests.json is given, else QB]",
    ),
    requests_file: Path | None = typer.Option(
        None,
        "--requests",
        "-r",
        help='LB: HTTP requests to send, [{"method", "path", "json"?, "status"?, "expected"?}] '
        "[DIR/test_requests.json; none: GET the health path, expecting 200]",
    ),
) -> None:
    """Run a handler image's tests in a throw-away emulator and judge them as RunPod's Hub does (for CI).

    Exit codes: 0 all passed, 1 a test failed, 2 the image did not build or its worker did not start.
    """
    from emulator.cli.ephemeral import EphemeralEmulator

    path = Path(target)
    directory = path if path.is_dir() else None
    if directory is None and (path.exists() or target.startswith((".", "/", "~")) or target.endswith("/")):
        fail(f"{target} is not a directory", "pass a folder with a Dockerfile, or an image name")
    if tests_from is not None and not tests_from.is_dir():
        fail(f"--tests-from {tests_from} is not a directory")
    folder = directory or tests_from
    try:
        load_balancing = lbtests.is_lb_run(
            endpoint_type,
            requests_file is not None,
            folder is not None and (folder / lbtests.REQUESTS_FILE).is_file(),
        )
    except ValueError as exc:
        fail(str(exc))
    if load_balancing:
        if input_file is not None or expect is not None:
            fail("--input and --expect are for queue-based images; a load-balancing image takes --requests")
        from emulator.cli.lbcheck import check_lb_image

        check_lb_image(
            target,
            directory,
            tests_from,
            requests_file,
            env,
            gpu_count,
            timeout,
            cold_start,
            tag,
            base_image,
            port,
            junit_xml,
            verbose,
        )
        return
    plan = load_plan(directory or tests_from, input_file, expect)
    worker_env = {**plan.env, **parse_env(env)}
    gpus = gpu_count if gpu_count is not None else (plan.gpu_count or 0)
    err_console.print(f"{len(plan.cases)} test(s) from {plan.source} ({plan.kind} format)", style="dim")

    image = image_to_test(target, directory, tag, base_image, verbose, junit_xml)
    overrides, notes = gpu_settings(gpus)
    for note in notes:
        err_console.print(note, style="yellow")
    results: list[JobResult] = []
    not_started = False
    try:
        with EphemeralEmulator(port, verbose, settings=overrides) as emu:
            err_console.print(
                f"emulator on {emu.url} (network {emu.network}); starting a worker from {image}", style="dim"
            )
            deadlines = [timeout if c.timeout_s is None else c.timeout_s + cold_start for c in plan.cases]
            emu.create_endpoint(image, worker_env, gpus, max(deadlines))
            for number, (case, deadline_s) in enumerate(zip(plan.cases, deadlines, strict=True), 1):
                result, not_started = run_job(emu, case, number, len(plan.cases), deadline_s)
                results.append(result)
                mark = Text("✓ ", style="green") if result.ok else Text("✗ ", style="red")
                err_console.print(
                    Text.assemble(
                        mark,
                        f"{case.name} ",
                        job_status_text(result.body.get("status")),
                        f" in {result.seconds:.1f}s",
                    )
                )
                if not_started:  # no worker: the other tests cannot run either
                    results += [
                        JobResult(later, verdict=hubtests.Verdict("not run: the worker did not start"))
                        for later in plan.cases[number:]
                    ]
                    break
    except KeyboardInterrupt:
        fail("interrupted; the worker, endpoint and network it started were removed", code=130)
    finish(results, image, junit_xml, notes)
    if not_started:
        raise typer.Exit(IMAGE_FAILED)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def image_to_test(
    target: str,
    directory: Path | None,
    tag: str | None,
    base_image: str | None,
    verbose: bool,
    junit_xml: Path | None,
) -> str:
    """The image built from ``directory`` (its ``.runpod/Dockerfile`` first), or ``target`` when it is
    present locally; exits 2 (with the reason in the JUnit file and the job summary) otherwise."""
    from emulator.cli.common import BUILD_HINT
    from emulator.cli.ephemeral import DOCKER_HINT
    from emulator.cli.images import BuildDisplay, fail_build
    from emulator.errors import EmulatorError, RuntimeUnavailable
    from emulator.images import build as images

    def image_failed(message: str, hint: str | None = None, exc: EmulatorError | None = None) -> NoReturn:
        finish([], target, junit_xml, [], image_problem=message)
        if exc is None:
            fail(message, hint, code=IMAGE_FAILED)
        with contextlib.suppress(typer.Exit):
            fail_build(exc)  # its hints
        raise typer.Exit(IMAGE_FAILED)

    try:
        images.require_docker()
        if directory is None:
            if images.image_id(target) is None:
                image_failed(
                    f"the image {target} is not present locally", BUILD_HINT + " (or `docker pull` it)"
                )
            return target
    except RuntimeUnavailable as exc:
        image_failed(exc.message, DOCKER_HINT)
    dockerfile = dockerfile_for(directory)
    if dockerfile.parent != directory:
        err_console.print(
            f"building {dockerfile} (.runpod/ takes precedence, as on RunPod's Hub)", style="dim"
        )
    try:
        with BuildDisplay(f"building {tag or images.default_tag_for(directory)}", verbose) as display:
            # a fresh CI runner has neither base image yet: let `docker build` pull python:3.12-slim when
            # the Dockerfile uses BASE_IMAGE at all (most worker repositories name their own FROM)
            base = base_image or images.default_base_image() or images.UPSTREAM_BASE_IMAGE
            built = images.build_image(directory, tag, base, display, dockerfile=dockerfile)
    except EmulatorError as exc:
        image_failed(exc.message, exc=exc)
    display.done(f"built {built}")
    return built


def gpu_settings(gpus: int) -> tuple[dict[str, Any], list[str]]:
    """Settings for the throw-away emulator so that ``gpus`` GPUs can be given: the host's when it has
    enough, else emulated ones (no device requests), with a note saying so."""
    if gpus <= 0:
        return {}, []
    from emulator import gpus as gpu_inventory
    from emulator.config import Settings

    inventory = gpu_inventory.discover(Settings())
    if len(inventory.ids) >= gpus:
        return {}, []
    return (
        {"gpu_mode": "emulate", "gpus": None, "emulated_gpus": gpus},
        [
            f"the tests ask for {gpus} GPU(s) and this host has {len(inventory.ids)}: the worker gets "
            f"{gpus} emulated GPU(s) (RUNPOD_GPU_COUNT set, no devices; CUDA code will not find one)"
        ],
    )


def finish(
    results: list[JobResult],
    image: str,
    junit_xml: Path | None,
    notes: list[str],
    image_problem: str | None = None,
    table: bool = True,
) -> None:
    """Print the table (unless ``table`` is False: the caller printed its own) and failures; write the
    JUnit file, the job summary and the step outputs."""
    if results and table:
        console.print(results_table(results, image))
    failed = [r for r in results if not r.ok]
    for r in failed:
        print_failure(r)
    if junit_xml is not None:
        try:
            reports.write_junit(junit_xml, results, f"serverless-emulator test {image}", image_problem)
        except OSError as exc:
            err_console.print(f"could not write {junit_xml}: {exc}", style="red")
    summary = reports.summary_markdown(results, image, [*notes, *([image_problem] if image_problem else [])])
    try:
        reports.append(os.environ.get("GITHUB_STEP_SUMMARY"), summary)
        reports.append(os.environ.get("GITHUB_OUTPUT"), reports.step_outputs(results))
    except OSError as exc:
        err_console.print(f"could not write the GitHub Actions summary: {exc}", style="red")
    if image_problem is not None:
        return
    if failed:
        console.print(Text(f"FAILED: {len(failed)} of {len(results)} test(s)", style="bold red"))
        return
    checked = sum(1 for r in results if r.case.expected is not NOTHING)
    console.print(
        Text(
            f"PASSED: {len(results)} test(s)" + (f", {checked} output(s) as expected" if checked else ""),
            style="bold green",
        )
    )
