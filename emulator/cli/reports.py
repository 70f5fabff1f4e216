"""What ``serverless-emulator test`` leaves for CI: a JUnit XML file (``--junit-xml``), a GitHub Actions
job summary (when ``GITHUB_STEP_SUMMARY`` names a file) and step outputs (when ``GITHUB_OUTPUT`` does).

The JUnit file has one ``testsuite`` (the image) with one ``testcase`` per job: its name, its time in
seconds, the job's final ``/status`` answer in ``system-out``, and on failure a ``failure`` element
(the reason, the output diff) with the worker's last log lines in ``system-err``. Written with
junitparser. The step outputs follow runpod-test-runner's names: ``total-tests``, ``succeeded``,
``failed``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.cli.hubtests import TestCase, Verdict


@dataclass
class JobResult:
    """One test case run: the job's final ``/status`` answer (``body``), the verdict, the worker's
    last log lines when it failed, and its wall time in seconds from ``/run`` to the final answer."""

    case: TestCase
    body: dict[str, Any] = field(default_factory=dict)
    verdict: Verdict = field(default_factory=Verdict)
    logs: str = ""
    seconds: float = 0.0
    timestamp: str = ""  # ISO 8601, when the job was sent

    @property
    def ok(self) -> bool:
        return self.verdict.problem is None


def write_junit(
    path: Path, results: Sequence[JobResult], suite_name: str, extra_failure: str | None = None
) -> None:
    """Write ``results`` as a JUnit XML file (one test case per job). ``extra_failure`` (the image did
    not build or start) becomes one failed test case of its own when there are no results.
    Raises OSError when the file cannot be written."""
    from junitparser import Failure, JUnitXml, TestSuite
    from junitparser import TestCase as JUnitCase

    suite = TestSuite(suite_name)
    for r in results:
        case = JUnitCase(r.case.name, classname=suite_name, time=round(r.seconds, 3))
        case.system_out = json.dumps(r.body, indent=2, ensure_ascii=False, default=str)
        if not r.ok:
            failure = Failure(r.verdict.problem or "failed", type_=str(r.body.get("status") or "NO_RESULT"))
            failure.text = r.verdict.diff or r.verdict.problem or ""
            case.result = [failure]
            if r.logs.strip():
                case.system_err = r.logs
        suite.add_testcase(case)
    if extra_failure is not None and not results:
        case = JUnitCase("image", classname=suite_name, time=0)
        failure = Failure(extra_failure.splitlines()[0], type_="IMAGE")
        failure.text = extra_failure
        case.result = [failure]
        suite.add_testcase(case)
    suite.update_statistics()  # type: ignore[no-untyped-call]
    document = JUnitXml()
    document.add_testsuite(suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    document.write(str(path), pretty=True)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(results: Sequence[JobResult], image: str, notes: Sequence[str] = ()) -> str:
    """A Markdown table for a GitHub Actions job summary: one row per job, failures explained below."""
    passed = sum(1 for r in results if r.ok)
    mark = (
        "✅" if results and passed == len(results) else "❌"
    )  # no results: the image did not build or start
    lines = [
        f"### {mark} serverless-emulator test: `{image}`",
        "",
        f"{passed} of {len(results)} test(s) passed.",
        "",
    ]
    lines += [f"> {note}" for note in notes]
    lines += [
        "",
        "| test | status | result | cold start | execution | total |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in results:
        cold = r.body.get("coldStart") or {}
        start_ms = (
            sum(cold.get(k) or 0 for k in ("createMs", "startMs", "readyMs"))
            if cold.get("coldStart")
            else None
        )
        execution = r.body.get("executionTime")
        lines.append(
            "| "
            + " | ".join(
                (
                    _cell(r.case.name),
                    str(r.body.get("status") or "-"),
                    "pass" if r.ok else "**FAIL**",
                    "warm"
                    if cold and start_ms is None
                    else (f"{start_ms / 1000:.1f} s" if start_ms is not None else "-"),
                    f"{execution / 1000:.2f} s" if isinstance(execution, (int, float)) else "-",
                    f"{r.seconds:.1f} s",
                )
            )
            + " |"
        )
    for r in results:
        if r.ok:
            continue
        lines += [
            "",
            f"<details><summary>{_cell(r.case.name)}: {_cell(r.verdict.problem or '')}</summary>",
            "",
        ]
        if r.verdict.diff:
            lines += ["```diff", r.verdict.diff, "```"]
        if r.logs.strip():
            lines += ["The worker's last log lines:", "```", r.logs.rstrip()[-4000:], "```"]
        lines += ["</details>"]
    return "\n".join(lines) + "\n"


def step_outputs(results: Sequence[JobResult]) -> str:
    """``GITHUB_OUTPUT`` lines named as runpod-test-runner's outputs."""
    passed = sum(1 for r in results if r.ok)
    return f"total-tests={len(results)}\nsucceeded={passed}\nfailed={len(results) - passed}\n"


def append(path: str | None, text: str) -> None:
    """Append ``text`` to the file CI named (``GITHUB_STEP_SUMMARY``/``GITHUB_OUTPUT``), if any."""
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
