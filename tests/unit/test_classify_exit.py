from __future__ import annotations

import pytest

from emulator.runtime.base import classify_exit


@pytest.mark.parametrize(
    ("exit_code", "oom_killed", "expected"),
    [
        (0, False, "exited normally (0)"),
        (1, False, "exited with code 1"),
        (3, False, "exited with code 3"),
        (128, False, "exited with code 128"),
        (130, False, "killed by signal 2 (exit 130)"),
        (137, False, "killed (exit 137: SIGKILL or out of memory)"),
        (139, False, "segmentation fault (exit 139)"),
        (143, False, "terminated (exit 143: SIGTERM)"),
        (None, False, "exited (unknown code)"),
        (137, True, "out of memory (exit 137)"),
        (None, True, "out of memory (exit 137)"),
        (1, True, "out of memory (exit 1)"),
    ],
)
def test_classify_exit(exit_code: int | None, oom_killed: bool, expected: str) -> None:
    assert classify_exit(exit_code, oom_killed) == expected


def test_oom_is_reported_even_when_the_code_looks_normal() -> None:
    assert "out of memory" in classify_exit(0, oom_killed=True)


def test_default_is_not_oom() -> None:
    assert classify_exit(137) == classify_exit(137, False)
