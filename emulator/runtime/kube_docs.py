"""PURE: ContainerSpec -> Kubernetes Pod manifest, and Pod documents -> the runtime contract's types.

No ``kubernetes`` import here (``runtime/kubernetes.py`` is the only importer), so all of this is tested
without a cluster. Documents are the API server's JSON (``v1.Pod``, camelCase), as dicts.

Shapes follow the Kubernetes API reference for Pod v1
(https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/) and RunPod's worker
contract (one container per worker, the network volume at ``/runpod-volume``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
from datetime import datetime
from typing import Any

from emulator.runtime.base import (
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    ContainerStatus,
    LocalImage,
)

CONTAINER = "worker"  # the one container of a worker Pod
MANAGED_BY = ("app.kubernetes.io/managed-by", "serverless-emulator")  # on every Pod we create
NAME_ANNOTATION = "serverless-emulator.name"  # the spec's name (the Pod's name adds a suffix)
GPU_RESOURCE = "nvidia.com/gpu"
VOLUME_NAME = "runpod-volume"
LABEL_VALUE_MAX = 63
POD_NAME_MAX = 63
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
# A container waiting for one of these will not start without a change: the worker failed.
FATAL_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


def label_value(value: str) -> tuple[str, bool]:
    """A valid label value for ``value`` and whether it was replaced by a hash.

    Values over 63 characters or with characters labels refuse become ``h-<40 hex of sha256>``; the
    original then travels in an annotation of the same key (see ``pod_manifest``).
    """
    if len(value) <= LABEL_VALUE_MAX and _LABEL_VALUE.match(value):
        return value, False
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40], True


def label_selector(labels: dict[str, str]) -> str:
    """``k=v,k2=v2`` selecting Pods carrying all of ``labels`` (hashed as ``label_value`` stores them)."""
    return ",".join(f"{key}={label_value(value)[0]}" for key, value in sorted(labels.items()))


def pod_name(container_name: str, suffix: str) -> str:
    """A DNS-1123 Pod name from the spec's name plus a client-chosen ``suffix`` (lowercase alnum).

    ``se-test_Foo`` with suffix ``ab12c`` -> ``se-test-foo-ab12c``; at most 63 characters.
    """
    base = _NOT_DNS.sub("-", container_name.lower()).strip("-") or "worker"
    base = base[: POD_NAME_MAX - len(suffix) - 1].rstrip("-")
    return f"{base}-{suffix}"


def pod_manifest(spec: ContainerSpec, name: str, grace_s: int = 10) -> dict[str, Any]:
    """The bare Pod that runs one worker: ``restartPolicy: Never`` (crash back-off stays the supervisor's).

    Mapping: ``command`` -> ``args`` (like Docker's Cmd, the image's entrypoint stays); memory and CPU
    as limits (``Mi``, millicores); ``gpu_count`` (or the number of ``gpu_device_ids``) in ``limits["nvidia.com/gpu"]`` (the
    device plugin chooses the devices, so ``NVIDIA_VISIBLE_DEVICES`` is dropped for GPU Pods and kept
    for CPU Pods, where ``void`` hides the node's GPUs); the network volume as a PersistentVolumeClaim
    of the same name at ``/runpod-volume``; ``extra_hosts`` with IP addresses as ``hostAliases``;
    no service-account token. ``grace_s``: terminationGracePeriodSeconds (the kill of ``kill``).
    """
    labels: dict[str, str] = {MANAGED_BY[0]: MANAGED_BY[1]}
    annotations: dict[str, str] = {NAME_ANNOTATION: spec.name}
    for key, value in spec.labels.items():
        labels[key], hashed = label_value(value)
        if hashed:
            annotations[key] = value
    gpus = spec.gpu_count or len(spec.gpu_device_ids)
    env = [
        {"name": key, "value": value}
        for key, value in spec.env.items()
        if not (gpus and key == "NVIDIA_VISIBLE_DEVICES")
    ]
    limits: dict[str, str] = {}
    if spec.memory_mb:
        limits["memory"] = f"{spec.memory_mb}Mi"
    if spec.nano_cpus:
        limits["cpu"] = f"{max(1, spec.nano_cpus // 1_000_000)}m"
    if gpus:
        limits[GPU_RESOURCE] = str(gpus)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "resources": {"limits": limits} if limits else {},
    }
    if spec.command:
        container["args"] = shlex.split(spec.command) if isinstance(spec.command, str) else list(spec.command)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": grace_s,
        "containers": [container],
    }
    if spec.volume:
        container["volumeMounts"] = [{"name": VOLUME_NAME, "mountPath": "/runpod-volume"}]
        pod_spec["volumes"] = [{"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": spec.volume}}]
    aliases = _host_aliases(spec.extra_hosts)
    if aliases:
        pod_spec["hostAliases"] = aliases
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def _host_aliases(extra_hosts: dict[str, str]) -> list[dict[str, Any]]:
    by_ip: dict[str, list[str]] = {}
    for host, address in sorted(extra_hosts.items()):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            continue  # "host-gateway" and names mean nothing to a Pod
        by_ip.setdefault(address, []).append(host)
    return [{"ip": ip, "hostnames": hosts} for ip, hosts in by_ip.items()]


def parse_kube_time(value: str | None) -> float | None:
    """RFC 3339 (``2026-11-30T18:00:00Z``) as epoch seconds; None stays None."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def pod_labels(pod: dict[str, Any]) -> dict[str, str]:
    """The Pod's labels as the spec gave them: hashed values restored from annotations, ours removed."""
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    labels = dict(metadata.get("labels") or {})
    labels.pop(MANAGED_BY[0], None)
    return {key: str(annotations.get(key, value)) for key, value in labels.items() if key != NAME_ANNOTATION}


def unschedulable_reason(pod: dict[str, Any]) -> str | None:
    """``Unschedulable: <the scheduler's message>`` while the Pod waits for room, else None."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or "Unschedulable"
            message = condition.get("message") or ""
            return f"{reason}: {message}".rstrip(": ")
    return None


def container_info(pod: dict[str, Any]) -> ContainerInfo:
    """A ContainerInfo from a Pod document (see the table in ``docs``: Pod phase/state -> status).

    Pending unscheduled -> ``created`` with ``pending`` = the scheduler's reason; Pending with a fatal
    waiting reason (ErrImagePull, ...) -> ``dead`` with ``error``; Running -> ``running`` (also while a
    graceful delete runs); Succeeded/Failed -> ``exited`` with the container's exit code, OOMKilled and
    the Pod's reason (DeadlineExceeded, Evicted) as ``error``; Unknown -> ``dead`` "node lost".
    """
    metadata = pod.get("metadata") or {}
    status_doc = pod.get("status") or {}
    phase = status_doc.get("phase") or "Pending"
    state: dict[str, Any] = {}
    for entry in status_doc.get("containerStatuses") or []:
        if entry.get("name") == CONTAINER:
            state = entry.get("state") or {}
    terminated = state.get("terminated")
    running = state.get("running")
    waiting = state.get("waiting")
    status: ContainerStatus = "created"
    exit_code: int | None = None
    oom = False
    started_at = parse_kube_time((running or terminated or {}).get("startedAt"))
    finished_at: float | None = None
    error: str | None = None
    pending: str | None = None
    pod_reason = status_doc.get("reason")
    if terminated is not None:
        status = "exited"
        exit_code = int(terminated.get("exitCode", 0))
        oom = terminated.get("reason") == "OOMKilled"
        finished_at = parse_kube_time(terminated.get("finishedAt"))
        if pod_reason:
            error = f"{pod_reason}: {status_doc.get('message') or ''}".rstrip(": ")
    elif phase in ("Succeeded", "Failed"):
        status = "exited"  # ended before its container ran (DeadlineExceeded while pending, Evicted)
        error = f"{pod_reason or phase}: {status_doc.get('message') or ''}".rstrip(": ")
        finished_at = parse_kube_time(status_doc.get("startTime"))
    elif phase == "Unknown":
        status, error = "dead", "node lost: the Pod's node stopped reporting"
    elif running is not None:
        status = "running"
    elif waiting is not None and waiting.get("reason") in FATAL_WAITING:
        status = "dead"
        error = f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
    else:
        pending = unschedulable_reason(pod)
        if pending is None and waiting is not None:
            pending = str(waiting.get("reason") or "Waiting")
        elif pending is None:
            pending = "Scheduled" if (pod.get("spec") or {}).get("nodeName") else "Pending"
    return ContainerInfo(
        id=str(metadata.get("name") or ""),
        name=str((metadata.get("annotations") or {}).get(NAME_ANNOTATION) or metadata.get("name") or ""),
        labels=pod_labels(pod),
        status=status,
        exit_code=exit_code,
        oom_killed=oom,
        started_at=started_at,
        finished_at=finished_at,
        error=error,
        ip_address=status_doc.get("podIP") or None,
        pending=pending,
    )


def events_between(
    before: ContainerInfo | None, after: ContainerInfo | None, now_s: float
) -> list[ContainerEvent]:
    """Docker-style events (start, oom, die, destroy) for one Pod's change seen by the watch.

    ``before``/``after`` None: the Pod was not known / is gone. A Pod seen ending without ever being
    seen running (it ran between two watch events) gets its ``start`` first.
    """
    events: list[ContainerEvent] = []
    ref = after or before
    if ref is None:
        return events

    def event(action: str, exit_code: int | None = None) -> ContainerEvent:
        return ContainerEvent(ref.id, action, dict(ref.labels), exit_code, now_s)

    was = before.status if before is not None else None
    now = after.status if after is not None else None
    if (
        now in ("running", "exited")
        and was not in ("running", "exited")
        and (now == "running" or (after is not None and after.started_at is not None))
    ):
        events.append(event("start"))
    if now in ("exited", "dead") and was not in ("exited", "dead") and after is not None:
        if after.oom_killed:
            events.append(event("oom"))
        events.append(event("die", after.exit_code))
    if after is None and before is not None:
        events.append(event("destroy"))
    return events


def volume_claim(name: str, size_gb: int) -> dict[str, Any]:
    """The ReadWriteMany PersistentVolumeClaim for the network volume ``name`` (default storage class)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": f"{size_gb}Gi"}}},
    }


def image_on_nodes(nodes: list[dict[str, Any]], image: str) -> LocalImage | None:
    """``image`` as the first node listing it in ``status.images`` reports it (nodes cap that list)."""
    for node in nodes:
        for entry in (node.get("status") or {}).get("images") or []:
            names = [str(n) for n in entry.get("names") or []]
            if image in names:
                digests = tuple(n for n in names if "@" in n)
                return LocalImage(id=digests[0] if digests else image, repo_digests=digests)
    return None


def nodes_offer_gpus(nodes: list[dict[str, Any]]) -> bool:
    """Whether any node has ``nvidia.com/gpu`` allocatable (the NVIDIA device plugin runs there)."""
    return any(
        int(str((node.get("status") or {}).get("allocatable", {}).get(GPU_RESOURCE, "0")) or 0) > 0
        for node in nodes
    )


def valid_pod_name(name: str) -> bool:
    """Whether ``name`` can be a Pod's name (DNS-1123 subdomain: lowercase letters, digits, ``-`` and ``.``)."""
    return 0 < len(name) <= 253 and all(
        c.isascii() and (c.islower() or c.isdigit() or c in "-.") for c in name
    )
