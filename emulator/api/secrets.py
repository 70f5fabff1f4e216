"""Endpoint ``env`` values that look secret are never shown by the API: ``********`` stands in.

A key looks secret when its name contains KEY, TOKEN, SECRET, PASS (PASSWORD, PASSPHRASE),
CREDENTIAL or AUTH, in any case. Containers still get the real values. A PATCH that sends the mask
back (a client that read the endpoint, changed something and wrote it back) keeps the stored value.
"""

from __future__ import annotations

from typing import Any

from emulator.models import Endpoint
from emulator.workers.secret_refs import REFERENCE

MASK = "********"
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASS", "CREDENTIAL", "AUTH")


def looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def masked_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with secret-looking values masked; a value that is only a ``{{ RUNPOD_SECRET_name }}``
    reference is shown (it names a secret, it is not one)."""
    return {
        key: MASK if value and looks_secret(key) and not REFERENCE.fullmatch(value.strip()) else value
        for key, value in env.items()
    }


def public_endpoint(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as /v1 shows it: its env's secret-looking values masked."""
    data = endpoint.model_dump()
    data["env"] = masked_env(endpoint.env)
    return data


def unmask_env(current: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """``given`` with each masked value replaced by the stored one (a value that was never stored stays)."""
    return {key: current[key] if value == MASK and key in current else value for key, value in given.items()}
