"""Docker for the benchmarks: the bench images, the ``docker run`` floor, and cleanup by label or id.

Nothing is ever removed by name pattern: containers by the instance label of a control plane this
run started (or the run's own label, for the floor's containers), networks by their exact name and
only when they carry that instance label.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

LABEL_INSTANCE = "serverless-emulator.instance"
LABEL_BENCH = "serverless-emulator.bench-run"
ECHO_SAMPLE = "serverless-emulator/sample-echo:latest"
RUNPOD_SAMPLE = "serverless-emulator/sample-runpod-sdk:latest"
BENCH_ECHO = "serverless-emulator/bench-echo:latest"  # bench/handler.py on worker_sdk
BENCH_RUNPOD = "serverless-emulator/bench-runpod:latest"  # bench/handler.py on RunPod's SDK

_instances: dict[str, str] = {}  # instance id -> network name, for the exit-time sweep
_run_labels: set[str] = set()
_tree_sdk: Path | None = None  # a checkout whose worker_sdk goes into the worker_sdk bench image
_client: Any = None

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ARG SDK=worker_sdk
ENV BENCH_SDK=${SDK} PYTHONUNBUFFERED=1
LABEL serverless-emulator.bench=1
WORKDIR /app
COPY handler.py /app/bench_handler.py
CMD ["python3", "-u", "bench_handler.py"]
"""


def client() -> Any:
    global _client
    if _client is None:
        import docker

        _client = docker.from_env(timeout=120)
    return _client


def server_version() -> str:
    """The engine's version, storage driver and cgroup version (the driver matters for start times)."""
    try:
        info = client().info()
        return (
            f"{client().version().get('Version', '?')} (storage driver {info.get('Driver', '?')}, "
            f"cgroup v{info.get('CgroupVersion', '?')})"
        )
    except Exception as exc:
        return f"unavailable ({exc})"


def image_exists(tag: str) -> bool:
    import docker

    try:
        client().images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def use_worker_sdk_from(source: Path) -> str:
    """Build the worker_sdk bench image with ``source``/worker_sdk copied over the sample's copy.

    The image gets its own tag, named by a hash of that code (``bench-echo:sdk-<hash>``), so runs of
    other checkouts sharing the engine never see it; ``remove_tree_image`` deletes it after the run.
    Returns the tag (``BENCH_ECHO`` points at it from then on).
    """
    global BENCH_ECHO, _tree_sdk
    digest = hashlib.sha256()
    for path in sorted((source / "worker_sdk").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes())
    _tree_sdk = source
    BENCH_ECHO = f"serverless-emulator/bench-echo:sdk-{digest.hexdigest()[:12]}"
    return BENCH_ECHO


def remove_tree_image() -> None:
    """Delete the image ``use_worker_sdk_from`` tagged (by its exact tag), if any."""
    if _tree_sdk is not None:
        subprocess.run(["docker", "image", "rm", BENCH_ECHO], capture_output=True, timeout=120)


def build_bench_images(handler: Path) -> dict[str, str | None]:
    """bench/handler.py on top of the echo sample (worker_sdk) and the runpod-sdk sample (RunPod's SDK).

    Each is a one-layer build on a local image (about a second with Docker's cache); None when the
    sample image it starts from is missing (``bash scripts/setup.sh`` builds them).
    """
    built: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        ctx = Path(tmp)
        # the checkout's worker_sdk over the sample image's copy (the worker_sdk image only)
        tree_copy = "COPY sdk/ /opt/serverless-emulator/\n" if _tree_sdk is not None else ""
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        (ctx / "Dockerfile.tree").write_text(DOCKERFILE + tree_copy)
        (ctx / "handler.py").write_bytes(handler.read_bytes())
        (ctx / "sdk").mkdir()
        if _tree_sdk is not None:
            shutil.copytree(
                _tree_sdk / "worker_sdk",
                ctx / "sdk" / "worker_sdk",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        for tag, base, sdk in (
            (BENCH_ECHO, ECHO_SAMPLE, "worker_sdk"),
            (BENCH_RUNPOD, RUNPOD_SAMPLE, "runpod"),
        ):
            if not image_exists(base):
                built[tag] = None
                continue
            proc = subprocess.run(
                [
                    "docker",
                    "build",
                    "-q",
                    "-t",
                    tag,
                    "-f",
                    str(ctx / ("Dockerfile.tree" if sdk == "worker_sdk" else "Dockerfile")),
                    "--build-arg",
                    f"BASE={base}",
                    "--build-arg",
                    f"SDK={sdk}",
                    str(ctx),
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"docker build of {tag} failed:\n{proc.stderr[-2000:]}")
            built[tag] = tag
    return built


def docker_run_floor(image: str, run_label: str) -> float:
    """Wall seconds of ``docker run --rm IMAGE python -c pass`` (labelled, so a leftover can be found)."""
    _run_labels.add(run_label)
    began = time.perf_counter()
    proc = subprocess.run(
        ["docker", "run", "--rm", "--label", f"{LABEL_BENCH}={run_label}", image, "python", "-c", "pass"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"docker run {image} python -c pass failed: {proc.stderr[-1000:]}")
    return elapsed


def run_labelled(
    image: str, network: str, run_label: str, command: list[str] | None, env: dict[str, str] | None = None
) -> tuple[str, str]:
    """Start a detached container of this run (labelled ``LABEL_BENCH=run_label``) on ``network``;
    (container id, its IP address on that network). Remove it with ``remove_container``."""
    _run_labels.add(run_label)
    container = client().containers.run(
        image, command, detach=True, network=network, environment=env or {}, labels={LABEL_BENCH: run_label}
    )
    networks = client().api.inspect_container(container.id)["NetworkSettings"]["Networks"]
    return container.id, str(networks[network]["IPAddress"])


def remove_container(container_id: str) -> None:
    """Force-remove one container by id (gone already: nothing to do)."""
    with contextlib.suppress(Exception):
        client().api.remove_container(container_id, force=True)


def container_logs(container_id: str, tail: int = 30) -> str:
    try:
        return bytes(client().api.logs(container_id, tail=tail)).decode(errors="replace")
    except Exception as exc:
        return f"(no logs: {exc})"


def container_paused(container_id: str) -> bool:
    try:
        state = client().api.inspect_container(container_id)["State"]
    except Exception:
        return False
    return bool(state.get("Paused"))


# --- cleanup ----------------------------------------------------------------------------------------
def track_instance(instance: str, network: str) -> None:
    _instances[instance] = network


def _remove_containers(label: str) -> int:
    removed = 0
    for container in client().containers.list(all=True, filters={"label": [label]}):
        try:
            container.remove(force=True)
            removed += 1
        except Exception:
            pass
    return removed


def remove_instance(instance: str, network: str) -> int:
    """Force-remove the containers labelled with this control plane's instance id, then its network."""
    removed = _remove_containers(f"{LABEL_INSTANCE}={instance}")
    for net in client().networks.list(names=[network]):
        labels = net.attrs.get("Labels") or {}
        if net.name == network and labels.get(LABEL_INSTANCE) == instance:  # `names` matches substrings
            with contextlib.suppress(Exception):
                net.remove()
    _instances.pop(instance, None)
    return removed


def leftovers(instances: list[str], run_label: str) -> list[str]:
    """What this run left behind (should be empty): containers and networks, by label and exact name."""
    found = []
    for instance in instances:
        found += [
            c.name
            for c in client().containers.list(all=True, filters={"label": [f"{LABEL_INSTANCE}={instance}"]})
        ]
        found += [n.name for n in client().networks.list(filters={"label": [f"{LABEL_INSTANCE}={instance}"]})]
    found += [
        c.name for c in client().containers.list(all=True, filters={"label": [f"{LABEL_BENCH}={run_label}"]})
    ]
    return found


@atexit.register
def _sweep() -> None:
    """At exit (also after an error): anything still tracked is removed."""
    if _client is None:
        return
    for instance, network in list(_instances.items()):
        with contextlib.suppress(Exception):
            remove_instance(instance, network)
    for label in _run_labels:
        with contextlib.suppress(Exception):
            _remove_containers(f"{LABEL_BENCH}={label}")
