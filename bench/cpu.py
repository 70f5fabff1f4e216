"""CPU time and memory from /proc: of one process, and of every process on the machine."""

from __future__ import annotations

import os
import time

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


# --- /proc --------------------------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def mem_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak resident set size) in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


class SystemCpu:
    """CPU seconds of every process on the machine, to say where the cores went during a window."""

    def __init__(self) -> None:
        self.taken_at = time.monotonic()
        self.per_pid: dict[int, tuple[str, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read(300).replace(b"\0", b" ").decode(errors="replace")
                self.per_pid[int(entry)] = (cmd, cpu_s(int(entry)))
            except (OSError, IndexError, ValueError):
                continue
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        self.busy_s = (sum(ticks) - ticks[3] - ticks[4]) * TICK_S  # all but idle and iowait

    def since(self, before: SystemCpu, named: dict[str, set[int]]) -> dict[str, float]:
        """CPU seconds per group since ``before``: the named pids, then by command."""
        groups: dict[str, float] = {}
        for pid, (cmd, now) in self.per_pid.items():
            used = now - before.per_pid.get(pid, (cmd, 0.0))[1]
            if used <= 0:
                continue
            name = next((n for n, pids in named.items() if pid in pids), None)
            if name is None:
                exe = cmd.split(" ", 1)[0].rsplit("/", 1)[-1]
                name = (
                    "worker containers"
                    if "bench_handler.py" in cmd
                    else "docker daemons"
                    if exe.startswith(("dockerd", "containerd", "docker-proxy", "runc"))
                    else "other"
                )
            groups[name] = groups.get(name, 0.0) + used
        groups["all (from /proc/stat)"] = self.busy_s - before.busy_s
        return groups


def describe_cpu(groups: dict[str, float], wall_s: float) -> str:
    parts = [f"{name} {used / wall_s:.2f}" for name, used in sorted(groups.items(), key=lambda kv: -kv[1])]
    return "cores busy, by process: " + ", ".join(parts)
