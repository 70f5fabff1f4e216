"""``serverless-emulator run ENDPOINT --input JSON [--sync | --stream]``: one job through RunPod's /v2 API.

The job's output goes to stdout (JSON, so it can be piped to ``jq``); the job id, progress, status,
times and the cold-start breakdown go to stderr. The exit code is 1 unless the job COMPLETED.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.text import Text

from emulator.cli.common import (
    API_KEY_OPTION,
    TERMINAL,
    URL_OPTION,
    Api,
    busy,
    console,
    err_console,
    fail,
    fmt_ms,
    format_error,
    job_status_text,
    load_json_arg,
    short_json,
)

REQUEST_FIELDS = {"input", "webhook", "policy", "s3Config"}
COLD_START_PARTS = (("pullMs", "pull"), ("createMs", "create"), ("startMs", "start"), ("readyMs", "ready"))


def job_body(value: Any) -> dict[str, Any]:
    """``--input`` is the job's input; a JSON object whose keys are RunPod request fields and include
    ``input`` (a test_input.json) is taken as the whole request body."""
    if isinstance(value, dict) and "input" in value and set(value) <= REQUEST_FIELDS:
        return value
    return {"input": value}


def cold_start_text(body: dict[str, Any]) -> Text:
    """``delay 1.20 s · execution 3 ms · cold start: create 120 ms, start 300 ms, ready 800 ms, queue wait 1.2 s``."""
    text = Text()
    text.append("delay ", style="dim")
    text.append(fmt_ms(body.get("delayTime")))
    text.append(" · execution ", style="dim")
    text.append(fmt_ms(body.get("executionTime")))
    cold = body.get("coldStart") or {}
    if cold:
        if cold.get("coldStart"):
            text.append(" · cold start: ", style="yellow")
            parts = [f"{label} {fmt_ms(cold[key])}" for key, label in COLD_START_PARTS if key in cold]
            parts.append(f"queue wait {fmt_ms(cold.get('queueWaitMs'))}")
            text.append(", ".join(parts))
        else:
            text.append(" · warm worker", style="green")
            text.append(f", queue wait {fmt_ms(cold.get('queueWaitMs'))}")
    if body.get("retries"):
        text.append(f" · retries {body['retries']}", style="yellow")
    return text


def print_result(body: dict[str, Any], as_json: bool, show_output: bool = True) -> None:
    status = body.get("status")
    summary = Text.assemble(job_status_text(status), " ", (str(body.get("id", "")), "bold"))
    if body.get("workerId"):
        summary.append(f" on worker {body['workerId']}", style="dim")
    err_console.print(summary)
    err_console.print(cold_start_text(body))
    if as_json:
        print_json(body)
    elif show_output and "output" in body:
        print_json(body["output"])
    if status != "COMPLETED" and body.get("error") is not None:
        err_console.print(Text(f"error: {format_error(body['error'])}", style="red"))


def print_json(value: Any) -> None:
    if console.is_terminal:
        console.print_json(data=value)
    else:
        console.out(json.dumps(value, indent=2, ensure_ascii=False), highlight=False)


class Waiter:
    """Polls status-sync until the job is terminal, with a deadline and a spinner."""

    def __init__(self, api: Api, endpoint_id: str, timeout_s: float | None, wait_ms: int) -> None:
        self.api = api
        self.base = f"/v2/{endpoint_id}"
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.wait_ms = wait_ms
        self.started = time.monotonic()

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def status_sync(self, job_id: str, wait_ms: int) -> dict[str, Any]:
        result: dict[str, Any] = self.api.checked(
            "GET",
            f"{self.base}/status-sync/{job_id}",
            params={"wait": wait_ms},
            timeout_s=wait_ms / 1000 + 30,
        )
        return result

    def until_terminal(self, body: dict[str, Any], spinner: bool) -> dict[str, Any]:
        job_id = str(body["id"])
        wait_ms = min(self.wait_ms, 2000) if spinner else self.wait_ms
        if not spinner or not err_console.is_terminal:
            while body.get("status") not in TERMINAL and not self.expired():
                body = self.status_sync(job_id, wait_ms)
            return body
        with err_console.status(self.describe(body)) as status:
            while body.get("status") not in TERMINAL and not self.expired():
                body = self.status_sync(job_id, wait_ms)
                status.update(self.describe(body))
        return body

    def describe(self, body: dict[str, Any]) -> Text:
        text = Text.assemble(
            "waiting for ", (str(body.get("id")), "bold"), ": ", job_status_text(body.get("status"))
        )
        text.append(f"  {time.monotonic() - self.started:.0f}s", style="dim")
        if body.get("status") == "IN_PROGRESS" and body.get("output") is not None:
            text.append(f"  progress {short_json(body['output'])}", style="cyan")
        return text


def run(
    endpoint_id: str = typer.Argument(..., metavar="ENDPOINT", help="Endpoint id"),
    input_: str = typer.Option(
        ...,
        "--input",
        "-i",
        help="The job's input as JSON, @file.json or - (stdin); "
        'a {"input": ...} object is taken as the whole request',
    ),
    sync: bool = typer.Option(False, "--sync", help="Use /runsync (then status-sync until the job ends)"),
    stream: bool = typer.Option(False, "--stream", help="Print the job's stream chunks as they arrive"),
    wait_ms: int = typer.Option(
        90_000,
        "--wait-ms",
        help="How long each runsync / status-sync / stream request waits on the server (1000..300000)",
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="Give up waiting after S seconds [never]"),
    as_json: bool = typer.Option(False, "--json", help="Print the whole status body, not just the output"),
    url: str = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """Submit a job and wait for its result; prints the output, times and the cold-start breakdown."""
    if sync and stream:
        fail("choose one of --sync and --stream")
    if not 1000 <= wait_ms <= 300_000:
        fail("--wait-ms must be between 1000 and 300000")
    body = job_body(load_json_arg(input_, "--input"))
    base = f"/v2/{endpoint_id}"
    with Api(url, api_key, timeout_s=60) as api:
        waiter = Waiter(api, endpoint_id, timeout, wait_ms)
        chunks = 0
        try:
            if sync:
                with busy(f"runsync on {endpoint_id}…"):
                    result = api.checked(
                        "POST",
                        f"{base}/runsync",
                        params={"wait": wait_ms},
                        json=body,
                        timeout_s=wait_ms / 1000 + 30,
                    )
                result = waiter.until_terminal(result, spinner=True)
            else:
                queued = api.checked("POST", f"{base}/run", json=body)
                job_id = queued["id"]
                err_console.print(Text.assemble("job ", (job_id, "bold"), f" queued on {endpoint_id}"))
                if stream:
                    result, chunks = _stream(api, base, job_id, waiter)
                else:
                    result = waiter.until_terminal(queued, spinner=True)
        except KeyboardInterrupt:
            err_console.print(
                "stopped waiting; the job goes on (`serverless-emulator run` does not cancel it)",
                style="yellow",
            )
            raise typer.Exit(130) from None
    if result.get("status") not in TERMINAL:
        err_console.print(Text.assemble(job_status_text(result.get("status")), " ", str(result.get("id"))))
        fail(
            f"gave up waiting after {timeout:g} s; the job is still {result.get('status')}",
            f"check it later with GET {url}{base}/status/{result.get('id')}",
        )
    print_result(result, as_json, show_output=chunks == 0)  # a handler that did not stream: its output
    if result.get("status") != "COMPLETED":
        raise typer.Exit(1)


def _stream(api: Api, base: str, job_id: str, waiter: Waiter) -> tuple[dict[str, Any], int]:
    """Print each chunk's output (one JSON value per line) until the job ends; the final status body
    and the number of chunks."""
    chunks = 0
    while not waiter.expired():
        body = api.checked(
            "GET",
            f"{base}/stream/{job_id}",
            params={"wait": waiter.wait_ms},
            timeout_s=waiter.wait_ms / 1000 + 30,
        )
        for chunk in body.get("stream") or []:
            chunks += 1
            output = chunk.get("output") if isinstance(chunk, dict) else chunk
            console.out(
                output if isinstance(output, str) else json.dumps(output, ensure_ascii=False), highlight=False
            )
        if body.get("status") in TERMINAL:
            break
    status: dict[str, Any] = api.checked("GET", f"{base}/status/{job_id}")
    return status, chunks
