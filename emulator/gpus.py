"""GPU inventory and pinning: which GPUs the host has, and which worker holds which.

Two parts:

* **Allocation** (pure): ``pick(inventory, held, count)`` answers the lowest free device ids, or None
  when there are not enough. Each GPU is held by one worker at a time; who holds what is read from
  the worker records (``gpu_ids``) on every reconcile tick, so nothing here keeps state that a
  restart could lose.
* **Discovery** (the adapter): ``discover(settings)`` builds the inventory once at start-up:

  ==================  =====================================================================
  EMULATOR_GPU_MODE   inventory
  ==================  =====================================================================
  ``auto`` (default)  ``EMULATOR_GPUS="0,1"`` if set, else ``nvidia-smi -L`` (or NVML when
                      ``pynvml`` is installed); containers get NVIDIA device requests
  ``nvidia``          the same, but endpoint creation does not first ask the engine for an
                      NVIDIA runtime: device requests are always made, so the engine's own
                      refusal shows in the worker's reason
  ``emulate``         ``EMULATOR_EMULATED_GPUS=N`` ids ``0..N-1`` (or ``EMULATOR_GPUS``):
                      the same pinning and THROTTLED scheduling, **no** device requests, for
                      CI machines without GPUs
  ``off``             none: an endpoint with ``gpuCount > 0`` is refused
  ==================  =====================================================================
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from emulator.config import Settings

GpuMode = Literal["auto", "nvidia", "emulate", "off"]
_SMI_LINE = re.compile(r"^GPU\s+(\d+)\s*:")


@dataclass(frozen=True)
class GpuInventory:
    mode: GpuMode
    ids: tuple[str, ...]
    source: str  # where the ids came from: EMULATOR_GPUS, nvidia-smi, NVML, emulated, none

    @property
    def device_requests(self) -> bool:
        """Whether containers get NVIDIA device requests (every mode but emulate)."""
        return self.mode != "emulate"

    def describe(self) -> str:
        ids = ",".join(self.ids) if self.ids else "none"
        return f"EMULATOR_GPU_MODE={self.mode}, GPUs {ids} (from {self.source})"


# --- allocation (pure) -------------------------------------------------------------------------------
def pick(inventory: Iterable[str], held: Iterable[str], count: int) -> tuple[str, ...] | None:
    """``count`` free ids, in inventory order; () for count 0; None when fewer than ``count`` are free."""
    if count <= 0:
        return ()
    taken = set(held)
    free = [gpu for gpu in inventory if gpu not in taken]
    return tuple(free[:count]) if len(free) >= count else None


def parse_ids(text: str | None) -> tuple[str, ...]:
    """``"0, 1,,2"`` -> ("0", "1", "2"), duplicates dropped."""
    out: list[str] = []
    for part in (text or "").split(","):
        part = part.strip()
        if part and part not in out:
            out.append(part)
    return tuple(out)


def parse_nvidia_smi(text: str) -> tuple[str, ...]:
    """The device indexes in ``nvidia-smi -L`` output ("GPU 0: NVIDIA A100 (UUID: GPU-...)")."""
    ids = []
    for line in text.splitlines():
        match = _SMI_LINE.match(line.strip())
        if match:
            ids.append(match.group(1))
    return tuple(ids)


# --- discovery (the adapter) ---------------------------------------------------------------------------
Runner = Callable[[list[str]], str | None]


def _run_nvidia_smi(argv: list[str]) -> str | None:
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _nvml_ids() -> tuple[str, ...]:
    try:
        import pynvml  # optional
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
        try:
            return tuple(str(i) for i in range(int(pynvml.nvmlDeviceGetCount())))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no device: no GPUs
        return ()


def discover(settings: Settings, run: Runner = _run_nvidia_smi) -> GpuInventory:
    """The host's GPU inventory for ``settings.gpu_mode`` (runs ``nvidia-smi -L`` at most once)."""
    mode: GpuMode = settings.gpu_mode
    explicit = parse_ids(settings.gpus)
    if mode == "off":
        return GpuInventory("off", (), "EMULATOR_GPU_MODE=off")
    if mode == "emulate":
        if explicit:
            return GpuInventory("emulate", explicit, "EMULATOR_GPUS")
        count = max(0, settings.emulated_gpus)
        return GpuInventory("emulate", tuple(str(i) for i in range(count)), f"EMULATOR_EMULATED_GPUS={count}")
    if explicit:
        return GpuInventory(mode, explicit, "EMULATOR_GPUS")
    listed = run(["nvidia-smi", "-L"])
    if listed:
        found = parse_nvidia_smi(listed)
        if found:
            return GpuInventory(mode, found, "nvidia-smi -L")
    found = _nvml_ids()
    if found:
        return GpuInventory(mode, found, "NVML")
    return GpuInventory(mode, (), "none found (no nvidia-smi, no NVML)")


__all__ = ["GpuInventory", "GpuMode", "discover", "parse_ids", "parse_nvidia_smi", "pick"]
