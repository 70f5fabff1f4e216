"""GPU inventory and pinning (emulator.gpus): pure allocation, nvidia-smi parsing, discovery per mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from emulator.config import Settings
from emulator.gpus import discover, parse_ids, parse_nvidia_smi, pick

SMI = """GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5e5a0f7c-0000-1111-2222-333344445555)
GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-6f6b1e8d-0000-1111-2222-333344445555)
  MIG 1g.10gb     Device  0: (UUID: MIG-aaaa)
GPU 2: NVIDIA A100-SXM4-80GB (UUID: GPU-7a7c2f9e-0000-1111-2222-333344445555)
"""


def settings(**fields: Any) -> Settings:
    return Settings(data_dir=Path("/nonexistent"), **fields)


def test_pick_takes_the_lowest_free_ids_or_none() -> None:
    assert pick(("0", "1", "2"), (), 2) == ("0", "1")
    assert pick(("0", "1", "2"), ("0",), 2) == ("1", "2")
    assert pick(("0", "1", "2"), ("1",), 2) == ("0", "2")
    assert pick(("0", "1", "2"), ("0", "2"), 2) is None
    assert pick((), (), 0) == () and pick(("0",), ("0",), 0) == ()
    assert pick(("0",), ("7",), 1) == ("0",)  # ids outside the inventory do not count


@given(st.integers(1, 8), st.lists(st.integers(0, 4), max_size=12))
def test_pinning_never_hands_one_gpu_to_two_workers(size: int, wants: list[int]) -> None:
    inventory = tuple(str(i) for i in range(size))
    held: dict[int, tuple[str, ...]] = {}
    for n, count in enumerate(wants):
        taken = [g for ids in held.values() for g in ids]
        got = pick(inventory, taken, count)
        free = size - len(taken)
        assert (got is None) == (count > free)
        if got is not None:
            assert len(got) == count and not set(got) & set(taken) and set(got) <= set(inventory)
            held[n] = got
        if n % 3 == 2 and held:  # now and then a worker goes and frees its GPUs
            held.pop(min(held))


def test_parsing() -> None:
    assert parse_nvidia_smi(SMI) == ("0", "1", "2")
    assert parse_nvidia_smi("") == ()
    assert parse_ids(" 0, 1,,1 ,GPU-abc") == ("0", "1", "GPU-abc")
    assert parse_ids(None) == ()


def test_discovery_per_mode() -> None:
    calls: list[list[str]] = []

    def runner(argv: list[str]) -> str | None:
        calls.append(argv)
        return SMI

    assert discover(settings(gpu_mode="off"), runner).ids == ()
    emulated = discover(settings(gpu_mode="emulate", emulated_gpus=3), runner)
    assert emulated.ids == ("0", "1", "2") and not emulated.device_requests
    assert emulated.source == "EMULATOR_EMULATED_GPUS=3"
    assert discover(settings(gpu_mode="emulate", gpus="4,5"), runner).ids == ("4", "5")
    assert calls == []  # no nvidia-smi for off and emulate
    explicit = discover(settings(gpu_mode="auto", gpus="1"), runner)
    assert explicit.ids == ("1",) and explicit.source == "EMULATOR_GPUS" and calls == []
    found = discover(settings(gpu_mode="auto"), runner)
    assert found.ids == ("0", "1", "2") and found.source == "nvidia-smi -L" and found.device_requests
    assert calls == [["nvidia-smi", "-L"]]
    forced = discover(settings(gpu_mode="nvidia"), lambda argv: None)
    assert forced.mode == "nvidia" and forced.ids == () and "none found" in forced.source
    assert "EMULATOR_GPU_MODE=nvidia" in forced.describe()
