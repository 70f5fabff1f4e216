"""Building images: the local Python base image and worker images (the `images` CLI commands).

Everything here goes through the ``docker`` command line (the Docker SDK belongs to
``emulator.runtime.docker`` alone) and streams the commands' output, line by line, to a
``progress`` callback: the module's own messages as they are, the commands' output lines
indented by four spaces (``COMMAND_OUTPUT``), so a caller can show either. The module uses the standard library only, so the scripts can run it
(``python -m emulator.images ...``) before the package's dependencies are installed.

- ``build_base()``: a Python base image for worker Dockerfiles: ``python:3.12-slim`` when present
  or pullable, else one made from Debian's packages (see ``emulator.images.debootstrap``).
- ``build_image(directory)``: builds a handler folder's Dockerfile with
  ``--build-arg BASE_IMAGE=<base>``. Sample workers are built from the repository root so that
  their Dockerfiles can ``COPY worker_sdk``. A ``wheels.txt`` beside the Dockerfile lists
  requirements to download on the host into ``wheels/`` first, for the base image's Python, so
  the Dockerfile can install them with ``pip install --no-index --find-links``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from emulator.errors import ImageNotFound, InvalidInput, RuntimeFailure, RuntimeUnavailable
from emulator.images import debootstrap as images_debootstrap

Progress = Callable[[str], None]
COMMAND_OUTPUT = "    "  # prefix of the lines that come from a command's output

UPSTREAM_BASE_IMAGE = "python:3.12-slim"
LOCAL_BASE_IMAGE = "serverless-emulator/python-base:bookworm"
BASE_IMAGE_ENV = "EMULATOR_BASE_IMAGE"
PULL_TIMEOUT_S = 20.0
WHEELS_FILE = "wheels.txt"  # requirements to download on the host before a build
WHEELS_DIR = "wheels"
EMULATOR_WHEELS_DIR = "build/emulator-wheels"  # the wheelhouse Dockerfile.emulator installs from
NO_DOCKER_CLI = "the `docker` command is not installed (Debian: apt-get install docker.io)"
_TAG_PART = re.compile(r"[^a-z0-9._-]+")


def _quiet(_line: str) -> None:
    pass


# --- names (pure) ------------------------------------------------------------------------------------


def sample_image_tag(name: str) -> str:
    """``echo`` -> ``serverless-emulator/sample-echo:latest``."""
    if not name or _TAG_PART.search(name) or not name[0].isalnum():
        raise InvalidInput(
            f"bad sample name {name!r}: use lower-case letters, digits, '-', '_' or '.'", field="name"
        )
    return f"serverless-emulator/sample-{name}:latest"


def default_tag_for(directory: Path) -> str:
    """The tag ``build_image`` gives a folder: the sample tag for ``sample_workers/NAME``, else
    ``NAME:latest`` from the folder's name (lower-cased, other characters turned into '-')."""
    directory = Path(directory).resolve()
    if directory.parent.name == "sample_workers":
        return sample_image_tag(directory.name)
    name = _TAG_PART.sub("-", directory.name.lower()).strip("-._") or "worker"
    return f"{name}:latest"


def repo_root() -> Path:
    """The source checkout this module lives in (it holds sample_workers/ and worker_sdk/)."""
    return Path(__file__).resolve().parents[2]


def build_context_for(directory: Path) -> Path:
    """Where ``docker build`` runs: the repository root for a folder under ``sample_workers/`` of a
    checkout that has ``worker_sdk/`` (sample Dockerfiles ``COPY worker_sdk``), else the folder."""
    directory = Path(directory).resolve()
    for parent in directory.parents:
        if (parent / "worker_sdk" / "__init__.py").is_file() and directory.is_relative_to(
            parent / "sample_workers"
        ):
            return parent
    return directory


def sample_dirs(root: Path | None = None) -> list[Path]:
    """The sample worker folders (each with a Dockerfile), sorted by name."""
    base = (root or repo_root()) / "sample_workers"
    return sorted(p for p in base.iterdir() if (p / "Dockerfile").is_file()) if base.is_dir() else []


def docker_build_command(
    dockerfile: Path,
    context: Path,
    tag: str,
    base_image: str,
    *,
    labels: Mapping[str, str] | None = None,
    build_args: Mapping[str, str] | None = None,
    no_cache: bool = False,
) -> list[str]:
    cmd = ["docker", "build", "--force-rm", "-f", str(dockerfile), "-t", tag]
    cmd += ["--build-arg", f"BASE_IMAGE={base_image}"]
    for key, value in (build_args or {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    for key, value in (labels or {}).items():
        cmd += ["--label", f"{key}={value}"]
    if no_cache:
        cmd.append("--no-cache")
    return cmd + [str(context)]


# --- running commands --------------------------------------------------------------------------------


def run_streaming(
    cmd: list[str],
    progress: Progress = _quiet,
    *,
    env: Mapping[str, str] | None = None,
    stdin: IO[bytes] | None = None,
    tail_lines: int = 40,
) -> tuple[int, list[str]]:
    """Run ``cmd``, sending each output line (stdout and stderr) to ``progress``; return
    (exit code, its last ``tail_lines`` lines)."""
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as exc:
        if cmd[0] == "docker":
            raise RuntimeUnavailable(NO_DOCKER_CLI) from exc
        raise RuntimeFailure(f"`{cmd[0]}` is not installed", command=cmd) from exc
    tail: deque[str] = deque(maxlen=tail_lines)
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        progress(COMMAND_OUTPUT + line)
    return proc.wait(), list(tail)


def _docker(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError as exc:
        raise RuntimeUnavailable(NO_DOCKER_CLI) from exc


def require_docker() -> None:
    """Raise RuntimeUnavailable unless the Docker engine answers."""
    try:
        done = _docker("version", "--format", "{{.Server.Version}}", timeout_s=20)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeUnavailable("the Docker engine did not answer within 20 s (`docker version`)") from exc
    if done.returncode != 0:
        raise RuntimeUnavailable(
            "the Docker engine does not answer; is dockerd running? "
            + (done.stderr.strip().splitlines() or [""])[-1]
        )


def image_id(tag: str) -> str | None:
    """The local image's id, or None when there is no such image."""
    done = _docker("image", "inspect", "--format", "{{.Id}}", tag)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def try_pull(image: str, timeout_s: float = PULL_TIMEOUT_S, progress: Progress = _quiet) -> bool:
    """Pull ``image``; False when the registry does not answer with it within ``timeout_s``."""
    progress(f"trying `docker pull {image}` (up to {timeout_s:.0f} s)")
    try:
        done = _docker("pull", image, timeout_s=timeout_s)
    except subprocess.TimeoutExpired:
        progress(f"no answer from the registry within {timeout_s:.0f} s")
        return False
    if done.returncode != 0:
        progress("pull failed: " + (done.stderr.strip().splitlines() or ["?"])[-1])
    return done.returncode == 0


# --- the base image ------------------------------------------------------------------------------------


def default_base_image(env: Mapping[str, str] = os.environ) -> str | None:
    """The base image worker builds use: ``EMULATOR_BASE_IMAGE`` if set, else python:3.12-slim if it
    is present locally, else the local Debian base if present, else None (run ``build_base``)."""
    if env.get(BASE_IMAGE_ENV):
        return env[BASE_IMAGE_ENV]
    for candidate in (UPSTREAM_BASE_IMAGE, LOCAL_BASE_IMAGE):
        if image_id(candidate):
            return candidate
    return None


def build_base(
    tag: str = LOCAL_BASE_IMAGE,
    force: bool = False,
    progress: Progress = _quiet,
    *,
    upstream: str | None = UPSTREAM_BASE_IMAGE,
    pull_timeout_s: float = PULL_TIMEOUT_S,
) -> str:
    """Make sure a Python base image exists and return its tag.

    Without ``force``: ``upstream`` (python:3.12-slim) if present locally; else ``tag`` if already
    built; else ``upstream`` if a pull succeeds within ``pull_timeout_s``. Otherwise, or with
    ``force``, build ``tag`` from Debian's packages with debootstrap (needs root; about a minute).
    """
    require_docker()
    if not force:
        if upstream and image_id(upstream):
            progress(f"{upstream} is present locally; using it")
            return upstream
        if image_id(tag):
            progress(f"{tag} already exists (force to rebuild it)")
            return tag
        if upstream and try_pull(upstream, pull_timeout_s, progress):
            return upstream
    old = image_id(tag)
    images_debootstrap.build_python_base(tag, run_streaming, progress)
    new = image_id(tag)
    if old and new and old != new:  # the replaced image is now untagged: drop it unless in use
        _docker("image", "rm", old)
    return tag


# --- wheels for offline installs --------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetPython:
    """The Python inside a base image, as pip's --python-version/--platform need it."""

    version: str  # "3.11"
    machine: str  # "x86_64"
    glibc: tuple[int, int] | None  # (2, 36); None for a non-glibc image

    def platforms(self) -> list[str]:
        """Every manylinux platform tag the image can run, newest first (pure)."""
        arch = self.machine
        if self.glibc is None or self.glibc[0] != 2:
            return [f"manylinux2014_{arch}"]
        tags = [f"manylinux_2_{minor}_{arch}" for minor in range(self.glibc[1], 4, -1)]
        tags.append(f"manylinux2014_{arch}")
        if arch in ("x86_64", "i686"):
            tags += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
        return tags


_PROBE = (
    "import json,platform,sys;v=platform.libc_ver();print(json.dumps({'version':'%d.%d'%sys.version_info[:2],"
    "'machine':platform.machine(),'libc':v[0],'libc_version':v[1]}))"
)


def probe_python(image: str) -> TargetPython:
    """Ask the image's python3 for its version, machine and glibc (one short container)."""
    run = [
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        "serverless-emulator.build=1",
        "--entrypoint",
        "python3",
    ]
    done = _docker(*run, image, "-c", _PROBE, timeout_s=120)
    if done.returncode != 0:
        raise RuntimeFailure(f"could not run python3 in {image}: {done.stderr.strip()[-500:]}", image=image)
    info = json.loads(done.stdout.strip().splitlines()[-1])
    glibc = None
    if info["libc"] == "glibc" and re.fullmatch(r"\d+\.\d+", info["libc_version"] or ""):
        major, minor = info["libc_version"].split(".")
        glibc = (int(major), int(minor))
    return TargetPython(version=info["version"], machine=info["machine"], glibc=glibc)


def pip_download_command(
    requirements: Iterable[str], dest: Path, target: TargetPython, python: str = sys.executable
) -> list[str]:
    cmd = [python, "-m", "pip", "download", "--disable-pip-version-check", "-d", str(dest)]
    cmd += ["--only-binary=:all:", "--python-version", target.version]
    for platform in target.platforms():
        cmd += ["--platform", platform]
    return cmd + list(requirements)


def is_pure_wheel(filename: str) -> bool:
    """True for a wheel any Python 3 on any platform can install (``...-py3-none-any.whl``)."""
    parts = filename[: -len(".whl")].split("-")
    return filename.endswith(".whl") and len(parts) >= 5 and parts[-1] == "any" and parts[-2] == "none"


def prefetch_wheels(
    requirements: list[str], dest: Path, base_image: str, progress: Progress = _quiet
) -> Path:
    """Download wheels for ``requirements`` (and their dependencies) into ``dest``, for the Python
    inside ``base_image``. Skipped when ``dest`` already holds them for the same requirements and
    Python. Packages with no wheel on the index are built on the host with ``pip wheel`` (fine for
    pure-python packages); binary wheels are always those of the image's Python and platform."""
    target = probe_python(base_image)
    stamp = {"requirements": sorted(requirements), "python": target.version, "platforms": target.platforms()}
    stamp_file = dest / ".prefetch.json"
    if stamp_file.is_file() and any(dest.glob("*.whl")):
        try:
            if json.loads(stamp_file.read_text()) == stamp:
                progress(f"wheels in {dest} are up to date for Python {target.version}")
                return dest
        except ValueError:
            pass
    dest.mkdir(parents=True, exist_ok=True)
    for old in [*dest.glob("*.whl"), *dest.glob("*.tar.gz"), *dest.glob("*.zip"), stamp_file]:
        old.unlink(missing_ok=True)
    progress(f"downloading wheels for Python {target.version} ({target.machine}) into {dest}")
    code, _ = run_streaming(pip_download_command(requirements, dest, target), progress)
    if code != 0:
        progress("some packages have no wheel for that Python; building them on the host with `pip wheel`")
        _wheels_built_on_host(requirements, dest, target, progress)
    stamp_file.write_text(json.dumps(stamp, indent=1))
    return dest


def _wheels_built_on_host(
    requirements: list[str], dest: Path, target: TargetPython, progress: Progress
) -> None:
    code, tail = run_streaming(
        [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-w", str(dest), *requirements],
        progress,
    )
    if code != 0:
        raise RuntimeFailure("pip wheel failed:\n" + "\n".join(tail[-15:]), step="wheels", log_tail=tail)
    for wheel in sorted(dest.glob("*.whl")):
        if is_pure_wheel(wheel.name):
            continue
        name, version = wheel.name.split("-")[:2]
        wheel.unlink()
        one = pip_download_command([f"{name}=={version}"], dest, target) + ["--no-deps"]
        code, tail = run_streaming(one, progress)
        if code != 0:
            raise RuntimeFailure(
                f"{name} {version} has no wheel for Python {target.version} on "
                f"{target.machine} and is not pure Python:\n" + "\n".join(tail[-10:]),
                step="wheels",
                log_tail=tail,
            )


def read_requirements(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def emulator_requirements(root: Path | None = None) -> list[str]:
    """What Dockerfile.emulator installs: the build backend and the package's dependencies."""
    project = tomllib.loads(((root or repo_root()) / "pyproject.toml").read_text())
    return [*project["build-system"]["requires"], *project["project"]["dependencies"]]


# --- worker images ------------------------------------------------------------------------------------------


def build_image(
    directory: str | Path,
    tag: str | None = None,
    base_image: str | None = None,
    progress: Progress = _quiet,
    *,
    labels: Mapping[str, str] | None = None,
    build_args: Mapping[str, str] | None = None,
    no_cache: bool = False,
    dockerfile: Path | None = None,
) -> str:
    """Build ``directory/Dockerfile`` with ``--build-arg BASE_IMAGE=<base>``; return the tag.

    ``dockerfile`` builds another file (such as ``directory/.runpod/Dockerfile``, which RunPod's Hub
    prefers) with the same context.

    ``tag`` defaults to ``default_tag_for(directory)``; ``base_image`` to ``default_base_image()``.
    """
    directory = Path(directory).resolve()
    dockerfile = Path(dockerfile).resolve() if dockerfile is not None else directory / "Dockerfile"
    if not dockerfile.is_file():
        raise InvalidInput(f"{directory} has no {dockerfile.name}", field="directory")
    require_docker()
    base = base_image or default_base_image()
    if base is None:
        raise ImageNotFound(
            f"no Python base image: neither {UPSTREAM_BASE_IMAGE} nor {LOCAL_BASE_IMAGE} is "
            "present; run `serverless-emulator images build-base` first, or set "
            f"{BASE_IMAGE_ENV} to an image with python3"
        )
    tag = tag or default_tag_for(directory)
    if (directory / WHEELS_FILE).is_file():
        prefetch_wheels(read_requirements(directory / WHEELS_FILE), directory / WHEELS_DIR, base, progress)
    context = build_context_for(directory)
    cmd = docker_build_command(
        dockerfile, context, tag, base, labels=labels, build_args=build_args, no_cache=no_cache
    )
    progress(f"building {tag} from {dockerfile} on {base}")
    code, tail = run_streaming(cmd, progress, env={**os.environ, "BUILDKIT_PROGRESS": "plain"})
    if code != 0:
        raise RuntimeFailure(
            f"docker build of {directory} failed (exit {code}); last lines:\n" + "\n".join(tail[-20:]),
            image=tag,
            log_tail=tail,
        )
    return tag


def build_samples(
    names: Iterable[str] | None = None, base_image: str | None = None, progress: Progress = _quiet
) -> dict[str, float]:
    """Build the sample worker images (all, or ``names``); return seconds taken per sample."""
    wanted = set(names or [])
    timings: dict[str, float] = {}
    for folder in sample_dirs():
        if wanted and folder.name not in wanted:
            continue
        started = time.monotonic()
        build_image(folder, base_image=base_image, progress=progress)
        timings[folder.name] = time.monotonic() - started
    if unknown := wanted - set(timings):
        raise InvalidInput(f"no such sample worker: {', '.join(sorted(unknown))}", field="names")
    return timings


def prepare_compose(base_image: str | None = None, progress: Progress = _quiet) -> str:
    """Download the wheels docker-compose builds install offline (the emulator's and the samples');
    return the base image they should use."""
    base = base_image or default_base_image() or build_base(progress=progress)
    root = repo_root()
    prefetch_wheels(emulator_requirements(root), root / EMULATOR_WHEELS_DIR, base, progress)
    for folder in sample_dirs(root):
        if (folder / WHEELS_FILE).is_file():
            prefetch_wheels(read_requirements(folder / WHEELS_FILE), folder / WHEELS_DIR, base, progress)
    return base
