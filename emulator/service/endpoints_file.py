"""endpoints.toml: one [[endpoints]] table per endpoint, RunPod's field names; applied at start-up."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from emulator.errors import InvalidInput, describe_validation
from emulator.models import EndpointSpec


def load_endpoints_file(path: Path) -> list[EndpointSpec]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidInput(f"the endpoints file {path} does not exist", field="config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path} is not valid TOML: {exc}", field="config") from exc
    tables = data.get("endpoints", [])
    unknown = sorted(set(data) - {"endpoints"})
    if unknown:
        raise InvalidInput(
            f"{path}: unknown top-level keys {unknown}; expected [[endpoints]] tables", field="config"
        )
    if not isinstance(tables, list):
        raise InvalidInput(f"{path}: 'endpoints' must be an array of tables ([[endpoints]])", field="config")
    specs: list[EndpointSpec] = []
    for index, table in enumerate(tables):
        try:
            specs.append(EndpointSpec.model_validate(table))
        except ValidationError as exc:
            message, field = describe_validation(list(exc.errors()))
            name = table.get("name", f"#{index + 1}") if isinstance(table, dict) else f"#{index + 1}"
            raise InvalidInput(f"{path}: endpoint {name}: {message}", field=field) from exc
    return specs
