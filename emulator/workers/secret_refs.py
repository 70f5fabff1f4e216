"""PURE: ``{{ RUNPOD_SECRET_name }}`` references in endpoint ``env`` values, resolved for workers.

RunPod (pods/templates/secrets) lets an env value name a stored secret; the worker's variable holds
the secret's value, while the endpoint keeps showing the reference. A value may hold several
references and other text (``Bearer {{ RUNPOD_SECRET_token }}``); spaces inside the braces are optional.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from emulator.errors import InvalidInput

REFERENCE = re.compile(r"\{\{\s*RUNPOD_SECRET_([A-Za-z0-9_-]+)\s*\}\}")
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_NAME_RE = re.compile(NAME_PATTERN)
MAX_VALUE_BYTES = 64 * 1024


def check_name(name: object) -> str:
    """The name if it is a valid secret name (letters, digits, ``_``, ``-``; 1-64); else InvalidInput."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidInput(
            "name must be 1-64 letters, digits, '_' or '-' (it is used as {{ RUNPOD_SECRET_<name> }})",
            field="name",
        )
    return name


def check_value(value: object) -> str:
    """The value if it is a non-empty string of at most 64 KiB without NUL; else InvalidInput."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("value must be a non-empty string", field="value")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise InvalidInput(f"value is over {MAX_VALUE_BYTES} bytes", field="value")
    if "\x00" in value:
        raise InvalidInput("value must not contain NUL characters", field="value")
    return value


class MissingSecret(InvalidInput):
    """An env value names a secret that does not exist."""


def referenced(env: Mapping[str, str]) -> set[str]:
    """The secret names ``env``'s values refer to."""
    return {m.group(1) for value in env.values() for m in REFERENCE.finditer(value)}


def check_references(env: Mapping[str, str], known: set[str] | Mapping[str, object]) -> None:
    """MissingSecret (422) naming every referenced secret that is not stored."""
    missing = sorted(referenced(env) - set(known))
    if missing:
        names = ", ".join(missing)
        raise MissingSecret(
            f"env refers to secret(s) that do not exist: {names}; create them first with "
            f'POST /v1/secrets {{"name": "{missing[0]}", "value": "..."}}',
            field="env",
        )


def resolve(env: Mapping[str, str], secrets: Mapping[str, str]) -> dict[str, str]:
    """``env`` with every reference replaced by its secret's value; MissingSecret if one is gone."""
    check_references(env, secrets)
    return {key: REFERENCE.sub(lambda m: secrets[m.group(1)], value) for key, value in env.items()}
