"""PURE: the fake runtime's cluster mode: nodes with GPU counts, and placement as a cluster scheduler does it.

``FakeRuntime(cluster=FakeCluster([8] * 50))`` behaves like the Kubernetes runtime where it matters to
the supervisor (``CLUSTER_CAPABILITIES``): no pause, no standby, the engine places workers. A started
container that fits on no node stays ``created`` with ``pending`` = ``Unschedulable: <message>``, the
message shaped as kube-scheduler v1.20 writes it ("0/50 nodes are available: 50 Insufficient
nvidia.com/gpu."); when a placed container ends or is removed its GPUs free, and the waiting containers
are placed again in the order they were created (oldest first), as the scheduler's queue does for Pods
of one priority.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from emulator.runtime.base import ContainerSpec

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass
class FakeCluster:
    """``node_gpus[i]``: the GPUs node i offers; ``placed``: container id -> (node index, GPUs it holds)."""

    node_gpus: Sequence[int]
    placed: dict[str, tuple[int, int]] = field(default_factory=dict)

    def free_gpus(self) -> list[int]:
        """GPUs left on each node."""
        free = list(self.node_gpus)
        for node, gpus in self.placed.values():
            free[node] -= gpus
        return free

    def place(self, container_id: str, gpus: int) -> int | None:
        """Put the container on the first node with ``gpus`` free (its index), or None when none has room."""
        if container_id in self.placed:
            return self.placed[container_id][0]
        for node, free in enumerate(self.free_gpus()):
            if free >= gpus:
                self.placed[container_id] = (node, gpus)
                return node
        return None

    def release(self, container_id: str) -> bool:
        """The container's GPUs are free again; True when it held a place."""
        return self.placed.pop(container_id, None) is not None

    def unschedulable(self, gpus: int) -> str:
        """The scheduler's message for a container asking ``gpus`` that fits nowhere."""
        short = sum(1 for free in self.free_gpus() if free < gpus)
        nodes = len(self.node_gpus)
        return f"0/{nodes} nodes are available: {short} Insufficient {GPU_RESOURCE}."

    def admit(self, container_id: str, spec: ContainerSpec) -> str | None:
        """Place a started container (its ``gpu_count``, or number of ``gpu_device_ids``): None when placed,
        else ``Unschedulable: <the scheduler's message>`` (what ``ContainerInfo.pending`` carries)."""
        gpus = spec.gpu_count or len(spec.gpu_device_ids)
        if self.place(container_id, gpus) is None:
            return f"Unschedulable: {self.unschedulable(gpus)}"
        return None
