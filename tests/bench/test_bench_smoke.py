"""``python -m bench`` end to end with tiny counts (``--mode smoke``): every benchmark runs, every row is
written, and nothing the run started is left behind. No timing is asserted: these machines are shared.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import SECTIONS

REPO = Path(__file__).resolve().parents[2]
SAMPLES = ("serverless-emulator/sample-echo:latest",)


@pytest.fixture(scope="module")
def docker_ready() -> None:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine answers: {exc}")
    missing = [s for s in SAMPLES if not client.images.list(name=s)]
    client.close()
    if missing:
        pytest.skip(f"sample images missing ({', '.join(missing)}): run `bash scripts/setup.sh`")
    if importlib.util.find_spec("runpod") is None or importlib.util.find_spec("aiohttp") is None:
        pytest.skip("runpod (the peer) and aiohttp are needed: pip install -e '.[test]'")


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_smoke_run_writes_every_row(docker_ready: None, tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--mode",
            "smoke",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    text = out.read_text()
    for label in ("CPU", "Cores", "Memory", "Docker engine", "Python", "Date", "Emulator code"):
        assert re.search(rf"^\| {re.escape(label)} \| .+ \|$", text, re.M), f"machine row {label!r} missing"
    written = set(re.findall(r"<!-- ([a-z0-9_.]+) -->", text))
    expected = {key for _, _, _, rows in SECTIONS for key, _ in rows}
    assert expected <= written, f"rows missing from RESULTS.md: {sorted(expected - written)}"
    assert "not measured (error)" not in text and "This section failed" not in text, text
    assert "LEFT BEHIND" not in text, text
    assert "Every control plane, peer, client process, container and network of the run was removed." in text


def test_every_benchmark_module_is_small() -> None:
    """The issue asks for small modules (under ~300 lines each)."""
    for path in (REPO / "bench").glob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 300, f"{path.name} has {lines} lines"
