from __future__ import annotations

import pytest
from pydantic import ValidationError

from emulator.models import Endpoint, EndpointPatch, EndpointSpec, JobRequest


def endpoint(**kw: object) -> Endpoint:
    spec = EndpointSpec.model_validate({"name": "n", "imageName": "i", **kw})
    return Endpoint.model_validate(spec.model_dump() | {"id": "e"})


def test_defaults_follow_runpod() -> None:
    ep = endpoint()
    assert (ep.workersMin, ep.workersMax, ep.idleTimeout, ep.scalerType, ep.scalerValue) == (
        0,
        3,
        5,
        "QUEUE_DELAY",
        4,
    )
    assert ep.executionTimeoutMs == 600_000 and ep.extraWorkers == 2 and ep.gpuCount == 0 and not ep.flashboot


@pytest.mark.parametrize(
    ("change", "bumps"),
    [
        ({"imageName": "j"}, True),
        ({"env": {"A": "1"}}, True),
        ({"gpuCount": 1}, True),
        ({"dockerStartCmd": ["x"]}, True),
        ({"workersMax": 9}, False),
        ({"idleTimeout": 9}, False),
        ({"name": "m"}, False),
        ({"imageName": "i"}, False),
    ],
)
def test_version_bumps_only_for_what_workers_run(change: dict[str, object], bumps: bool) -> None:
    updated, bumped = endpoint().apply_patch(EndpointPatch.model_validate(change))
    assert bumped is bumps and updated.version == (2 if bumps else 1)


def test_patch_cannot_break_bounds() -> None:
    with pytest.raises(ValidationError):
        endpoint(workersMax=2).apply_patch(EndpointPatch(workersMin=3))


@pytest.mark.parametrize(
    "body",
    [
        {"input": 1, "policy": {"executionTimeout": 1}},
        {"input": 1, "policy": {"ttl": 1}},
        {"input": 1, "webhook": "file:///etc/passwd"},
    ],
)
def test_bad_job_requests(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JobRequest.model_validate(body)


def test_a_job_request_without_input_is_valid() -> None:
    """RunPod accepts a body without `input` (#13 item 4); whether it was given is in model_fields_set."""
    assert "input" not in JobRequest.model_validate({"messages": []}).model_fields_set
    assert "input" in JobRequest.model_validate({"input": None}).model_fields_set
