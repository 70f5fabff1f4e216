"""Import-time benchmark: ``python -c "import worker_sdk"`` vs ``python -c "pass"`` vs ``python -c "import runpod"``.

Each command runs in a fresh subprocess (median of N runs, default 20). Prints the wall times, the
import overhead over a bare interpreter, and the ratios.

    python bench/bench_import.py [--runs 20] [--python /path/to/python]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {"pass": "pass", "worker_sdk": "import worker_sdk", "runpod": "import runpod"}


def _env() -> dict[str, str]:
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )


def _median_wall(python: str, commands: dict[str, str], runs: int, env: dict[str, str]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    order = list(commands.items())
    for i in range(runs):
        random.Random(i).shuffle(order)
        for name, code in order:
            start = time.perf_counter()
            subprocess.run([python, "-c", code], env=env, capture_output=True, check=True)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure_all(python: str, runs: int) -> dict[str, float | None]:
    """Median wall time per command.

    ``pass`` and ``import worker_sdk`` are interleaved (load drifts evenly over both). ``import runpod`` is
    measured afterwards on its own: a run right after a 2-second runpod import is measurably slower on a
    busy machine, which would skew whichever small command follows it.
    """
    env = _env()
    usable = {}
    for name, code in COMMANDS.items():  # warm-up run (page cache, .pyc files); not counted
        usable[name] = subprocess.run([python, "-c", code], env=env, capture_output=True).returncode == 0
    small = {n: c for n, c in COMMANDS.items() if n != "runpod" and usable[n]}
    results: dict[str, float | None] = dict.fromkeys(COMMANDS)
    results.update(_median_wall(python, small, runs, env))
    if usable["runpod"]:
        results.update(_median_wall(python, {"runpod": COMMANDS["runpod"]}, runs, env))
    return results


def in_process(python: str, module: str, runs: int) -> float | None:
    """Median time of the ``import`` statement alone, each in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    values = []
    for _ in range(runs):
        proc = subprocess.run([python, "-c", code], env=_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            return None
        values.append(float(proc.stdout.strip()))
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)

    results = measure_all(args.python, args.runs)
    base = results["pass"]
    assert base is not None, "a bare interpreter always runs"
    print(f"python: {args.python}  (median of {args.runs} interleaved runs, wall time of the whole process)")
    for name, code in COMMANDS.items():
        value = results[name]
        if value is None:
            label = f'-c "{code}"'
            print(f"  {label:<28} not importable")
            continue
        label = f'-c "{code}"'
        print(
            f"  {label:<28} {value * 1000:8.1f} ms   over bare python {(value - base) * 1000:+8.1f} ms"
            f"   ratio to bare python x{value / base:.2f}"
        )
    if results["runpod"] and results["worker_sdk"]:
        print(
            "  ratio import runpod / import worker_sdk: x%.1f" % (results["runpod"] / results["worker_sdk"])
        )
    inner = {m: in_process(args.python, m, args.runs) for m in ("worker_sdk", "runpod")}
    for module, value in inner.items():
        if value is not None:
            print(
                f"  import statement alone, {module:<10} {value * 1000:8.2f} ms (median, fresh interpreter)"
            )
    if inner["worker_sdk"] and inner["runpod"]:
        print(
            f"  ratio (import statement alone) runpod / worker_sdk: x{inner['runpod'] / inner['worker_sdk']:.0f}"
        )
    ok = results["worker_sdk"] is not None and inner["worker_sdk"] is not None and inner["worker_sdk"] < 0.050
    print("  import worker_sdk under 50 ms: %s" % ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
