"""The pure parts of emulator.images.build and emulator.images.debootstrap: no Docker, no network."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.errors import InvalidInput, RuntimeFailure
from emulator.images import build as images
from emulator.images import debootstrap as images_debootstrap
from emulator.images.build import TargetPython
from emulator.images.debootstrap import (
    AptSource,
    debootstrap_command,
    import_command,
    mounts_under,
    parse_deb822,
    parse_one_line,
    pick_debian_mirror,
    read_apt_sources,
)

DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

ONE_LINE = """\
# a comment
deb [arch=amd64 signed-by=/etc/apt/keyrings/k.gpg] http://mirror.example/debian bookworm main contrib
deb-src http://mirror.example/debian bookworm main
deb http://mirror.example/debian-security bookworm-security main   # trailing comment
deb http://mirror.example/debian bookworm-updates main
"""


# --- apt sources -------------------------------------------------------------------------------------


def test_deb822_stanzas_become_sources() -> None:
    main, security = parse_deb822(DEB822)
    assert main == AptSource(
        uri="http://mirror.example/debian",
        suites=("bookworm", "bookworm-updates"),
        components=("main",),
        signed_by="/usr/share/keyrings/debian-archive-keyring.gpg",
    )
    assert security.uri == "http://mirror.example/debian-security"


def test_deb822_skips_disabled_and_source_stanzas_and_inline_keys() -> None:
    text = (
        "Types: deb-src\nURIs: http://a.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://b.example/debian\nSuites: bookworm\n\n"
        "Types: deb deb-src\nURIs: http://c.example/debian http://d.example/debian\nSuites: bookworm\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
    )
    sources = parse_deb822(text)
    assert [s.uri for s in sources] == ["http://c.example/debian", "http://d.example/debian"]
    assert all(s.signed_by is None for s in sources)


def test_one_line_format_with_options_and_comments() -> None:
    sources = parse_one_line(ONE_LINE)
    assert [(s.uri, s.suites) for s in sources] == [
        ("http://mirror.example/debian", ("bookworm",)),
        ("http://mirror.example/debian-security", ("bookworm-security",)),
        ("http://mirror.example/debian", ("bookworm-updates",)),
    ]
    assert sources[0].components == ("main", "contrib")
    assert sources[0].signed_by == "/etc/apt/keyrings/k.gpg"
    assert sources[0].options["arch"] == "amd64"


@pytest.mark.parametrize("text, parse", [(DEB822, parse_deb822), (ONE_LINE, parse_one_line)])
def test_the_mirror_is_the_main_archive_not_security(
    text: str, parse: Callable[[str], list[AptSource]]
) -> None:
    mirror = pick_debian_mirror(parse(text))
    assert mirror is not None
    assert mirror.uri == "http://mirror.example/debian"
    assert "bookworm" in mirror.suites


def test_another_release_still_gives_a_debian_mirror() -> None:
    sources = parse_one_line("deb http://mirror.example/debian trixie main\n")
    mirror = pick_debian_mirror(sources, "bookworm")
    assert mirror is not None and mirror.uri == "http://mirror.example/debian"


def test_no_debian_mirror_is_none() -> None:
    only_security = parse_one_line("deb http://mirror.example/debian-security bookworm-security main\n")
    assert pick_debian_mirror(only_security) is None
    assert pick_debian_mirror(parse_one_line("deb http://archive.example/ubuntu noble main\n")) is None


def test_read_apt_sources_reads_both_formats_in_apt_order(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://first.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "old.list.disabled").write_text(
        "deb http://no.example/debian bookworm main\n"
    )
    uris = [s.uri for s in read_apt_sources(tmp_path)]
    assert uris == [
        "http://first.example/debian",
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    ]


# --- commands ------------------------------------------------------------------------------------------


def test_debootstrap_command() -> None:
    mirror = AptSource(uri="http://mirror.example/debian", suites=("bookworm",), signed_by="/nonexistent.gpg")
    cmd = debootstrap_command(Path("/tmp/root"), mirror)
    assert cmd[:2] == ["debootstrap", "--variant=minbase"]
    included = cmd[2].removeprefix("--include=").split(",")
    assert {"python3", "python3-pip", "ca-certificates"} <= set(included)
    assert not any(a.startswith("--keyring") for a in cmd)  # a keyring that does not exist is not passed
    assert cmd[-3:] == ["bookworm", "/tmp/root", "http://mirror.example/debian"]


def test_debootstrap_command_passes_an_existing_keyring(tmp_path: Path) -> None:
    keyring = tmp_path / "k.gpg"
    keyring.write_bytes(b"")
    cmd = debootstrap_command(
        tmp_path, AptSource(uri="http://m.example/debian", suites=(), signed_by=str(keyring))
    )
    assert f"--keyring={keyring}" in cmd


def test_import_command_sets_lang_and_cmd() -> None:
    cmd = import_command("serverless-emulator/python-base:bookworm")
    assert cmd[:2] == ["docker", "import"] and cmd[-2:] == ["-", "serverless-emulator/python-base:bookworm"]
    changes = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--change"]
    assert "ENV LANG=C.UTF-8" in changes
    assert 'CMD ["python3"]' in changes


def test_docker_build_command() -> None:
    cmd = images.docker_build_command(
        Path("/r/sample_workers/echo/Dockerfile"),
        Path("/r"),
        "serverless-emulator/sample-echo:latest",
        "serverless-emulator/python-base:bookworm",
        labels={"serverless-emulator.test": "1"},
        build_args={"X": "y"},
    )
    assert cmd == [
        "docker", "build", "--force-rm", "-f", "/r/sample_workers/echo/Dockerfile", "-t", "serverless-emulator/sample-echo:latest",
        "--build-arg", "BASE_IMAGE=serverless-emulator/python-base:bookworm", "--build-arg", "X=y",
        "--label", "serverless-emulator.test=1", "/r",
    ]  # fmt: skip


def test_pip_download_command_targets_the_image_python() -> None:
    target = TargetPython(version="3.11", machine="x86_64", glibc=(2, 36))
    cmd = images.pip_download_command(["runpod==1.12.0"], Path("/w"), target, python="py")
    assert cmd[:4] == ["py", "-m", "pip", "download"]
    assert "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.11"
    platforms = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--platform"]
    assert "manylinux2014_x86_64" in platforms and "manylinux_2_36_x86_64" in platforms
    assert "manylinux_2_37_x86_64" not in platforms
    assert cmd[-1] == "runpod==1.12.0"


def test_platform_tags() -> None:
    assert TargetPython("3.12", "aarch64", (2, 17)).platforms() == ["manylinux_2_17_aarch64", *[
        f"manylinux_2_{m}_aarch64" for m in range(16, 4, -1)], "manylinux2014_aarch64"]  # fmt: skip
    assert TargetPython("3.12", "x86_64", None).platforms() == ["manylinux2014_x86_64"]
    assert TargetPython("3.12", "x86_64", (2, 28)).platforms()[-2:] == [
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
    ]


@pytest.mark.parametrize(
    "name, pure",
    [
        ("runpod-1.12.0-py3-none-any.whl", True),
        ("six-1.16.0-py2.py3-none-any.whl", True),
        ("aiohttp-3.9.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", False),
        ("cryptography-43.0.0-cp39-abi3-manylinux_2_28_x86_64.whl", False),
        ("thing-1.0.tar.gz", False),
    ],
)
def test_is_pure_wheel(name: str, pure: bool) -> None:
    assert images.is_pure_wheel(name) is pure


# --- names and contexts --------------------------------------------------------------------------------------


def test_sample_image_tag() -> None:
    assert images.sample_image_tag("echo") == "serverless-emulator/sample-echo:latest"
    assert images.sample_image_tag("gpu-info") == "serverless-emulator/sample-gpu-info:latest"
    for bad in ("", "Echo", "a b", "-x", "x/y"):
        with pytest.raises(InvalidInput):
            images.sample_image_tag(bad)


def test_default_tag_for(tmp_path: Path) -> None:
    assert (
        images.default_tag_for(tmp_path / "sample_workers" / "echo")
        == "serverless-emulator/sample-echo:latest"
    )
    assert images.default_tag_for(tmp_path / "My Worker!") == "my-worker:latest"
    assert images.default_tag_for(tmp_path / "___") == "worker:latest"


def test_build_context_is_the_repo_root_for_samples(tmp_path: Path) -> None:
    (tmp_path / "worker_sdk").mkdir()
    (tmp_path / "worker_sdk" / "__init__.py").write_text("")
    sample = tmp_path / "sample_workers" / "echo"
    other = tmp_path / "elsewhere" / "mine"
    sample.mkdir(parents=True)
    other.mkdir(parents=True)
    assert images.build_context_for(sample) == tmp_path
    assert images.build_context_for(other) == other


def test_every_sample_folder_is_complete() -> None:
    names = [d.name for d in images.sample_dirs()]
    assert {"echo", "stream", "slow", "crashy", "gpu-info", "runpod-sdk", "load-balancer"} <= set(names)
    for folder in images.sample_dirs():
        dockerfile = (folder / "Dockerfile").read_text()
        assert "ARG BASE_IMAGE=python:3.12-slim" in dockerfile and "FROM ${BASE_IMAGE}" in dockerfile
        if (
            folder.name == "load-balancer"
        ):  # a load-balancing worker: an HTTP app, no job handler or job input
            assert (folder / "app.py").is_file() and 'CMD ["python3", "-u", "app.py"]' in dockerfile
            continue
        assert (folder / "handler.py").is_file() and (folder / "test_input.json").is_file()


def test_a_folder_without_dockerfile_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no Dockerfile"):
        images.build_image(tmp_path)


def test_default_base_image_prefers_the_environment() -> None:
    assert images.default_base_image({"EMULATOR_BASE_IMAGE": "my/base:1"}) == "my/base:1"


def test_read_requirements(tmp_path: Path) -> None:
    path = tmp_path / "wheels.txt"
    path.write_text("# comment\nrunpod==1.12.0  # pinned\n\nrequests\n")
    assert images.read_requirements(path) == ["runpod==1.12.0", "requests"]


def test_emulator_requirements_include_the_build_backend() -> None:
    reqs = images.emulator_requirements()
    assert any(r.startswith("setuptools") for r in reqs)
    assert any(r.startswith("fastapi") for r in reqs)


def test_mounts_under_lists_deepest_first() -> None:
    mounts = "proc /proc proc rw 0 0\nudev /tmp/root/dev devtmpfs rw 0 0\nproc /tmp/root/dev/pts x 0 0\n"
    mounts += "x /tmp/rootfs-other y 0 0\n"
    assert mounts_under(Path("/tmp/root"), mounts) == ["/tmp/root/dev/pts", "/tmp/root/dev"]


# --- build_python_base's errors, with a fake command runner ------------------------------------------------


def test_build_base_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("emulator.images.debootstrap.os.geteuid", lambda: 1000)
    with pytest.raises(RuntimeFailure, match="needs root"):
        images_debootstrap.build_python_base(
            "t:1", runner=lambda *a, **k: (0, []), progress=lambda line: None
        )


def test_a_failed_debootstrap_reports_its_log_and_cleans_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("emulator.images.debootstrap.os.geteuid", lambda: 0)
    etc_apt = tmp_path / "etc-apt"
    etc_apt.mkdir()
    (etc_apt / "sources.list").write_text("deb http://mirror.example/debian bookworm main\n")
    work = tmp_path / "work"
    work.mkdir()
    commands: list[list[str]] = []

    def runner(cmd: list[str], progress, **kw):  # type: ignore[no-untyped-def]
        commands.append(cmd)
        if cmd[0] == "debootstrap":
            log = Path(cmd[-2]) / "debootstrap" / "debootstrap.log"
            log.parent.mkdir(parents=True)
            log.write_text(
                "I: Retrieving InRelease\nE: Failed getting release file http://mirror.example/debian\n"
            )
            return 1, ["E: see the log"]
        return 0, []

    with pytest.raises(RuntimeFailure) as caught:
        images_debootstrap.build_python_base("t:1", runner, lambda line: None, etc_apt=etc_apt, workdir=work)
    assert "debootstrap failed (exit 1)" in caught.value.message
    assert "Failed getting release file" in caught.value.message
    assert [c for c in commands if c[0] == "debootstrap"][0][-1] == "http://mirror.example/debian"
    assert not any(c[:2] == ["docker", "import"] for c in commands)
    assert list(work.iterdir()) == []  # the temporary root file system is gone


def test_no_debian_mirror_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("emulator.images.debootstrap.os.geteuid", lambda: 0)
    with pytest.raises(RuntimeFailure, match="no Debian mirror"):
        images_debootstrap.build_python_base(
            "t:1", lambda *a, **k: (0, []), lambda line: None, etc_apt=tmp_path
        )
