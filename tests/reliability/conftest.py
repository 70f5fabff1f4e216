"""Reliability suite: load, faults, hostile input, security (README.md, section "Reliability").

``RELIABILITY_SOAK=1`` turns on the long variants (60 s+ of load, more kills, more generated inputs);
the default run fits CI. Each test records what it measured (requests, jobs, kills, 5xx, lost) with
``figures``; they are printed at the end of the run and written to ``build/reliability/figures.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability import common


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: longer variant, runs only with RELIABILITY_SOAK=1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if common.SOAK:
        return
    skip = pytest.mark.skip(reason="soak variant: set RELIABILITY_SOAK=1")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not common.FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, figures in common.FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(figures, sort_keys=True)}")
    terminalreporter.write_line(f"(written to {common.figures_path()})")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills with what it measured; saved even when the test fails."""
    found: dict[str, Any] = {}
    yield found
    if found:
        common.save_figures(request.node.name, found)
