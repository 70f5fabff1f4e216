"""Results as rows, the machine's description, and the markdown written to bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Row:
    key: str  # stable id: the smoke test checks every expected key is in the output
    what: str
    value: str  # the emulator's figure
    reference: str = ""  # the peer's or the floor's figure, measured in the same run
    ratio: str = ""
    aim: str = ""
    verdict: str = ""  # "met", "MISSED", "n/a", or "" (no aim)


@dataclass
class Section:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the section failed: its rows say so and the run goes on


# --- figures --------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), q in 0..100."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(value: float) -> str:
    return (
        "n/a"
        if value != value
        else (f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms")
    )


def ratio(a: float, b: float) -> str:
    if not b or a != a or b != b:
        return "n/a"
    r = a / b
    return f"{r:.2g}x" if r < 0.1 else f"{r:.2f}x"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


# --- the machine ----------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent
        )
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def commit_of(rev: str, worktree: bool = False) -> str:
    commit = _git("rev-parse", "--short", rev) or "unknown"
    if worktree and _git("status", "--porcelain", "--untracked-files=no", "--", "emulator"):
        return f"{commit} + uncommitted changes in emulator/ (working tree)"
    return commit


def machine(docker_version: str, runpod_version: str | None, source: str) -> list[tuple[str, str]]:
    return [
        ("CPU", _cpu_model()),
        ("Cores", str(os.cpu_count())),
        ("Memory", _mem_gib()),
        ("Docker engine", docker_version),
        ("Python", platform.python_version()),
        ("Kernel", platform.release()),
        ("runpod (peer)", runpod_version or "not installed"),
        ("Emulator code", source),
        ("Date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


# --- markdown -------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(
    sections: list[Section], machine_rows: list[tuple[str, str]], command: str, mode: str, duration_s: float
) -> str:
    out = [
        "# Benchmark results",
        "",
        f"Written by `{command}` ({mode} mode, "
        f"{duration_s:.0f} s). Every figure on a line was measured in the same run on this machine; "
        "the peer is RunPod's own local test server (`python bench/handler.py --rp_serve_api`, "
        "runpod on the host) running the same handler file.",
        "",
        "| Machine | |",
        "|---|---|",
    ]
    out += [f"| {k} | {_cell(v)} |" for k, v in machine_rows]
    out += [
        "",
        "| Benchmark | Emulator | Peer / floor | Ratio | Aim | Aim met? |",
        "|---|---|---|---|---|---|",
    ]
    for section in sections:
        for row in section.rows:
            out.append(
                f"| {_cell(row.what)} <!-- {row.key} --> | {_cell(row.value)} | {_cell(row.reference)} | "
                f"{_cell(row.ratio)} | {_cell(row.aim)} | {row.verdict} |"
            )
    out.append("")
    for section in sections:
        if not section.notes and not section.error:
            continue
        out += [f"## {section.title}", ""]
        if section.error:
            out += [f"**This section failed:** `{_cell(section.error)[:800]}`", ""]
        out += [f"- {note}" for note in section.notes]
        out.append("")
    return "\n".join(out)


def failed_rows(section: Section, keys: list[tuple[str, str]], error: str) -> None:
    """A failed section still lists its rows, marked as not measured."""
    section.error = error
    present = {r.key for r in section.rows}
    section.rows += [
        Row(k, what, "not measured (error)", verdict="n/a") for k, what in keys if k not in present
    ]
