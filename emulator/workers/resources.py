"""PURE: what a worker container is given in CPU, memory and shared memory, and how RunPod names it.

RunPod sizes a serverless worker by its endpoint (``vcpuCount`` for CPU endpoints, ``memoryInMb``) and
tells it what it got in ``RUNPOD_CPU_COUNT`` and ``RUNPOD_MEM_GB`` (whole numbers, seen in worker
dumps: ``RUNPOD_CPU_COUNT=9``, ``RUNPOD_MEM_GB=50``); its ``/dev/shm`` is many GB, where Docker's default
is 64 MB (docs: pods/troubleshooting/storage-full; pods/templates/environment-variables).

The emulator makes those real limits (``nano_cpus``, ``mem_limit``, ``shm_size``) and reports them the
same way. Host figures (CPU count, memory) are passed in, read once by ``host_facts``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache

from emulator.config import Settings
from emulator.models import Endpoint

NANO_CPUS_PER_CPU = 1_000_000_000


@dataclass(frozen=True)
class HostFacts:
    """The machine the workers run on: ``cpus`` (logical CPUs), ``memory_mb`` (physical memory)."""

    cpus: int
    memory_mb: int


@cache
def host_facts() -> HostFacts:
    """This host's CPU count and physical memory, read once (``os.cpu_count``, ``sysconf``)."""
    cpus = os.cpu_count() or 1
    try:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError, AttributeError):  # not a POSIX host
        memory_mb = 0
    return HostFacts(cpus=cpus, memory_mb=int(memory_mb))


def worker_cpus(endpoint: Endpoint) -> float:
    """CPUs one worker counts in the CPU budget (``EMULATOR_WORKER_CPU_BUDGET``): ``vcpuCount``, else 1."""
    return float(endpoint.vcpuCount) if endpoint.vcpuCount else 1.0


def nano_cpus(endpoint: Endpoint, host: HostFacts) -> int | None:
    """Docker's CPU limit for a worker: ``vcpuCount`` CPUs, at most the host's (the engine refuses more);
    None (no limit) when ``vcpuCount`` is unset."""
    if not endpoint.vcpuCount:
        return None
    return min(endpoint.vcpuCount, max(1, host.cpus)) * NANO_CPUS_PER_CPU


def shm_mb(endpoint: Endpoint, settings: Settings) -> int:
    """The worker's ``/dev/shm`` in MB: ``shmSizeMb``; else half of ``memoryInMb``; else
    ``EMULATOR_WORKER_SHM_MB`` (8192). A tmpfs takes memory only as it is written (and counts against
    ``memoryInMb`` then), so a large size costs nothing until used."""
    if endpoint.shmSizeMb:
        return endpoint.shmSizeMb
    if endpoint.memoryInMb:
        return max(64, endpoint.memoryInMb // 2)
    return settings.worker_shm_mb


def cpu_count(endpoint: Endpoint, host: HostFacts) -> int:
    """``RUNPOD_CPU_COUNT``: ``vcpuCount`` (as limited), else the host's CPU count."""
    if endpoint.vcpuCount:
        return min(endpoint.vcpuCount, max(1, host.cpus))
    return max(1, host.cpus)


def mem_gb(endpoint: Endpoint, host: HostFacts) -> int:
    """``RUNPOD_MEM_GB``: ``memoryInMb`` in whole GB (at least 1), else the host's memory."""
    memory_mb = endpoint.memoryInMb or host.memory_mb
    return max(1, math.floor(memory_mb / 1024))


def gpu_name(settings: Settings) -> str:
    """``RUNPOD_GPU_NAME`` for a worker given GPUs: ``EMULATOR_GPU_NAME`` (default by mode), with spaces
    as ``+`` as RunPod writes it (``NVIDIA+A40``)."""
    name = settings.gpu_name or ("Emulated GPU" if settings.gpu_mode == "emulate" else "NVIDIA GPU")
    return name.strip().replace(" ", "+")
