"""Cached models (RunPod: serverless/endpoints/model-caching): Hugging Face models named by an endpoint,
served read-only to its workers from the host's Hugging Face cache. Nothing is downloaded.

RunPod puts a cached model at ``/runpod-volume/huggingface-cache/hub/models--{org}--{name}/`` (the
Hugging Face cache layout: ``refs/``, ``snapshots/{hash}/``, ``blobs/``). The emulator bind-mounts the
same folder of the host's cache (``EMULATOR_HF_HUB_CACHE``, else ``HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) there, read-only. A model missing from the host's
cache is refused when the endpoint is created or changed, naming the command that fetches it.

A reference is ``org/name``, ``org/name:revision`` or ``https://huggingface.co/org/name[:revision]``
(runpodctl's ``--model-reference`` form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import InvalidInput

HUB_MOUNT = "/runpod-volume/huggingface-cache/hub"
_URL_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "hf.co/", "huggingface.co/")
_PART = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}"
_REPO = re.compile(rf"^(?:({_PART})/)?({_PART})$")
_REVISION = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")


@dataclass(frozen=True)
class ModelRef:
    """One model: ``repo`` (``org/name`` or ``name``), ``revision`` (None: whatever the cache has)."""

    repo: str
    revision: str | None = None

    @property
    def folder(self) -> str:
        """The cache folder's name: ``models--org--name``."""
        return "models--" + self.repo.replace("/", "--")

    @property
    def mount_target(self) -> str:
        return f"{HUB_MOUNT}/{self.folder}"

    def fetch_command(self) -> str:
        revision = f" --revision {self.revision}" if self.revision else ""
        return f"huggingface-cli download {self.repo}{revision}"


def parse(reference: str) -> ModelRef:
    """A reference as a ModelRef; InvalidInput (field ``modelReferences``) naming the bad one."""
    text = reference.strip()
    for prefix in _URL_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    text = text.rstrip("/")
    repo, _, revision = text.partition(":")
    if (
        ".." in repo
        or not _REPO.match(repo)
        or (revision and (not _REVISION.match(revision) or ".." in revision))
    ):
        raise InvalidInput(
            f"model reference {reference[:200]!r} is not a Hugging Face model: expected org/name, "
            f"org/name:revision or https://huggingface.co/org/name",
            field="modelReferences",
        )
    return ModelRef(repo, revision or None)


def locate(ref: ModelRef, cache_dir: Path) -> Path:
    """The model's folder in the host cache, checked to hold a snapshot (of ``ref.revision`` if given);
    InvalidInput naming the fetch command when it does not."""
    folder = cache_dir / ref.folder
    snapshots = folder / "snapshots"
    problem = None
    try:
        if not snapshots.is_dir() or not any(p.is_dir() for p in snapshots.iterdir()):
            problem = "is not in"
        elif ref.revision and not (
            (folder / "refs" / ref.revision).is_file() or (snapshots / ref.revision).is_dir()
        ):
            problem = f"has no revision {ref.revision!r} in"
    except OSError as exc:  # unreadable cache folder
        problem = f"cannot be read ({exc.strerror}) from"
    if problem is not None:
        raise InvalidInput(
            f"model {ref.repo} {problem} the Hugging Face cache at {cache_dir} (looked for {folder}/snapshots); "
            f"the emulator downloads nothing: fetch it on this host with `{ref.fetch_command()}` "
            f"(or point EMULATOR_HF_HUB_CACHE at the cache that has it)",
            field="modelReferences",
        )
    return folder


def mounts(references: list[str], cache_dir: Path) -> list[tuple[str, str]]:
    """``(host folder, container path)`` for each referenced model, every one checked (InvalidInput)."""
    out: list[tuple[str, str]] = []
    for reference in references:
        ref = parse(reference)
        out.append((str(locate(ref, cache_dir)), ref.mount_target))
    return out
