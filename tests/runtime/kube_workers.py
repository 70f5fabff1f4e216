"""Worker processes for the kubelet stand-in: a Pod of the supervisor runs as a process on this host.

With no real kubelet (and no container runtime behind it), a worker Pod that the scheduler bound is played
by ``python3 -c WORKER`` with the Pod's environment (the control plane's webhooks, ``RUNPOD_POD_ID``, the
per-worker key): the project's ``worker_sdk`` with an echo handler, so the worker makes contact, takes
jobs and answers like the worker in a real image would. Its output lines are the Pod's log; its exit code
the container's. ``stop`` sends SIGTERM, then SIGKILL after the grace; ``kill`` sends SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKER = "import worker_sdk\nworker_sdk.start({'handler': lambda job: {'echo': job['input']}})\n"


class WorkerProcesses:
    """One process per Pod key (``namespace/name``); every process is ended by ``stop_all``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[str]] = {}

    def running(self, key: str) -> bool:
        with self._lock:
            proc = self._procs.get(key)
        return proc is not None and proc.poll() is None

    def spawn(
        self, key: str, env: dict[str, str], on_line: Callable[[str], None], on_exit: Callable[[int], None]
    ) -> None:
        """Start the worker with ``env`` (plus PATH and this checkout on PYTHONPATH); ``on_line`` gets each
        output line, ``on_exit`` the exit code, from a thread of its own."""
        full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **env}
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        with self._lock:
            self._procs[key] = proc

        def pump() -> None:
            assert proc.stdout is not None
            with proc.stdout:
                for line in proc.stdout:
                    on_line(line.rstrip("\n"))
            on_exit(proc.wait())

        threading.Thread(target=pump, name=f"worker-{key}", daemon=True).start()

    def stop(self, key: str, grace_s: float) -> int | None:
        """SIGTERM, SIGKILL after ``grace_s``; the exit code (None: no such process)."""
        with self._lock:
            proc = self._procs.pop(key, None)
        if proc is None:
            return None
        proc.terminate()
        try:
            return proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def kill(self, key: str) -> int | None:
        return self.stop(key, 0.0)

    def stop_all(self) -> None:
        with self._lock:
            keys = list(self._procs)
        for key in keys:
            self.stop(key, 1.0)
