"""``python -m bench``: every benchmark in one run, written to bench/RESULTS.md.

    python -m bench                 # full counts (about 6 minutes on 2 quiet cores; 10 under load)
    python -m bench --quick         # small counts, under about 2 minutes
    python -m bench --only latency,scale --out /tmp/RESULTS.md

Needs Docker and the sample images (``bash scripts/setup.sh``) and runpod installed on the host
(the peer). Everything the run starts (control planes, RunPod's test server, client processes,
containers, networks) is stopped and removed at the end, also when a benchmark fails.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    coldstart,
    dockerx,
    imports,
    latency,
    lbproxy,
    pacing,
    procs,
    queued,
    report,
    scale,
    throughput,
)
from bench.context import MODES, Run
from bench.procs import HANDLER
from bench.versions import runpod_version

BENCH_DIR = Path(__file__).resolve().parent
SECTIONS: list[tuple[str, str, Callable[[Run, report.Section], None], list[tuple[str, str]]]] = [
    ("latency", "Warm /runsync latency", latency.run, latency.ROWS),
    ("throughput", "Throughput at 16 clients", throughput.run, throughput.ROWS),
    ("coldstart", "Cold start", coldstart.run_cold, coldstart.COLD_ROWS),
    ("flashboot", "FlashBoot resume", coldstart.run_flashboot, coldstart.FLASH_ROWS),
    ("scale", "Scale: 10,000 jobs", scale.run, scale.ROWS),
    ("queued", "Deep queue: 100,000 jobs, no workers", queued.run, queued.ROWS),
    ("pacing", "RunPod's SDK worker between two jobs", pacing.run, pacing.ROWS),
    ("imports", "Import time (bench/bench_import.py)", imports.run, imports.ROWS),
    ("lbproxy", "Load-balancing proxy latency", lbproxy.run, lbproxy.ROWS),
]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small counts (a smoke run, under ~2 minutes)")
    p.add_argument("--mode", choices=sorted(MODES), help="counts: full (default), quick, smoke (tests)")
    p.add_argument("--only", default="", help="comma-separated: " + ",".join(s[0] for s in SECTIONS))
    p.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md", help="the markdown file to write")
    p.add_argument("--work-dir", type=Path, default=BENCH_DIR / "out", help="logs and data dirs of the run")
    p.add_argument(
        "--emulator",
        default="worktree",
        metavar="worktree|COMMIT|DIR",
        help="run the control plane from the working tree (default), an export of COMMIT (e.g. HEAD), "
        "or DIR (holding an emulator package)",
    )
    p.add_argument(
        "--worker-sdk",
        choices=("image", "tree"),
        default="image",
        help="worker_sdk in the bench containers: the sample image's copy (default) or this checkout's "
        "(its own image tag, removed after the run)",
    )
    return p.parse_args(argv)


def emulator_source(ctx: Run, choice: str) -> str:
    """Point the control planes at the chosen code; a description for the machine table."""
    if choice == "worktree":
        return report.commit_of("HEAD", worktree=True)
    if Path(choice).is_dir():
        procs.EMULATOR_DIR = Path(choice).resolve()
        return f"the emulator package in {procs.EMULATOR_DIR}"
    procs.EMULATOR_DIR = procs.export_commit(choice, ctx.dir / "emulator-src")
    return f"{report.commit_of(choice)} (an export of {choice}, not the working tree)"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    mode = args.mode or ("quick" if args.quick else "full")
    wanted = [s for s in SECTIONS if not args.only or s[0] in args.only.split(",")]
    if not wanted:
        print(
            f"nothing to run: --only {args.only!r} names none of {[s[0] for s in SECTIONS]}", file=sys.stderr
        )
        return 2
    # SIGTERM ends the run like Ctrl-C does, so the cleanup below still happens
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    began = time.monotonic()
    ctx = Run(mode, args.work_dir)
    sections: list[report.Section] = []
    leftovers: list[str] = []
    source = "unknown"
    try:
        print(f"bench run {ctx.run_id} ({mode}); logs in {ctx.dir}", flush=True)
        source = emulator_source(ctx, args.emulator)
        if args.worker_sdk == "tree":
            source = f"{source}; worker_sdk of the checkout in {dockerx.use_worker_sdk_from(procs.REPO)}"
        ctx.images = dockerx.build_bench_images(HANDLER)
        if not ctx.images.get(dockerx.BENCH_ECHO):
            print("the echo sample image is missing: run `bash scripts/setup.sh` first", file=sys.stderr)
            return 2
        for key, title, fn, rows in wanted:
            section = report.Section(key, title)
            sections.append(section)
            started = time.monotonic()
            print(f"==> {title} ...", flush=True)
            try:
                fn(ctx, section)
            except KeyboardInterrupt:
                report.failed_rows(section, rows, "interrupted")
                raise
            except Exception as exc:
                traceback.print_exc()
                report.failed_rows(section, rows, f"{type(exc).__name__}: {exc}")
            for row in section.rows:
                print(
                    f"    {row.what}: {row.value}"
                    + (f"  (peer/floor {row.reference}, {row.ratio})" if row.reference else "")
                    + (f"  aim {row.aim}: {row.verdict}" if row.aim else ""),
                    flush=True,
                )
            print(f"    ({time.monotonic() - started:.0f} s)", flush=True)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
    finally:
        leftovers = ctx.close()
        dockerx.remove_tree_image()
    cleanup = report.Section("cleanup", "Cleanup")
    cleanup.notes.append(
        "Every control plane, peer, client process, container and network of the run was removed."
        if not leftovers
        else f"LEFT BEHIND (a bug): {', '.join(leftovers)}"
    )
    sections.append(cleanup)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    text = report.render(
        sections,
        report.machine(dockerx.server_version(), runpod_version(), source),
        command,
        mode,
        time.monotonic() - began,
    )
    aimed = [row for section in sections for row in section.rows if row.aim]
    print(
        f"aims: {sum(r.verdict == 'met' for r in aimed)} met, {sum(r.verdict == 'MISSED' for r in aimed)} missed"
    )
    for row in aimed:
        print(f"    {row.verdict:6} {row.key}: {row.value} (aim {row.aim})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out} in {time.monotonic() - began:.0f} s", flush=True)
    return 1 if leftovers else 0


if __name__ == "__main__":
    raise SystemExit(main())
