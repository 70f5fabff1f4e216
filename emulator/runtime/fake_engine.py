"""The fake runtime's engine objects: images (local, pulled from a fake registry), networks, volumes
and the GPU runtime check. ``FakeRuntime`` (``fake.py``) inherits them; split out to keep each module
small. The state lives on the runtime (``images``, ``registry``, ``networks``, ``volumes``, ...).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from emulator.errors import InvalidInput, RuntimeFailure
from emulator.runtime.base import LocalImage

if TYPE_CHECKING:
    from emulator.runtime.fake import FakeContainer

ALIVE = ("running", "paused")


class FakeEngineObjects:
    """Images, pulls, networks, volumes and the GPU check of ``FakeRuntime`` (Docker's contract)."""

    images: set[str] | None  # None: every image exists
    image_ids: dict[str, str]
    registry: dict[str, str]
    pull_error: str | None
    networks: dict[str, dict[str, Any]]
    volumes: dict[str, dict[str, str]]
    containers: dict[str, FakeContainer]
    refuse_gpus: bool

    def _enter(self, method: str, *args: Any) -> None:
        raise NotImplementedError

    async def image_exists(self, image: str) -> bool:
        self._enter("image_exists", image)
        return self.images is None or image in self.images

    async def image_info(self, image: str) -> LocalImage | None:
        self._enter("image_info", image)
        if self.images is not None and image not in self.images:
            return None
        return LocalImage(id=self.image_ids.get(image, f"sha256:local-{image}"))

    async def pull(self, image: str, auth: dict[str, str] | None) -> AsyncIterator[dict[str, Any]]:
        """Two fake layers of 1000 bytes each, then the digest; ``pull_error`` or an image not in
        ``registry`` fails as the engine does (RuntimeFailure with the registry's text)."""
        self._enter("pull", image, None if auth is None else auth.get("username"))
        if self.pull_error is not None:
            raise RuntimeFailure(f"Docker refused (pull {image}): {self.pull_error}", reason=self.pull_error)
        if image not in self.registry:
            text = f"manifest for {image} not found: manifest unknown: manifest unknown"
            raise RuntimeFailure(f"pull {image}: {text}", reason=text, status=404)
        yield {"status": "Pulling from fake", "id": "latest"}
        for layer in ("aaa", "bbb"):
            yield {"status": "Downloading", "id": layer, "progressDetail": {"current": 500, "total": 1000}}
            await asyncio.sleep(0)
            yield {"status": "Pull complete", "id": layer, "progressDetail": {}}
        yield {"status": f"Digest: sha256:{'0' * 64}"}
        if self.images is not None:
            self.images.add(image)
        self.image_ids[image] = self.registry[image]

    async def ensure_network(self, name: str, labels: dict[str, str]) -> str:
        self._enter("ensure_network", name, dict(labels))
        if name in ("host", "none"):
            raise InvalidInput(f"network {name!r} is not allowed for worker containers", field="network")
        if name not in self.networks:
            subnet = ipaddress.ip_network(
                f"172.{30 + len(self.networks) // 256}.{len(self.networks) % 256}.0/24"
            )
            self.networks[name] = {"labels": dict(labels), "gateway": str(next(subnet.hosts()))}
        return str(self.networks[name]["gateway"])

    async def remove_network(self, name: str) -> None:
        self._enter("remove_network", name)
        users = [c.id for c in self.containers.values() if c.spec.network == name and c.status in ALIVE]
        if users:
            raise RuntimeFailure(
                f"network {name} has active endpoints", reason="has active endpoints", status=403
            )
        self.networks.pop(name, None)

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        self._enter("ensure_volume", name, dict(labels))
        self.volumes.setdefault(name, dict(labels))

    async def gpu_runtime_available(self) -> bool:
        self._enter("gpu_runtime_available")
        return not self.refuse_gpus
