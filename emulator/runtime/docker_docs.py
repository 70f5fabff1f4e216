"""PURE: the Docker engine's documents (inspect, events, stats, log bytes) as the project's types.

No ``docker`` import here, so these are tested without an engine.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any, cast

from emulator.runtime.base import (
    LABEL_ENDPOINT,
    LABEL_VERSION,
    LABEL_WORKER,
    ContainerEvent,
    ContainerInfo,
    ContainerStatus,
)

_NANOS = re.compile(r"(\.\d{6})\d+")


def parse_docker_time(value: str | None) -> float | None:
    """Docker's RFC 3339 timestamps (nanoseconds, 'Z') as epoch seconds; the zero time as None."""
    if not value or value.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(_NANOS.sub(r"\1", value.strip())).timestamp()  # Python takes 6 digits


def container_info(data: dict[str, Any]) -> ContainerInfo:
    """A ContainerInfo from the engine's inspect document."""
    state = data.get("State") or {}
    status = cast(ContainerStatus, state.get("Status") or "created")
    ended = status in ("exited", "dead")
    return ContainerInfo(
        id=data["Id"],
        name=str(data.get("Name") or "").lstrip("/"),
        labels=dict((data.get("Config") or {}).get("Labels") or {}),
        status=status,
        exit_code=state.get("ExitCode") if ended else None,
        oom_killed=bool(state.get("OOMKilled")),
        started_at=parse_docker_time(state.get("StartedAt")),
        finished_at=parse_docker_time(state.get("FinishedAt")) if ended else None,
        error=state.get("Error") or None,
        ip_address=_ip_address(data),
    )


def _ip_address(data: dict[str, Any]) -> str | None:
    """The container's address on the first network that gave it one (workers join one network)."""
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    for name in sorted(networks):
        address = (networks[name] or {}).get("IPAddress")
        if address:
            return str(address)
    return None


def label_filter(labels: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in sorted(labels.items())]


class LineSplitter:
    """Turns the log stream's byte chunks (not line-aligned) into text lines."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, b""
        return [rest.decode("utf-8", "replace").rstrip("\r")] if rest else []


def volume_labels(labels: dict[str, str]) -> dict[str, str]:
    """A network volume outlives workers and endpoints: keep only the owner-wide labels."""
    return {k: v for k, v in labels.items() if k not in (LABEL_WORKER, LABEL_VERSION, LABEL_ENDPOINT)}


def has_cdi_specs(path: str) -> bool:
    try:
        return any(entry.endswith((".json", ".yaml", ".yml")) for entry in os.listdir(path))
    except OSError:
        return False


def to_event(raw: dict[str, Any]) -> ContainerEvent | None:
    actor = raw.get("Actor") or {}
    container_id = actor.get("ID") or raw.get("id")
    action = str(raw.get("Action") or raw.get("status") or "")
    if not container_id or not action:
        return None
    attributes = dict(actor.get("Attributes") or {})
    exit_code = attributes.pop("exitCode", None)
    for key in ("name", "image", "signal", "execDuration"):
        attributes.pop(key, None)
    when = raw.get("timeNano")
    return ContainerEvent(
        container_id=str(container_id),
        action=action.split(":", 1)[0].strip(),  # "exec_start: sh -c ..." -> "exec_start"
        labels=attributes,
        exit_code=int(exit_code) if exit_code not in (None, "") else None,
        time=when / 1e9 if when else float(raw.get("time") or 0),
    )


def compute_stats(raw: dict[str, Any]) -> dict[str, float]:
    """Memory in MB (without page cache, as `docker stats` shows) and CPU percent of one core x cores."""
    memory = raw.get("memory_stats") or {}
    usage = memory.get("usage") or 0
    details = memory.get("stats") or {}
    cache = details.get("total_inactive_file", details.get("inactive_file", 0)) or 0
    used = usage - cache if cache < usage else usage
    cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
    cpu_delta = ((cpu.get("cpu_usage") or {}).get("total_usage") or 0) - (
        (pre.get("cpu_usage") or {}).get("total_usage") or 0
    )
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    percent = cpu_delta / system_delta * cpus * 100.0 if cpu_delta > 0 and system_delta > 0 else 0.0
    return {"memory_mb": used / (1024 * 1024), "cpu_percent": percent}
