"""Pure translation for the Kubernetes runtime: ContainerSpec -> Pod, Pod documents -> ContainerInfo/events.

Pod documents are written after the Pod v1 API reference (and the shapes the v1.20 API server answered in
tests/runtime/test_kubernetes_runtime.py); states the kubelet stand-in cannot produce (OOMKilled,
ErrImagePull, Evicted, Unknown) are only tested here.
"""

from __future__ import annotations

from typing import Any

from emulator.runtime.base import LABEL_ENDPOINT, ContainerInfo, ContainerSpec
from emulator.runtime.kube_docs import (
    MANAGED_BY,
    container_info,
    events_between,
    label_selector,
    label_value,
    pod_labels,
    pod_manifest,
    pod_name,
)

LONG = "e" * 64  # RunPod-style ids may pass 63 characters


def _spec(**overrides: Any) -> ContainerSpec:
    fields: dict[str, Any] = {
        "name": "se-Worker_1",
        "image": "example/worker:v1",
        "env": {"A": "1", "NVIDIA_VISIBLE_DEVICES": "void"},
        "labels": {LABEL_ENDPOINT: "ep1"},
        "command": "python3 -c 'print(1)'",
    }
    fields.update(overrides)
    return ContainerSpec(**fields)


def _pod(phase: str, state: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "metadata": {"name": "p-1", "labels": {LABEL_ENDPOINT: "ep1", MANAGED_BY[0]: MANAGED_BY[1]}},
        "spec": {},
        "status": {"phase": phase, **status},
    }
    if state is not None:
        doc["status"]["containerStatuses"] = [{"name": "worker", "state": state}]
    return doc


def test_label_values_over_63_chars_are_hashed_and_restored_from_annotations() -> None:
    assert label_value("ep1") == ("ep1", False)
    hashed, was_hashed = label_value(LONG)
    assert was_hashed and len(hashed) <= 63 and hashed.startswith("h-")
    assert label_value("has space")[1] is True
    manifest = pod_manifest(_spec(labels={LABEL_ENDPOINT: LONG}), "p-1")
    assert manifest["metadata"]["labels"][LABEL_ENDPOINT] == hashed
    assert manifest["metadata"]["annotations"][LABEL_ENDPOINT] == LONG
    assert pod_labels(manifest) == {LABEL_ENDPOINT: LONG}  # managed-by is ours, not the spec's
    assert container_info(manifest).name == "se-Worker_1"  # the spec's name; the id is the Pod's
    assert label_selector({LABEL_ENDPOINT: LONG}) == f"{LABEL_ENDPOINT}={hashed}"


def test_pod_name_is_dns_1123_and_at_most_63() -> None:
    assert pod_name("se-Worker_1", "ab12c") == "se-worker-1-ab12c"
    long_name = pod_name("X" * 100, "ab12c")
    assert len(long_name) == 63 and long_name.endswith("-ab12c")
    assert pod_name("__", "ab12c") == "worker-ab12c"


def test_manifest_bare_pod_limits_gpus_volume_and_no_token() -> None:
    manifest = pod_manifest(
        _spec(
            memory_mb=512,
            nano_cpus=1_500_000_000,
            gpu_device_ids=("0", "1"),
            volume="vol-1",
            extra_hosts={"control-plane": "10.0.0.1", "gw": "host-gateway"},
        ),
        "p-1",
        grace_s=7,
    )
    spec = manifest["spec"]
    assert (spec["restartPolicy"], spec["automountServiceAccountToken"]) == ("Never", False)
    assert spec["terminationGracePeriodSeconds"] == 7
    [container] = spec["containers"]
    assert container["args"] == ["python3", "-c", "print(1)"] and "command" not in container
    assert container["resources"]["limits"] == {"memory": "512Mi", "cpu": "1500m", "nvidia.com/gpu": "2"}
    assert {"name": "A", "value": "1"} in container["env"]
    assert all(e["name"] != "NVIDIA_VISIBLE_DEVICES" for e in container["env"])  # the device plugin sets it
    assert container["volumeMounts"] == [{"name": "runpod-volume", "mountPath": "/runpod-volume"}]
    assert spec["volumes"] == [{"name": "runpod-volume", "persistentVolumeClaim": {"claimName": "vol-1"}}]
    assert spec["hostAliases"] == [{"ip": "10.0.0.1", "hostnames": ["control-plane"]}]
    assert manifest["metadata"]["labels"][MANAGED_BY[0]] == MANAGED_BY[1]


def test_cpu_pod_keeps_void_and_has_no_limits() -> None:
    [container] = pod_manifest(_spec(command=["run"]), "p-1")["spec"]["containers"]
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in container["env"]
    assert container["resources"] == {} and container["args"] == ["run"]


def test_unschedulable_pod_is_created_with_the_schedulers_message() -> None:
    message = "0/50 nodes are available: 50 Insufficient nvidia.com/gpu."
    pod = _pod(
        "Pending",
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        ],
    )
    info = container_info(pod)
    assert (info.status, info.pending) == ("created", f"Unschedulable: {message}")
    assert info.labels == {LABEL_ENDPOINT: "ep1"} and info.id == "p-1"


def test_pending_states() -> None:
    creating = container_info(_pod("Pending", {"waiting": {"reason": "ContainerCreating"}}))
    assert (creating.status, creating.pending) == ("created", "ContainerCreating")
    pulled = container_info(_pod("Pending", {"waiting": {"reason": "ErrImagePull", "message": "not found"}}))
    assert (pulled.status, pulled.error, pulled.pending) == ("dead", "ErrImagePull: not found", None)


def test_running_and_terminated() -> None:
    running = container_info(
        _pod("Running", {"running": {"startedAt": "2026-11-30T18:00:00Z"}}, podIP="10.1.2.3")
    )
    assert (running.status, running.ip_address) == ("running", "10.1.2.3")
    assert running.started_at == 1796061600.0
    ended = container_info(
        _pod(
            "Failed",
            {
                "terminated": {
                    "exitCode": 3,
                    "reason": "Error",
                    "startedAt": "2026-11-30T18:00:00Z",
                    "finishedAt": "2026-11-30T18:00:05Z",
                }
            },
        )
    )
    assert (ended.status, ended.exit_code, ended.oom_killed, ended.error) == ("exited", 3, False, None)
    assert ended.finished_at is not None and ended.started_at is not None
    assert ended.finished_at - ended.started_at == 5


def test_oom_deadline_evicted_and_unknown() -> None:
    oom = container_info(_pod("Failed", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))
    assert (oom.exit_code, oom.oom_killed) == (137, True)
    killed = container_info(
        _pod(
            "Failed",
            {"terminated": {"exitCode": 137, "reason": "Error"}},
            reason="DeadlineExceeded",
            message="Pod was active too long",
        )
    )
    assert killed.error == "DeadlineExceeded: Pod was active too long"
    evicted = container_info(_pod("Failed", reason="Evicted", message="low on memory"))
    assert (evicted.status, evicted.error) == ("exited", "Evicted: low on memory")
    lost = container_info(_pod("Unknown"))
    assert lost.status == "dead" and lost.error is not None and "node lost" in lost.error


def _info(status: str, **fields: Any) -> ContainerInfo:
    return ContainerInfo(id="p-1", name="p-1", labels={"k": "v"}, status=status, **fields)  # type: ignore[arg-type]


def test_events_between_observations() -> None:
    assert [e.action for e in events_between(None, _info("created"), 1.0)] == []
    assert [e.action for e in events_between(_info("created"), _info("running"), 1.0)] == ["start"]
    died = events_between(_info("running"), _info("exited", exit_code=3), 2.0)
    assert [(e.action, e.exit_code, e.time, e.labels) for e in died] == [("die", 3, 2.0, {"k": "v"})]
    # ran between two watch events: start is reported before die
    quick = events_between(_info("created"), _info("exited", exit_code=0, started_at=1.0), 2.0)
    assert [e.action for e in quick] == ["start", "die"]
    oom = events_between(_info("running"), _info("exited", exit_code=137, oom_killed=True), 2.0)
    assert [e.action for e in oom] == ["oom", "die"]
    assert [e.action for e in events_between(_info("exited"), None, 3.0)] == ["destroy"]
    assert events_between(_info("running"), _info("running"), 3.0) == []
