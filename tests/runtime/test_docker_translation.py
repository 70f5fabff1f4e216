"""The Docker adapter's pure parts: error translation and parsing. No engine needed."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from emulator.errors import (
    ContainerNotFound,
    GpuUnavailable,
    ImageNotFound,
    RuntimeFailure,
    RuntimeUnavailable,
)
from emulator.runtime.docker import DOCKER_HINT, gpu_unavailable_from, translate_error
from emulator.runtime.docker_docs import (
    LineSplitter,
    compute_stats,
    container_info,
    parse_docker_time,
    to_event,
)

GPU_REFUSAL = 'could not select device driver "nvidia" with capabilities: [[gpu]]'


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} error", response=response, explanation=explanation)


def test_gpu_refusal_names_the_fix() -> None:
    error = gpu_unavailable_from(GPU_REFUSAL, ["0"])
    assert isinstance(error, GpuUnavailable)
    assert "NVIDIA Container Toolkit" in error.message and "EMULATOR_GPU_MODE=emulate" in error.message
    assert GPU_REFUSAL in error.message and error.data["device_ids"] == ["0"]
    assert gpu_unavailable_from("no space left on device") is None


def test_translate_error() -> None:
    assert isinstance(translate_error(api_error(500, GPU_REFUSAL), "container", "c1"), GpuUnavailable)
    missing = translate_error(
        docker.errors.NotFound("404", explanation="No such container: c1"), "container", "c1"
    )
    assert isinstance(missing, ContainerNotFound) and missing.data["container_id"] == "c1"
    network = translate_error(
        docker.errors.NotFound("404", explanation="network n1 not found"), "container", "c1"
    )
    assert type(network) is RuntimeFailure and "network n1 not found" in network.message
    image = translate_error(docker.errors.ImageNotFound("No such image"), "create", "my/img:1")
    assert isinstance(image, ImageNotFound) and "my/img:1" in image.message
    conflict = translate_error(api_error(409, "name already in use"), "create", "w1")
    assert isinstance(conflict, RuntimeFailure) and not isinstance(conflict, ContainerNotFound)
    assert conflict.data == {"reason": "name already in use", "status": 409}
    down = translate_error(requests.exceptions.ConnectionError("refused"), "engine")
    assert isinstance(down, RuntimeUnavailable) and DOCKER_HINT in down.message
    other = ValueError("not ours")
    assert translate_error(other) is other


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2024-05-01T12:00:00.123456789Z", 1714564800.123456),
        ("2024-05-01T12:00:00Z", 1714564800.0),
        ("2024-05-01T14:00:00.5+02:00", 1714564800.5),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_docker_time(stamp: str | None, expected: float | None) -> None:
    parsed = parse_docker_time(stamp)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(expected)


def test_container_info_from_inspect() -> None:
    document = {
        "Id": "abc",
        "Name": "/w1",
        "Config": {"Labels": {"k": "v"}},
        "State": {
            "Status": "exited",
            "ExitCode": 137,
            "OOMKilled": True,
            "StartedAt": "2024-05-01T12:00:00Z",
            "FinishedAt": "2024-05-01T12:00:01Z",
            "Error": "",
        },
    }
    info = container_info(document)
    assert (info.name, info.status, info.exit_code, info.oom_killed, info.error) == (
        "w1",
        "exited",
        137,
        True,
        None,
    )
    assert info.finished_at - info.started_at == 1.0  # type: ignore[operator]
    created = container_info({"Id": "x", "State": {"Status": "created", "ExitCode": 0}})
    assert (created.exit_code, created.started_at, created.labels) == (None, None, {})


def test_compute_stats() -> None:
    raw = {
        "memory_stats": {"usage": 100 * 1024 * 1024, "stats": {"total_inactive_file": 20 * 1024 * 1024}},
        "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
    }
    assert compute_stats(raw) == {"memory_mb": 80.0, "cpu_percent": 40.0}
    assert compute_stats({}) == {"memory_mb": 0.0, "cpu_percent": 0.0}


def test_line_splitter_joins_chunks() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"he") == []
    assert splitter.feed(b"llo\r\nwor") == ["hello"]
    assert splitter.feed(b"ld\n\xff\n") == ["world", "\ufffd"]
    assert splitter.feed(b"tail") == []
    assert splitter.flush() == ["tail"]


def test_event_conversion() -> None:
    raw = {
        "Type": "container",
        "Action": "die",
        "Actor": {"ID": "abc", "Attributes": {"exitCode": "3", "image": "img", "name": "w1", "k": "v"}},
        "timeNano": 1_714_564_800_500_000_000,
    }
    event = to_event(raw)
    assert event is not None
    assert (event.container_id, event.action, event.exit_code, event.labels) == ("abc", "die", 3, {"k": "v"})
    assert event.time == pytest.approx(1714564800.5)
    exec_event = to_event({"Action": "exec_start: sh -c true", "Actor": {"ID": "abc"}})
    assert exec_event is not None and exec_event.action == "exec_start"
    assert to_event({"Action": "start"}) is None
