"""Versions of the peers' software, for the report's machine table."""

from __future__ import annotations

import subprocess
import sys

from bench.procs import _env


def runpod_version() -> str | None:
    """The runpod SDK version this Python imports (None: not installed)."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", "import runpod; print(runpod.__version__)"],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env({}),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
