"""Make a Python base image from Debian's packages when no registry can be reached.

``debootstrap`` installs a minimal Debian (python3, python3-pip, ca-certificates) into a temporary
folder, fetching packages through the Debian mirror the host's own apt is configured with, and
``docker import`` turns that folder into an image. The parts that decide things (reading apt's
sources in both formats, building the commands) are pure and unit-tested; the commands themselves
run through the ``Runner`` that ``emulator.images.build`` passes in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from emulator.errors import RuntimeFailure

Progress = Callable[[str], None]
# runner(cmd, progress, env=None, stdin=None) -> (exit code, last output lines)
Runner = Callable[..., tuple[int, list[str]]]

SUITE = "bookworm"
PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates")
IMAGE_CHANGES = (
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LABEL serverless-emulator.base=debootstrap",
    'CMD ["python3"]',
)
# Removed from the root file system before import: package caches and documentation (about 20 MB),
# and Debian's PEP 668 marker, so that a plain `pip install` works as it does in python:3.12-slim.
PRUNE = (
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/lib/python3*/EXTERNALLY-MANAGED",
)


@dataclass(frozen=True)
class AptSource:
    """One `deb` source as apt sees it: where, which suites, which components, which keyring."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ()
    signed_by: str | None = None
    options: dict[str, str] = field(default_factory=dict)


# --- reading apt's configuration (pure) ----------------------------------------------------------


def parse_deb822(text: str) -> list[AptSource]:
    """Parse a deb822 ``*.sources`` file: stanzas separated by blank lines, ``Key: value`` fields."""
    sources: list[AptSource] = []
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        suites = tuple(stanza.get("suites", "").split())
        components = tuple(stanza.get("components", "").split())
        signed_by = stanza.get("signed-by", "").strip() or None
        if signed_by and "\n" in signed_by:  # an inline key block, not a path
            signed_by = None
        for uri in stanza.get("uris", "").split():
            sources.append(AptSource(uri=uri, suites=suites, components=components, signed_by=signed_by))
    return sources


def _stanzas(text: str) -> Iterable[dict[str, str]]:
    fields: dict[str, str] = {}
    key: str | None = None
    for raw in text.splitlines() + [""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, key = {}, None
            continue
        if raw[0] in " \t" and key is not None:  # continuation line
            fields[key] += "\n" + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if sep:
            key = name.strip().lower()
            fields[key] = value.strip()


def parse_one_line(text: str) -> list[AptSource]:
    """Parse the classic one-line format: ``deb [opt=value ...] URI SUITE [COMPONENT ...]``."""
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        options: dict[str, str] = {}
        if "[" in line and "]" in line:
            head, _, rest = line.partition("[")
            opts, _, tail = rest.partition("]")
            line = head + tail
            for opt in opts.split():
                name, _, value = opt.partition("=")
                options[name.lower()] = value
        parts = line.split()
        if len(parts) < 3 or parts[0] != "deb":
            continue
        sources.append(
            AptSource(
                uri=parts[1],
                suites=(parts[2],),
                components=tuple(parts[3:]),
                signed_by=options.get("signed-by"),
                options=options,
            )
        )
    return sources


def read_apt_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled ``deb`` source of the host, in the order apt reads them."""
    files: list[Path] = []
    if (etc_apt / "sources.list").is_file():
        files.append(etc_apt / "sources.list")
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources") and p.is_file())
    sources: list[AptSource] = []
    for path in files:
        text = path.read_text(errors="replace")
        sources += parse_deb822(text) if path.suffix == ".sources" else parse_one_line(text)
    return sources


def pick_debian_mirror(sources: Iterable[AptSource], suite: str = SUITE) -> AptSource | None:
    """The source to debootstrap ``suite`` from: a Debian archive (not security, not only a suite's
    -updates/-backports), preferring one that lists ``suite`` itself; None when the host has none."""
    candidates = [
        s
        for s in sources
        if s.uri.startswith(("http://", "https://", "file:/"))
        and "security" not in s.uri
        and "security" not in " ".join(s.suites)
        and any("/" not in x and "-" not in x for x in s.suites)
    ]
    for source in candidates:
        if suite in source.suites:
            return source
    debian = [s for s in candidates if s.uri.rstrip("/").endswith("/debian") or "/debian/" in s.uri]
    return debian[0] if debian else None


# --- commands (pure) -------------------------------------------------------------------------------


def debootstrap_command(
    target: Path, mirror: AptSource, suite: str = SUITE, packages: Iterable[str] = PACKAGES
) -> list[str]:
    cmd = ["debootstrap", "--variant=minbase", "--include=" + ",".join(packages)]
    if mirror.signed_by and Path(mirror.signed_by).is_file():
        cmd.append("--keyring=" + mirror.signed_by)
    return cmd + [suite, str(target), mirror.uri]


def import_command(tag: str, changes: Iterable[str] = IMAGE_CHANGES) -> list[str]:
    cmd = ["docker", "import"]
    for change in changes:
        cmd += ["--change", change]
    return cmd + ["-", tag]


# --- doing it ---------------------------------------------------------------------------------------


def build_python_base(
    tag: str,
    runner: Runner,
    progress: Progress,
    *,
    suite: str = SUITE,
    etc_apt: Path = Path("/etc/apt"),
    workdir: Path | None = None,
) -> str:
    """Debootstrap ``suite`` with Python into a temporary folder and import it as ``tag``; return tag."""
    if os.geteuid() != 0:
        raise RuntimeFailure(
            "building the local Python base image needs root (debootstrap creates device files and "
            "sets file owners): run `sudo serverless-emulator images build-base`, or use an image "
            "that has Python via EMULATOR_BASE_IMAGE",
            step="debootstrap",
        )
    mirror = pick_debian_mirror(read_apt_sources(etc_apt), suite)
    if mirror is None:
        raise RuntimeFailure(
            f"no Debian mirror found in {etc_apt}/sources.list or {etc_apt}/sources.list.d/ "
            "to debootstrap from",
            step="debootstrap",
        )
    # debootstrap and the tools it calls (chroot, mknod) live in sbin, which a user's PATH may lack
    path = ":".join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]).lstrip(":")
    env = {**os.environ, "PATH": path, "DEBIAN_FRONTEND": "noninteractive"}
    _ensure_debootstrap(runner, progress, env)
    root = Path(tempfile.mkdtemp(prefix="serverless-emulator-rootfs-", dir=workdir))
    try:
        progress(f"debootstrap {suite} with {', '.join(PACKAGES)} into {root} (about a minute)")
        code, tail = runner(debootstrap_command(root, mirror, suite), progress, env=env)
        if code != 0:
            log = root / "debootstrap" / "debootstrap.log"
            log_tail = log.read_text(errors="replace").splitlines()[-25:] if log.is_file() else tail
            raise RuntimeFailure(
                f"debootstrap failed (exit {code}); its last log lines:\n" + "\n".join(log_tail),
                step="debootstrap",
                log_tail=log_tail,
            )
        _prune(root)
        progress(f"docker import {root} as {tag}")
        _import(root, tag, runner, progress)
    finally:
        _remove_rootfs(root, progress)
    return tag


def _ensure_debootstrap(runner: Runner, progress: Progress, env: dict[str, str]) -> None:
    if shutil.which("debootstrap", path=env["PATH"]):
        return
    if not shutil.which("apt-get"):
        raise RuntimeFailure(
            "debootstrap is not installed and there is no apt-get to install it with", step="debootstrap"
        )
    install = ["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"]
    progress("installing debootstrap with apt-get")
    code, _ = runner(install, progress, env=env)
    if code != 0:  # maybe no package lists yet
        runner(["apt-get", "update"], progress, env=env)
        code, tail = runner(install, progress, env=env)
        if code != 0:
            raise RuntimeFailure(
                "could not install debootstrap with apt-get:\n" + "\n".join(tail[-10:]),
                step="debootstrap",
                log_tail=tail,
            )


def _prune(root: Path) -> None:
    for pattern in PRUNE:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _import(root: Path, tag: str, runner: Runner, progress: Progress) -> None:
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        code, tail = runner(import_command(tag), progress, stdin=tar.stdout)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
        tar_code = tar.wait()
    if tar_code != 0 or code != 0:
        raise RuntimeFailure(
            f"docker import of {root} failed (tar exit {tar_code}, import exit {code}):\n"
            + "\n".join([*tar_err.splitlines()[-10:], *tail[-10:]]),
            step="import",
        )


def mounts_under(root: Path, mounts_text: str) -> list[str]:
    """Mount points at or below ``root`` in /proc/mounts text, deepest first (pure)."""
    prefix = str(root).rstrip("/") + "/"
    points = [
        line.split()[1].replace("\\040", " ") for line in mounts_text.splitlines() if len(line.split()) > 1
    ]
    return sorted((p for p in points if p == prefix[:-1] or p.startswith(prefix)), key=len, reverse=True)


def _remove_rootfs(root: Path, progress: Progress) -> None:
    """Remove the temporary root file system, but never through a mount that debootstrap left behind
    (a bind-mounted /dev or /proc would take the host's files with it)."""

    def left() -> list[str]:
        try:
            return mounts_under(root.resolve(), Path("/proc/mounts").read_text())
        except OSError:
            return []

    for point in left():
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    remaining = left()
    if remaining:
        progress(f"warning: not removing {root}: still mounted: {', '.join(remaining)}")
        return
    shutil.rmtree(root, ignore_errors=True)
