"""PURE: where a load-balancing worker serves, from its endpoint's env (RunPod's variables and defaults).

docs.runpod.io/serverless/load-balancing/build-a-worker: ``PORT`` (default 80) for requests,
``PORT_HEALTH`` (default ``PORT``) and ``HEALTH_CHECK_PATH`` (default ``/ping``) for the health check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PORT = 80
DEFAULT_HEALTH_PATH = "/ping"


@dataclass(frozen=True)
class Ports:
    """Where a worker serves: ``port`` for requests, ``health_port`` + ``health_path`` for its health."""

    port: int = DEFAULT_PORT
    health_port: int = DEFAULT_PORT
    health_path: str = DEFAULT_HEALTH_PATH


def ports(env: Mapping[str, str]) -> Ports:
    """The ports from an endpoint's env, RunPod's defaults for what is unset.

    Raises ValueError naming the variable when a value is not a port (1-65535) or not a path."""
    port = _port(env, "PORT", DEFAULT_PORT)
    health_port = _port(env, "PORT_HEALTH", port)
    path = env.get("HEALTH_CHECK_PATH", "").strip() or DEFAULT_HEALTH_PATH
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise ValueError(f"HEALTH_CHECK_PATH must be a path starting with '/', not {path!r}")
    return Ports(port, health_port, path)


def defaults(env: Mapping[str, str]) -> dict[str, str]:
    """The variables a load-balancing worker gets where the endpoint's env does not set them."""
    port = env.get("PORT", "").strip() or str(DEFAULT_PORT)
    return {
        "PORT": port,
        "PORT_HEALTH": env.get("PORT_HEALTH", "").strip() or port,
        "HEALTH_CHECK_PATH": env.get("HEALTH_CHECK_PATH", "").strip() or DEFAULT_HEALTH_PATH,
    }


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"{name} must be a port number from 1 to 65535, not {raw!r}")
    return int(raw)
