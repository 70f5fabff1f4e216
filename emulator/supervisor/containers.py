"""What a worker container is made of: its name, labels, environment, limits, volume and network.

Every container carries the project's labels (endpoint, worker, version) and the id of the control
plane that owns it (``LABEL_INSTANCE``), a stable id kept in the store's meta table, so that a
restarted control plane finds its own containers again and never touches anyone else's.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Mapping

from emulator.config import Settings
from emulator.models import Endpoint
from emulator.runtime.base import (
    LABEL_ENDPOINT,
    LABEL_INSTANCE,
    LABEL_VERSION,
    LABEL_WORKER,
    ContainerSpec,
    HostMount,
)
from emulator.store.db import get_meta
from emulator.workers import resources
from emulator.workers.env import worker_env
from emulator.workers.mounts import host_mounts, is_host_folder
from emulator.workers.records import WorkerRecord
from emulator.workers.s3 import S3Access

INSTANCE_KEY = "instance_id"
NETWORK_LABEL = "serverless-emulator.network"


def instance_id(conn: sqlite3.Connection) -> str:
    """This control plane's id (created once, then read back from the data dir's store)."""
    existing = get_meta(conn, INSTANCE_KEY)
    if existing:
        return existing
    # INSERT OR IGNORE: two processes on one data dir agree on the first id written
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (INSTANCE_KEY, uuid.uuid4().hex[:16])
    )
    return get_meta(conn, INSTANCE_KEY) or ""


def owner_labels(instance: str) -> dict[str, str]:
    """The labels that select every container this control plane made."""
    return {LABEL_INSTANCE: instance}


def network_labels(instance: str) -> dict[str, str]:
    return {NETWORK_LABEL: "true", LABEL_INSTANCE: instance}


def container_name(endpoint: Endpoint, worker: WorkerRecord) -> str:
    return f"se-{endpoint.id}-{worker.id}"


def worker_labels(endpoint: Endpoint, worker: WorkerRecord, instance: str) -> dict[str, str]:
    return {
        LABEL_ENDPOINT: endpoint.id,
        LABEL_WORKER: worker.id,
        LABEL_VERSION: str(worker.version),
        LABEL_INSTANCE: instance,
    }


def container_spec(
    settings: Settings,
    worker_url: str,
    endpoint: Endpoint,
    worker: WorkerRecord,
    instance: str,
    secrets: Mapping[str, str] | None = None,
    s3: S3Access | None = None,
) -> ContainerSpec:
    """The container for ``worker`` of ``endpoint``: RunPod's worker variables plus the endpoint's env,
    ``memoryInMb`` as a hard memory limit, ``networkVolumeId`` as a named volume at /runpod-volume,
    ``dockerStartCmd`` as the command (the image's own CMD when unset), on ``settings.network``;
    NVIDIA device requests for the worker's pinned GPUs, and ``gpuCount`` as ``gpu_count`` for an engine
    that picks the devices itself (neither in ``EMULATOR_GPU_MODE=emulate``, where
    only NVIDIA_VISIBLE_DEVICES and RUNPOD_GPU_COUNT tell the worker which GPUs it has);
    ``vcpuCount`` as a CPU limit, ``/dev/shm`` sized by ``resources.shm_mb``, a host-folder volume and
    cached models as bind mounts (``host_mounts``), ``{{ RUNPOD_SECRET_name }}`` resolved from ``secrets``
    (MissingSecret when one is gone: the worker fails with that reason), the local S3 server's variables
    when the endpoint has ``localS3``."""
    host = resources.host_facts()
    return ContainerSpec(
        name=container_name(endpoint, worker),
        image=endpoint.imageName,
        env=worker_env(settings, worker_url, endpoint, worker, secrets=secrets or {}, host=host, s3=s3),
        labels=worker_labels(endpoint, worker, instance),
        command=endpoint.dockerStartCmd,
        memory_mb=endpoint.memoryInMb,
        volume=None if is_host_folder(endpoint.networkVolumeId) else endpoint.networkVolumeId,
        nano_cpus=resources.nano_cpus(endpoint, host),
        shm_mb=resources.shm_mb(endpoint, settings),
        host_mounts=tuple(
            HostMount(m.source, m.target, m.read_only) for m in host_mounts(settings, endpoint)
        ),
        gpu_device_ids=() if settings.gpu_mode == "emulate" else tuple(worker.gpu_ids),
        gpu_count=0 if settings.gpu_mode == "emulate" else endpoint.gpuCount,
        network=settings.network,
    )
