"""The test files ``serverless-emulator test DIR`` reads, and the rule that judges each job (pure: no I/O).

Three formats, found in this order (``find_tests``):

* **RunPod Hub** (``DIR/.runpod/tests.json``, with ``DIR/.runpod/hub.json``; RunPod docs
  "hub/publishing-guide"): ``{"tests": [{"name", "input", "timeout" (ms)}], "config": {"gpuCount",
  "env": [{"key", "value"}], ...}}``. Each ``input`` is a job input; a test passes when the job is
  COMPLETED and its output holds no ``error`` key (in a dict, or in any dict of a list), the rule
  RunPod's Hub and worker-vllm's release tests apply. The worker's env: ``hub.json``'s
  ``config.env[].input.default`` (and static ``value``), overlaid by ``tests.json``'s ``config.env``,
  overlaid by ``--env``.
* **runpod-test-runner** (``DIR/.github/tests.json``; RunPod docs "serverless/workers/github-integration"):
  a list of ``{"input", "output"?|"expected_output"?}``. A job must be COMPLETED, and its output equal
  to the expected one when given; ``{"status": "X"}`` alone means "the job ends X".
* **inputs** (``DIR/test_input.json`` or ``--input``): ``{"input": ...}`` or a list of them, checked
  against ``DIR/expected_output.json`` (only for ``DIR/test_input.json``) or ``--expect``.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["hub", "test-runner", "inputs"]
HUB_TESTS = Path(".runpod") / "tests.json"
HUB_JSON = Path(".runpod") / "hub.json"
RUNNER_TESTS = Path(".github") / "tests.json"
INPUTS = Path("test_input.json")
EXPECTED = Path("expected_output.json")
# the keys of a /status answer: a dict made only of these is a pasted answer, not a bare output
STATUS_KEYS = frozenset(
    {"id", "status", "output", "error", "delayTime", "executionTime", "retries", "workerId", "coldStart"}
)
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()  # no expected output for a job


@dataclass(frozen=True)
class TestCase:
    """One job to run and how to judge it.

    ``request`` is the ``/run`` body (``{"input": ...}`` plus any ``webhook``/``policy``);
    ``timeout_s`` the test's own bound in seconds (Hub ``timeout``), None for the command's
    ``--timeout``; ``expected`` the output to compare (``NOTHING``: none); ``status`` the status
    the job must end with; ``no_error``: the Hub rule (no ``error`` key in the output).
    """

    __test__ = False  # not a pytest class

    name: str
    request: dict[str, Any]
    timeout_s: float | None = None
    expected: Any = NOTHING
    status: str = "COMPLETED"
    no_error: bool = False


@dataclass(frozen=True)
class TestPlan:
    """What a test file asks for: its cases, the worker's env from the file(s), its GPU count (None:
    the file says nothing)."""

    __test__ = False

    kind: Kind
    source: str
    cases: list[TestCase]
    env: dict[str, str] = field(default_factory=dict)
    gpu_count: int | None = None
    notes: list[str] = field(default_factory=list)


def find_tests(directory: Path | None, input_file: Path | None) -> tuple[Kind, Path] | None:
    """Which file to read: ``--input`` (its format read from its content), else the first of
    ``.runpod/tests.json``, ``.github/tests.json``, ``test_input.json`` in ``directory`` that
    exists; None when there is none. Checks only whether files exist."""
    if input_file is not None:
        return "inputs", input_file
    if directory is None:
        return None
    for kind, relative in (("hub", HUB_TESTS), ("test-runner", RUNNER_TESTS), ("inputs", INPUTS)):
        if (directory / relative).is_file():
            return kind, directory / relative  # type: ignore[return-value]
    return None


def sniff_kind(data: Any) -> Kind:
    """The format of a file given with ``--input``: a ``{"tests": [...]}`` object is the Hub's, a list
    whose items carry ``output``/``expected_output`` is the test-runner's, anything else inputs."""
    if isinstance(data, dict) and "tests" in data and "input" not in data:
        return "hub"
    if isinstance(data, list) and any(
        isinstance(item, dict) and ({"output", "expected_output"} & set(item)) for item in data
    ):
        return "test-runner"
    return "inputs"


# --- env ---------------------------------------------------------------------------------------------------


def env_value(value: Any) -> str:
    """A JSON value as an environment variable: booleans lower-case, objects and lists as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _env_entries(entries: Any, source: str, defaults: bool) -> dict[str, str]:
    """``[{"key", "value"}]`` (and, in hub.json, ``{"key", "input": {"default"}}``) or a plain
    ``{"KEY": value}`` object -> ``{KEY: str}``; entries without a value or default are left out."""
    if entries is None:
        return {}
    if isinstance(entries, dict):
        return {str(k): env_value(v) for k, v in entries.items() if v is not None}
    if not isinstance(entries, list):
        raise ValueError(f'{source}: config.env must be a list of {{"key", "value"}} objects')
    env: dict[str, str] = {}
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
            raise ValueError(f'{source}: config.env item {number} needs a "key" (a non-empty string)')
        value = entry.get("value")
        if value is None and defaults and isinstance(entry.get("input"), dict):
            value = entry["input"].get("default")
        if value is not None:
            env[entry["key"]] = env_value(value)
    return env


def hub_defaults(hub: Any, source: str) -> tuple[dict[str, str], int | None]:
    """``hub.json`` -> (env from ``config.env``'s static values and input defaults, ``config.gpuCount``)."""
    if not isinstance(hub, dict):
        raise ValueError(f"{source} must be a JSON object")
    config = hub.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{source}: config must be an object")
    return _env_entries(config.get("env"), source, defaults=True), _gpu_count(config, source)


def _gpu_count(config: dict[str, Any], source: str) -> int | None:
    count = config.get("gpuCount")
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"{source}: config.gpuCount must be a whole number >= 0, not {count!r}")
    return count


# --- the formats ----------------------------------------------------------------------------------------


def parse_hub(data: Any, source: str, hub: Any = None, hub_source: str = "hub.json") -> TestPlan:
    """A Hub ``tests.json`` (and its ``hub.json``, if any) -> a plan. Raises ValueError naming the
    file and item that is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise ValueError(f'{source} must be an object like {{"tests": [{{"name", "input", "timeout"}}]}}')
    if not data["tests"]:
        raise ValueError(f"{source} holds no tests: nothing to run")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{source}: config must be an object")
    env, gpus = hub_defaults(hub, hub_source) if hub is not None else ({}, None)
    env = {**env, **_env_entries(config.get("env"), source, defaults=False)}
    own_gpus = _gpu_count(config, source)
    cases = []
    for number, test in enumerate(data["tests"], 1):
        where = f"{source}: test {number}"
        if not isinstance(test, dict) or "input" not in test:
            raise ValueError(f'{where} must be an object with an "input"')
        name = test.get("name", f"test {number}")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: name must be a non-empty string")
        timeout_ms = test.get("timeout")
        if timeout_ms is not None and (
            isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or timeout_ms <= 0
        ):
            raise ValueError(
                f"{where} ({name}): timeout must be a number of milliseconds > 0, not {timeout_ms!r}"
            )
        cases.append(
            TestCase(
                name,
                {"input": test["input"]},
                None if timeout_ms is None else timeout_ms / 1000,
                no_error=True,
            )
        )
    _unique_names(cases, source)
    return TestPlan("hub", source, cases, env, own_gpus if own_gpus is not None else gpus)


def _unique_names(cases: list[TestCase], source: str) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise ValueError(f"{source}: two tests are named {case.name!r}; names must differ")
        seen.add(case.name)


def split_expected(value: Any) -> tuple[str, Any]:
    """An expected value -> (status, output or NOTHING). ``{"status": X}`` alone means status X; a
    pasted status answer (only /status keys) gives its status and output; anything else is the bare
    output of a COMPLETED job."""
    if (
        isinstance(value, dict)
        and value
        and set(value) <= STATUS_KEYS
        and ("status" in value or "output" in value)
    ):
        status = value.get("status", "COMPLETED")
        if not isinstance(status, str) or status not in TERMINAL:
            raise ValueError(f"expected status {status!r} is not one of {', '.join(sorted(TERMINAL))}")
        return status, value.get("output", NOTHING)
    return "COMPLETED", value


def parse_runner(data: Any, source: str) -> TestPlan:
    """A runpod-test-runner ``.github/tests.json`` (a list of ``{"input", "output"?|"expected_output"?}``)."""
    if not isinstance(data, list) or not data:
        raise ValueError(f'{source} must be a non-empty list like [{{"input": {{...}}, "output": {{...}}}}]')
    cases = []
    for number, item in enumerate(data, 1):
        if not isinstance(item, dict) or "input" not in item:
            raise ValueError(f'{source}: item {number} must be an object with an "input"')
        expected_key = "expected_output" if "expected_output" in item else "output"
        status, output = "COMPLETED", NOTHING
        if expected_key in item:
            try:
                status, output = split_expected(item[expected_key])
            except ValueError as exc:
                raise ValueError(f"{source}: item {number}: {exc}") from None
        cases.append(
            TestCase(
                str(item.get("name") or item.get("id") or f"job {number}"),
                {"input": item["input"]},
                expected=output,
                status=status,
            )
        )
    return TestPlan("test-runner", source, cases)


def unwrap_expected(value: Any) -> Any:
    """``{"output": X}`` (or a whole status body) -> X; anything else is the bare output."""
    if isinstance(value, dict) and "output" in value and set(value) <= STATUS_KEYS:
        return value["output"]
    return value


def parse_inputs(data: Any, source: str) -> list[dict[str, Any]]:
    """``{"input": ...}`` or a list of them -> request bodies."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ValueError(f"{source} holds an empty list: nothing to run")
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or "input" not in item:
            where = f" (item {number})" if isinstance(data, list) else ""
            raise ValueError(
                f'{source}{where} must be an object like {{"input": {{...}}}} (or a list of such objects)'
            )
    return items


def parse_expected(data: Any, jobs: int, many: bool, source: str) -> list[Any]:
    """One expected output per job: for a list of inputs, a list of the same length pairs up;
    otherwise the expected value applies to every job."""
    if many and isinstance(data, list):
        if len(data) != jobs:
            raise ValueError(f"{source} holds {len(data)} expected outputs for {jobs} inputs")
        return [unwrap_expected(item) for item in data]
    return [unwrap_expected(data)] * jobs


def parse_input_file(data: Any, source: str, expected: Any = NOTHING, expected_source: str = "") -> TestPlan:
    """``test_input.json``/``--input`` (and the expected output(s), if any) -> a plan."""
    requests = parse_inputs(data, source)
    wants = (
        [NOTHING] * len(requests)
        if expected is NOTHING
        else parse_expected(expected, len(requests), isinstance(data, list), expected_source)
    )
    cases = [
        TestCase(f"job {n}", request, expected=want)
        for n, (request, want) in enumerate(zip(requests, wants, strict=True), 1)
    ]
    return TestPlan("inputs", source, cases)


# --- judging --------------------------------------------------------------------------------------------


def has_error(output: Any) -> bool:
    """RunPod's Hub rule: an ``error`` key in the output dict, or in any dict of an output list."""
    if isinstance(output, dict):
        return "error" in output
    if isinstance(output, list):
        return any(isinstance(item, dict) and "error" in item for item in output)
    return False


def canonical(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def json_diff(expected: Any, actual: Any) -> str | None:
    """A unified diff of pretty-printed, key-sorted JSON; None when they are equal."""
    want, got = canonical(expected), canonical(actual)
    if want == got:
        return None
    lines = difflib.unified_diff(want.splitlines(), got.splitlines(), "expected", "actual", lineterm="")
    return "\n".join(lines)


def format_error(error: Any) -> str:
    text = error if isinstance(error, str) else json.dumps(error, ensure_ascii=False, default=str)
    return text if len(text) <= 300 else text[:300] + "…"


@dataclass(frozen=True)
class Verdict:
    """Why a job failed its test (``problem`` None: it passed) and the output diff, if any."""

    problem: str | None = None
    diff: str | None = None


def judge(case: TestCase, body: dict[str, Any]) -> Verdict:
    """A job's final ``/status`` answer against its test case."""
    status = body.get("status")
    if status != case.status:
        error = body.get("error")
        detail = f": {format_error(error)}" if error is not None else ""
        want = "" if case.status == "COMPLETED" else f" (expected {case.status})"
        return Verdict(f"job {status}{want}{detail}")
    output = body.get("output")
    if case.no_error and has_error(output):
        items: list[Any] = output if isinstance(output, list) else [output]
        errors = next(item["error"] for item in items if isinstance(item, dict) and "error" in item)
        return Verdict(f"the output holds an error: {format_error(errors)}")
    if case.expected is not NOTHING:
        diff = json_diff(case.expected, output)
        if diff is not None:
            return Verdict("output differs from the expected output", diff)
    return Verdict()
