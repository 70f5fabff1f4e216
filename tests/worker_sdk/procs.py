"""Start worker processes for tests and always clean them up (only PIDs we started)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HANDLERS = HERE / "handlers"
REPO = HERE.parents[1]


def clean_env(extra: Mapping[str, object]) -> dict[str, str]:
    """The current environment without RUNPOD_*/WORKER_SDK_* leftovers, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "WORKER_SDK_", "HANDLER_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class WorkerProcess:
    def __init__(
        self,
        script: str | Path,
        env: Mapping[str, object],
        log_path: Path,
        args: Sequence[str] = (),
        cwd: str | Path | None = None,
        python: str | None = None,
    ) -> None:
        self.log_path = log_path
        self.registration: dict[str, Any] = {}  # set by tests that register the worker first
        self._log = open(log_path, "wb")  # noqa: SIM115 - the child's log, closed in stop()
        self.proc = subprocess.Popen(
            [python or sys.executable, "-u", str(script), *args],
            env=clean_env(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd or str(log_path.parent),
            start_new_session=True,  # its own process group: close() also reaches its children
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in worker log after {timeout:g}s:\n{self.log()}")
            if self.proc.poll() is not None and text not in self.log():
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}) before logging {text!r}:\n{self.log()}"
                )
            time.sleep(0.05)
        return self.log()

    def close(self) -> None:
        """Kill the process and everything it started (RunPod's SDK forks a heartbeat process)."""
        kill_group(self.proc)
        self._log.close()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group that ``proc`` leads (it was started with start_new_session=True)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group id is the leader's pid; it outlives the leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def find_python(version: str) -> str | None:
    """An interpreter for ``version`` (e.g. "3.9") if this machine has one, else None."""
    import shutil

    candidates: list[tuple[list[str], dict[str, str]]] = []
    exe = shutil.which("python" + version)
    if exe:
        candidates.append(([exe], {}))
    if shutil.which("pyenv"):
        try:
            out = subprocess.run(
                ["pyenv", "versions", "--bare"], capture_output=True, text=True, timeout=20
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.split():
            if line.startswith(version + "."):
                try:
                    prefix = subprocess.run(
                        ["pyenv", "prefix", line], capture_output=True, text=True, timeout=20
                    ).stdout.strip()
                except (OSError, subprocess.SubprocessError):
                    continue
                candidates.append(([os.path.join(prefix, "bin", "python")], {}))
    for cmd, _ in candidates:
        try:
            res = subprocess.run(
                cmd + ["-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if res.returncode == 0 and res.stdout.strip() == str(tuple(int(x) for x in version.split("."))):
            return cmd[0]
    return None
