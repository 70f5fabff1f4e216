"""docker-compose.yml as `docker compose up -d --wait` (Compose v2) needs it, checked on paper (only
Compose v1 runs here; scripts/check_compose.sh runs the file for real): every one-shot sample service is
adopted by the emulator with service_completed_successfully (else --wait fails on their exit 0,
docker/compose#10596), the emulator has a healthcheck on /ping, and its stop grace covers its drain."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from emulator.config import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)s", text)
    assert match, text
    return float(match.group(1))


def test_compose_up_wait_shape() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    emulator = services.pop("emulator")
    samples = {name for name, spec in services.items() if spec.get("entrypoint") == ["true"]}
    assert samples == set(services) and len(samples) >= 6  # the other services only build images
    adopted = {
        name
        for name, dep in emulator["depends_on"].items()
        if dep.get("condition") == "service_completed_successfully"
    }
    assert adopted == samples
    check = emulator["healthcheck"]
    assert "/ping" in " ".join(check["test"]) and check["test"][0] == "CMD"
    grace_s = _seconds(emulator["stop_grace_period"])
    assert grace_s > Settings().stop_grace_s + 5  # the emulator's own drain fits in Compose's grace


def test_every_image_of_the_example_endpoints_is_built_by_compose() -> None:
    """Compose's emulator serves examples/endpoints.toml: each image it names needs a build service."""
    import tomllib

    endpoints = tomllib.loads((COMPOSE.parent / "examples" / "endpoints.toml").read_text())["endpoints"]
    wanted = {e["imageName"] for e in endpoints if "imageName" in e}
    built = {spec.get("image") for spec in yaml.safe_load(COMPOSE.read_text())["services"].values()}
    assert wanted - built == set(), (
        f"images of examples/endpoints.toml with no compose service: {wanted - built}"
    )
