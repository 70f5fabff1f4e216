"""PURE: whether a worker's start pulls its image first (an endpoint's ``pullPolicy``).

RunPod pulls an endpoint's image while its workers are INITIALIZING ("while the system downloads and
prepares the Docker image", docs serverless/workers/overview) and caches it on the host; a new release
re-pulls the tag. The emulator's policies:

* ``None`` (RunPod's default): pull when the image is missing; a floating tag (``latest`` or none) that
  came from a registry (its local copy has a digest of that repository) is pulled again once per
  endpoint version, so a new push behind ``latest`` is picked up by the next version. A locally built
  image (no registry digest) is used as it is: there is nothing to pull it from.
* ``ALWAYS``: pull once per endpoint version even when the image is local (and on
  ``POST /v1/endpoints/{id}/update``).
* ``IF_MISSING``: pull only a missing image.
* ``NEVER``: never pull (offline use); a missing image fails the worker with the fix in its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from emulator.runtime.base import LocalImage
from emulator.runtime.pull_docs import parse_image, same_repository

PullPolicy = Literal["ALWAYS", "IF_MISSING", "NEVER"]
PULL_POLICIES: tuple[str, ...] = ("ALWAYS", "IF_MISSING", "NEVER")

Verdict = Literal["use-local", "pull", "missing"]


@dataclass(frozen=True)
class PullDecision:
    verdict: Verdict
    why: str
    fallback_to_local: bool = False  # a failed pull may use the local copy (the implicit `latest` refresh)


def decide(
    policy: PullPolicy | None, image: str, local: LocalImage | None, pulled_this_version: bool
) -> PullDecision:
    """What a worker start does about ``image``.

    ``local``: the engine's copy (None: missing); ``pulled_this_version``: a pull of this image already
    succeeded for the endpoint's current version (in this control plane's life).
    """
    if local is None:
        if policy == "NEVER":
            return PullDecision(
                "missing",
                f"image {image!r} is not on this Docker engine and the endpoint's pullPolicy is NEVER; "
                f"build or pull it (`docker pull {image}`), or set pullPolicy to IF_MISSING",
            )
        return PullDecision("pull", "the image is not on this Docker engine")
    if policy in ("NEVER", "IF_MISSING") or pulled_this_version:
        return PullDecision("use-local", "the image is on this Docker engine")
    if policy == "ALWAYS":
        return PullDecision("pull", "pullPolicy ALWAYS: pulled once per endpoint version")
    ref = parse_image(image)
    from_registry = any(same_repository(d, ref) for d in local.repo_digests)
    if ref.is_latest and from_registry:
        return PullDecision("pull", "a floating tag from a registry: checked once per endpoint version", True)
    return PullDecision("use-local", "the image is on this Docker engine")
