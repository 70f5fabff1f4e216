"""Container runtimes: the contract (``base``), the Docker adapter (``docker``), an in-memory fake (``fake``).

This package imports neither adapter eagerly: ``make_runtime("docker")`` loads the Docker SDK only when
asked. The messages both adapters give for the same refusal live here, so that they read alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from emulator.errors import GpuUnavailable, ImageNotFound
from emulator.runtime.base import Runtime

VOLUME_MOUNT = "/runpod-volume"
GPU_FIX = (
    "install the NVIDIA Container Toolkit on the host and restart Docker "
    "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), "
    "or set EMULATOR_GPU_MODE=emulate to run GPU endpoints without real GPUs"
)


def gpu_unavailable(explanation: str, device_ids: Iterable[str] = ()) -> GpuUnavailable:
    """The error for a GPU device request the engine refused; its message names the fix."""
    ids = list(device_ids)
    devices = f" (devices {','.join(ids)})" if ids else ""
    return GpuUnavailable(
        f"the container runtime cannot give this container GPUs{devices}: {explanation.strip()}. "
        f"To fix: {GPU_FIX}",
        reason=explanation,
        device_ids=ids,
    )


def image_not_found(image: str) -> ImageNotFound:
    """The error for an image the engine does not have (a worker start pulls it first, policy permitting)."""
    return ImageNotFound(
        f"image {image!r} does not exist on this Docker engine; build it "
        f"(`serverless-emulator images build ...` for the sample images, or `docker build -t {image} .` "
        f"for your own) or let the workers pull it (the endpoint's pullPolicy must not be NEVER)",
        image=image,
    )


def make_runtime(kind: str, **options: Any) -> Runtime:
    """``"docker"`` (options: base_url, max_threads, timeout_s), ``"kubernetes"`` (options: namespace,
    kubeconfig, context, in_cluster, grace_s, volume_size_gb; needs ``serverless-emulator[kubernetes]``)
    or ``"fake"`` (options: clock, refuse_gpus, ...)."""
    if kind == "docker":
        from emulator.runtime.docker import DockerRuntime

        return DockerRuntime(**options)
    if kind == "kubernetes":
        from emulator.runtime.kubernetes import KubernetesRuntime

        return KubernetesRuntime(**options)
    if kind == "fake":
        from emulator.runtime.fake import FakeRuntime

        return FakeRuntime(**options)
    raise ValueError(f"unknown runtime {kind!r}: expected 'docker', 'kubernetes' or 'fake'")


__all__ = ["GPU_FIX", "VOLUME_MOUNT", "Runtime", "gpu_unavailable", "image_not_found", "make_runtime"]
