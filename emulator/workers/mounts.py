"""What an endpoint mounts into its workers besides a Docker volume, and the checks that it exists.

* ``networkVolumeId`` as an absolute host folder: bind-mounted read-write at ``/runpod-volume`` in every
  worker of the endpoint (RunPod: storage/network-volumes), so models or fixtures put there on the host
  are shared by all workers; a name is a Docker volume as before (``runtime.docker``).
* ``modelReferences``: each model's folder of the host's Hugging Face cache, read-only, where RunPod's
  cached models appear (``emulator.workers.hf_cache``).

``check_inputs`` runs when an endpoint is created or changed, so that a missing folder, model or secret
is a 422 naming it rather than a worker that fails later.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from emulator.config import Settings
from emulator.errors import InvalidInput
from emulator.models import Endpoint
from emulator.workers import hf_cache
from emulator.workers.secret_refs import check_references

RUNPOD_VOLUME = "/runpod-volume"  # where RunPod mounts a network volume (the runtime's VOLUME_MOUNT)


class HostFolder(NamedTuple):
    """A host folder mounted into every worker of the endpoint at ``target``."""

    source: str
    target: str
    read_only: bool


def is_host_folder(volume: str | None) -> bool:
    """Whether ``networkVolumeId`` names a host folder (an absolute path) rather than a Docker volume."""
    return bool(volume) and str(volume).startswith("/")


def host_mounts(settings: Settings, endpoint: Endpoint) -> tuple[HostFolder, ...]:
    """A host-folder network volume (read-write at /runpod-volume) and each of ``modelReferences`` from
    the host's Hugging Face cache (read-only); InvalidInput when a model is not in that cache."""
    mounts = []
    if is_host_folder(endpoint.networkVolumeId):
        mounts.append(HostFolder(str(endpoint.networkVolumeId), RUNPOD_VOLUME, read_only=False))
    for source, target in hf_cache.mounts(endpoint.modelReferences, settings.hf_cache_dir):
        mounts.append(HostFolder(source, target, read_only=True))
    return tuple(mounts)


def check_inputs(
    settings: Settings, endpoint: Endpoint, secrets: Mapping[str, str], s3_running: bool = False
) -> None:
    """What an endpoint asks its workers to get must exist on this host, or InvalidInput (422) naming it:
    every ``{{ RUNPOD_SECRET_name }}`` it refers to, a host-folder ``networkVolumeId`` (an existing folder,
    not ``/``), every model of ``modelReferences`` in the host's Hugging Face cache, the local S3 server
    for ``localS3``."""
    check_references(endpoint.env, secrets)
    if endpoint.localS3 and not s3_running:
        raise InvalidInput(
            "localS3 needs the local S3 server: start the emulator with `serverless-emulator serve --s3` "
            "(EMULATOR_S3=true; moto: pip install 'serverless-emulator[s3]')",
            field="localS3",
        )
    volume = endpoint.networkVolumeId
    if volume and is_host_folder(volume):
        path = Path(volume)
        try:
            usable = path.resolve() != Path("/") and path.is_dir()
        except OSError:  # a name too long, a loop of links: not a folder we can mount
            usable = False
        if not usable:
            raise InvalidInput(
                f"networkVolumeId {volume[:300]!r} is not an existing folder on this host (a host folder is "
                f"mounted at {RUNPOD_VOLUME}; create it first, or give a Docker volume name instead)",
                field="networkVolumeId",
            )
    host_mounts(settings, endpoint)
