"""Profile the control plane under a benchmark's load with py-spy (``pip install py-spy``).

    python -m bench.profile --kind runsync --seconds 10     # or run_poll, submit
    python -m bench.profile --kind runsync --native          # with C frames (sqlite3, json)

Starts a control plane like the throughput benchmark does (4 warm workers; ``submit``: 8 workers and
bulk ``/run``), samples it with ``py-spy record`` while the load runs, and prints the functions with
the most CPU, inclusive and self, from the collapsed stacks (kept in bench/out/<run>/).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench import dockerx, procs
from bench.context import Run
from bench.load import submit_child
from bench.procs import HANDLER

ROOT = str(Path(__file__).resolve().parents[1])  # this checkout: frames are named relative to it
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _name(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def summarize(collapsed: Path, top: int = 30) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        for f in set(frames):
            inclusive[f] += n
        if frames:
            own[frames[-1]] += n
    out = [f"{total} samples (CPU only; idle excluded)", "", "inclusive:"]
    out += [f"  {n / total * 100:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out += ["", "self:"]
    out += [f"  {n / total * 100:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("runsync", "run_poll", "submit"), default="runsync")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second (0: no py-spy)")
    p.add_argument("--native", action="store_true", help="include native (C) frames")
    p.add_argument("--top", type=int, default=30)
    p.add_argument(
        "--emulator",
        default="worktree",
        metavar="worktree|COMMIT|PATH",
        help="the control plane's code: the working tree, an export of COMMIT, or a directory",
    )
    p.add_argument(
        "--worker-sdk",
        choices=("image", "tree"),
        default="image",
        help="worker_sdk in the worker containers: the sample image's copy or this checkout's",
    )
    p.add_argument("--work-dir", type=Path, default=Path(__file__).resolve().parent / "out")
    args = p.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy is not installed: pip install py-spy")
        return 2
    ctx = Run("quick", args.work_dir)
    try:
        if args.emulator != "worktree":
            path = Path(args.emulator)
            procs.EMULATOR_DIR = (
                path if path.is_dir() else procs.export_commit(args.emulator, ctx.dir / "emulator-src")
            )
        if args.worker_sdk == "tree":
            dockerx.use_worker_sdk_from(procs.REPO)
        ctx.images = dockerx.build_bench_images(HANDLER)
        workers = 8 if args.kind == "submit" else 4
        cp = ctx.plane(
            f"profile{args.kind.replace('_', '')}", env={"EMULATOR_MAX_QUEUE_PER_ENDPOINT": "200000"}
        )
        cp.create_endpoint(
            {
                "name": "prof",
                "id": "prof",
                "imageName": dockerx.BENCH_ECHO,
                "workersMin": workers,
                "workersMax": workers,
                "extraWorkers": 0,
                "idleTimeout": 600,
            }
        )
        cp.wait_ready("prof", workers)
        out = ctx.dir / f"profile-{args.kind}.collapsed"
        clients = ctx.clients()
        if args.kind == "submit":
            go_at = time.time() + 0.5
            n = int(args.seconds * 600)
            specs = [
                dict(
                    base=cp.url,
                    endpoint="prof",
                    n=n // 2,
                    concurrency=16,
                    go_at=go_at,
                    body={"input": {"n": 1}},
                )
            ] * 2
            pending = clients.pool.map_async(submit_child, specs, chunksize=1)
        else:
            merged = clients.throughput(
                args.kind, cp.url, "prof", 16, 1.0, args.seconds, 0.01, {"input": {"n": 1}}
            )
            time.sleep(max(0.0, merged["start_at"] - time.time()))
        cmd = [
            "py-spy",
            "record",
            "-p",
            str(cp.pid),
            "-d",
            str(int(args.seconds)),
            "-r",
            str(args.rate),
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ] + (["--native"] if args.native else [])
        cpu0 = cp.cpu_s()
        if args.rate > 0:
            subprocess.run(cmd, check=True, capture_output=True)
        else:  # no sampling: the load alone (to watch it with other tools)
            time.sleep(args.seconds)
        cpu = cp.cpu_s() - cpu0
        if args.kind == "submit":
            jobs = sum(len(r["ids"]) for r in pending.get(600))
            print(f"{jobs} jobs submitted; control-plane CPU {cpu:.1f} s while sampled")
        else:
            r = clients.collect(merged)
            print(
                f"{r['completed']} jobs in {args.seconds:g} s ({r['completed'] / args.seconds:.0f}/s); "
                f"control-plane CPU {cpu / max(1, r['completed']) * 1000:.2f} ms/job"
            )
        if args.rate > 0:
            print(summarize(out, args.top))
        print(f"\ncollapsed stacks: {out}")
    finally:
        ctx.close()
        dockerx.remove_tree_image()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
