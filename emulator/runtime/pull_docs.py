"""PURE: image references, the engine's pull progress documents and its pull errors, in users' words.

No ``docker`` import here, so these are tested without an engine. The progress documents are the
JSON lines ``POST /images/create`` streams (Docker Engine API, "Create an image"): per layer
``{"id": LAYER, "status": "Downloading", "progressDetail": {"current": N, "total": M}}``, then
``"Download complete"`` / ``"Pull complete"`` / ``"Already exists"``, and a final ``"Digest: sha256:…"``;
an error arrives as ``{"error": TEXT}`` in the stream or as the call's own error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_REGISTRY = "docker.io"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_DONE = ("pull complete", "already exists")
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "tls:",
    "network is unreachable",
    "timeout",
)
_DOWNLOADED = ("download complete", "verifying checksum", "extracting", "pull complete", "already exists")


@dataclass(frozen=True)
class ImageRef:
    """An image reference split as the engine reads it: ``registry/repository:tag`` or ``@digest``.

    ``registry`` is ``docker.io`` when the first path part is not a host (no ``.`` or ``:``, not
    ``localhost``), as ``docker pull`` decides (distribution/reference's normalisation).
    """

    registry: str
    repository: str  # as written, without tag or digest (``library/`` is not added)
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The repository with its registry as written (what the engine's ``fromImage`` takes)."""
        return self.repository

    @property
    def pull_tag(self) -> str:
        """What goes in the engine's ``tag`` parameter: the digest, the tag, or ``latest``."""
        return self.digest or self.tag or "latest"

    @property
    def is_latest(self) -> bool:
        """Whether the reference floats: no digest and the tag is ``latest`` or absent."""
        return self.digest is None and (self.tag or "latest") == "latest"


def parse_image(image: str) -> ImageRef:
    """Split ``image``; ValueError for an empty reference."""
    text = image.strip()
    if not text:
        raise ValueError("an image reference must not be empty")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
    first, _, rest = text.partition("/")
    registry = first if rest and ("." in first or ":" in first or first == "localhost") else DEFAULT_REGISTRY
    return ImageRef(registry=registry, repository=text, tag=tag, digest=digest)


def same_repository(repo_digest: str, ref: ImageRef) -> bool:
    """Whether an entry of an image's ``RepoDigests`` (``repo@sha256:…``) is of ``ref``'s repository.

    Docker Hub entries are written without ``docker.io/`` and with ``library/`` for official images.
    """
    repo = repo_digest.split("@", 1)[0]
    want = ref.repository
    candidates = {want}
    if ref.registry == DEFAULT_REGISTRY:
        bare = want.removeprefix("docker.io/")
        candidates |= {bare, f"docker.io/{bare}"}
        if "/" not in bare:
            candidates |= {f"library/{bare}", f"docker.io/library/{bare}"}
    return repo in candidates


@dataclass
class PullProgress:
    """The state of one pull, fed the engine's progress documents one by one.

    ``snapshot()`` answers ``{"status", "layersDone", "layersTotal", "bytesDone", "bytesTotal",
    "digest"}`` (bytes: of the layers whose size the engine has announced so far).
    """

    layers: dict[str, tuple[int, int, bool]] = field(default_factory=dict)  # id -> (done, total, finished)
    status: str = "starting"
    digest: str | None = None
    error: str | None = None

    def feed(self, doc: Any) -> None:
        """Take one document; an ``{"error": …}`` document is kept in ``error``."""
        if not isinstance(doc, dict):
            return
        if doc.get("error") or doc.get("errorDetail"):
            detail = doc.get("errorDetail") or {}
            self.error = str(
                doc.get("error") or (detail.get("message") if isinstance(detail, dict) else detail)
            )
            return
        status = str(doc.get("status") or "")
        layer = doc.get("id")
        found = _DIGEST.search(status) if status.startswith("Digest:") else None
        if found:
            self.digest = found.group(0)
            return
        if not layer or not isinstance(layer, str) or status.startswith("Pulling from"):
            if status:
                self.status = status
            return
        done, total, finished = self.layers.get(layer, (0, 0, False))
        detail = doc.get("progressDetail") or {}
        lowered = status.lower()
        if lowered.startswith("downloading") and isinstance(detail, dict):
            total = int(detail.get("total") or total or 0)
            done = int(detail.get("current") or done or 0)
        elif lowered.startswith(_DOWNLOADED):
            done = total if total else done
        if lowered.startswith(_DONE):
            finished = True
        self.layers[layer] = (done, total, finished)
        self.status = "pulling"

    def snapshot(self) -> dict[str, Any]:
        """The progress as the workers list shows it."""
        return {
            "status": self.status,
            "layersDone": sum(1 for _, _, finished in self.layers.values() if finished),
            "layersTotal": len(self.layers),
            "bytesDone": sum(done for done, _, _ in self.layers.values()),
            "bytesTotal": sum(total for _, total, _ in self.layers.values()),
            "digest": self.digest,
        }


def describe_progress(image: str, snap: dict[str, Any]) -> str:
    """One line for a worker's reason: ``pulling IMAGE: 2/5 layers, 12.3 of 40.0 MB``."""
    layers = f"{snap.get('layersDone', 0)}/{snap.get('layersTotal', 0)} layers"
    total = int(snap.get("bytesTotal") or 0)
    if total:
        mb = 1024 * 1024
        return f"pulling {image}: {layers}, {snap.get('bytesDone', 0) / mb:.1f} of {total / mb:.1f} MB"
    return f"pulling {image}: {layers}" if snap.get("layersTotal") else f"pulling {image}"


def explain_pull_error(image: str, text: str, credential: str | None) -> str:
    """The engine's refusal of a pull as a sentence a user acts on (what failed, then what to do).

    ``credential`` names the registry credential the pull used (``containerRegistryAuthId``), or None
    when the host's Docker credentials applied.
    """
    lowered = text.lower()
    ref = parse_image(image)
    used = (
        f"the credential {credential!r} (containerRegistryAuthId)"
        if credential
        else f"the host's Docker credentials (~/.docker/config.json) for {ref.registry}"
    )
    if (
        "no basic auth credentials" in lowered
        or "authentication required" in lowered
        or "unauthorized" in lowered
    ):
        return (
            f"authentication failed: {ref.registry} refused {used} for {image}; check the user name and "
            f"password (POST /v1/containerregistryauth, then set containerRegistryAuthId on the template) "
            f"({text})"
        )
    if "manifest unknown" in lowered or ("manifest for" in lowered and "not found" in lowered):
        return (
            f"no such tag: {ref.repository} has no {ref.pull_tag!r} on {ref.registry}; push it or fix the "
            f"tag in imageName ({text})"
        )
    if "name unknown" in lowered or "repository does not exist" in lowered or "pull access denied" in lowered:
        return (
            f"no such image: {ref.repository} does not exist on {ref.registry} (or needs credentials); check "
            f"imageName ({text})"
        )
    if "denied" in lowered or "forbidden" in lowered:
        return f"access denied: {used} may not read {ref.repository} on {ref.registry} ({text})"
    if any(m in lowered for m in _UNREACHABLE):
        return (
            f"registry unreachable: cannot reach {ref.registry} to pull {image}; is it running and reachable "
            f"from the Docker engine? ({text})"
        )
    return f"pull of {image} failed: {text}"
