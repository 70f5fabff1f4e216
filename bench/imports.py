"""Import time, from ``bench/bench_import.py`` (another engineer's benchmark, run here as it is)."""

from __future__ import annotations

import sys

from bench import bench_import
from bench.context import Run
from bench.report import Row, Section, ms, ratio, verdict

ROWS = [
    ("import.statement", "`import worker_sdk`, the statement alone (fresh interpreter)"),
    ("import.process", '`python -c "import worker_sdk"`, the whole process'),
]
AIM_MS = 50.0


def run(ctx: Run, section: Section) -> None:
    runs = ctx.counts.import_runs
    whole = bench_import.measure_all(sys.executable, runs)
    inner = {m: bench_import.in_process(sys.executable, m, runs) for m in ("worker_sdk", "runpod")}
    sdk, rp = inner["worker_sdk"], inner["runpod"]
    sdk_ms = sdk * 1000 if sdk is not None else float("nan")
    rp_ms = rp * 1000 if rp is not None else float("nan")
    section.rows.append(
        Row(
            "import.statement",
            ROWS[0][1],
            ms(sdk_ms),
            f"import runpod {ms(rp_ms)}",
            ratio(sdk_ms, rp_ms),
            f"< {AIM_MS:g} ms",
            verdict(sdk is not None and sdk_ms < AIM_MS),
        )
    )
    w, p, r = (
        v * 1000 if (v := whole[k]) is not None else float("nan") for k in ("worker_sdk", "pass", "runpod")
    )
    section.rows.append(
        Row(
            "import.process", ROWS[1][1], ms(w), f"python -c pass {ms(p)}; import runpod {ms(r)}", ratio(w, p)
        )
    )
    section.notes.append(
        f"Median of {runs} runs each, host Python {sys.version.split()[0]} (`python bench/bench_import.py --runs {runs}` "
        "prints the same figures). The ratio column is against `import runpod` (statement) and a bare interpreter (process)."
    )
