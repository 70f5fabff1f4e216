"""worker_sdk stays cheap to import, standard-library only, and made of small modules."""

import ast
import statistics
import subprocess
import sys

from tests.worker_sdk.procs import REPO, clean_env

SDK = REPO / "worker_sdk"
HEAVY = [
    "asyncio",
    "json",
    "threading",
    "http.client",
    "urllib.parse",
    "inspect",
    "socket",
    "ssl",
    "uuid",
    "traceback",
    "queue",
    "argparse",
]


def _fresh(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(REPO),
        env=clean_env({}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_loads_nothing_heavy() -> None:
    code = (
        "import sys; before = set(sys.modules); import worker_sdk; new = sorted(set(sys.modules) - before); "
        "print(repr(new))"
    )
    new = ast.literal_eval(_fresh(code).strip())
    assert new == ["worker_sdk"], new
    assert not [m for m in HEAVY if m in new]


def test_import_time_under_50ms() -> None:
    code = "import time; t = time.perf_counter(); import worker_sdk; print(time.perf_counter() - t)"
    times = [float(_fresh(code)) for _ in range(5)]
    assert statistics.median(times) < 0.050, times


def test_from_worker_sdk_import_serverless() -> None:
    out = _fresh(
        "from worker_sdk import serverless; import worker_sdk; print(serverless.start is worker_sdk.start)"
    )
    assert out.strip() == "True"


def test_serverless_alias_is_lazy_and_works() -> None:
    out = _fresh(
        "import sys, worker_sdk; a = 'asyncio' in sys.modules; from worker_sdk.serverless import start, "
        "progress_update; print(a, start is worker_sdk.start, worker_sdk.serverless.progress_update "
        "is worker_sdk.progress_update)"
    )
    assert out.split() == ["False", "True", "True"]


def test_standard_library_only_and_small_modules() -> None:
    stdlib = set(getattr(sys, "stdlib_module_names", ())) | {"_thread"}
    for path in sorted(SDK.glob("*.py")):
        source = path.read_text()
        assert len(source.splitlines()) < 300, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]  # level 0: always names a module
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top == "__future__" or not stdlib or top in stdlib, f"{path.name} imports {name}"


def test_bench_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_import.py"), "--runs", "1"],
        cwd=str(REPO),
        env=clean_env({}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "import worker_sdk" in proc.stdout and "ratio" in proc.stdout, proc.stdout + proc.stderr
