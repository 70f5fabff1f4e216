"""A real container registry for tests: Debian's ``docker-registry`` (the CNCF distribution registry) on a
free loopback port with htpasswd authentication and its storage in a temporary folder, stopped after.

Docker treats registries on 127.0.0.0/8 as insecure by default, so the engine pulls from it over plain
HTTP. Images are pushed with explicit credentials (``auth_config``): the host's ``~/.docker/config.json``
is never written. Outside CI the fixture skips when the package is missing; in CI (``CI=true``) that is a
failure, since ``scripts/test.sh`` installs it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
INSTALL_HINT = (
    "Debian's docker-registry and apache2-utils (htpasswd) packages are not installed: "
    "`apt-get install docker-registry apache2-utils` (bash scripts/test.sh installs them when run as root)"
)


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    username: str
    password: str
    process: subprocess.Popen[bytes]
    client: Any  # docker.DockerClient
    made: list[str] = field(default_factory=list)  # image references this fixture tagged or pulled

    def ref(self, name: str, tag: str) -> str:
        return f"{self.host}/{name}:{tag}"

    def auth(self, password: str | None = None) -> dict[str, str]:
        return {"username": self.username, "password": password or self.password}

    def build(self, base: str, marker: str, size_kb: int = 4096) -> str:
        """An image FROM ``base`` with one layer of ``size_kb`` random KB (unique per ``marker``): its id."""
        dockerfile = (
            f"FROM {base}\n"
            f"RUN head -c {size_kb * 1024} /dev/urandom > /se-registry-test-{marker} && echo {marker} > /se-marker\n"
        )
        tag = f"se-registry-test-src:{marker}"
        image, _ = self.client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True
        )
        self.made.append(tag)
        return str(image.id)

    def push(self, source: str, name: str, tag: str, keep_local: bool = False) -> str:
        """Push ``source`` as ``name:tag``; the local registry tag is removed unless ``keep_local``.
        Returns the pushed manifest digest."""
        ref = self.ref(name, tag)
        self.client.api.tag(source, f"{self.host}/{name}", tag)
        digest = ""
        for doc in self.client.api.push(
            f"{self.host}/{name}", tag, auth_config=self.auth(), stream=True, decode=True
        ):
            if doc.get("error"):
                raise AssertionError(f"push of {ref} failed: {doc['error']}")
            digest = (doc.get("aux") or {}).get("Digest", digest)
        if not keep_local:
            self.remove_local(ref)
        else:
            self.made.append(ref)
        return str(digest)

    def retag(self, name: str, from_tag: str, to_tag: str) -> None:
        """Make ``name:to_tag`` name the manifest of ``name:from_tag``, in the registry only (the registry
        API's manifest GET and PUT): a push that needs no local image."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Accept": ", ".join(MANIFEST_TYPES)}
        got = urllib.request.Request(f"http://{self.host}/v2/{name}/manifests/{from_tag}", headers=headers)
        with urllib.request.urlopen(got, timeout=30) as answer:
            manifest, kind = answer.read(), answer.headers["Content-Type"]
        put = urllib.request.Request(
            f"http://{self.host}/v2/{name}/manifests/{to_tag}",
            data=manifest,
            method="PUT",
            headers={"Authorization": f"Basic {token}", "Content-Type": kind},
        )
        with urllib.request.urlopen(put, timeout=30) as answer:
            assert answer.status == 201, answer.status

    def remove_local(self, ref: str) -> None:
        with contextlib.suppress(Exception):
            self.client.images.remove(ref, force=True)

    def local(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
        except Exception:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(host: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"docker-registry exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # up, and asking for credentials
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"docker-registry did not answer on {host} within {timeout_s}s")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, docker_session: Any) -> Iterator[Registry]:
    exe, htpasswd = shutil.which("docker-registry"), shutil.which("htpasswd")
    if exe is None or htpasswd is None:
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    folder: Path = tmp_path_factory.mktemp("registry")
    username, password = "se-user", uuid.uuid4().hex
    users = subprocess.run([htpasswd, "-Bbn", username, password], check=True, capture_output=True).stdout
    (folder / "htpasswd").write_bytes(users)
    port = _free_port()
    host = f"127.0.0.1:{port}"
    (folder / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        f"http:\n  addr: {host}\n"
        f"auth:\n  htpasswd:\n    realm: serverless-emulator-tests\n    path: {folder / 'htpasswd'}\n"
    )
    log = (folder / "registry.log").open("wb")
    process = subprocess.Popen(
        [exe, "serve", str(folder / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    reg = Registry(host, username, password, process, docker_session.client)
    try:
        _wait_ready(host, process)
        yield reg
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        for ref in reversed(reg.made):
            reg.remove_local(ref)
        for image in docker_session.client.images.list():  # what the tests' workers pulled, tagged or not
            names = list(image.tags) + list(image.attrs.get("RepoDigests") or [])
            if any(name.startswith(f"{host}/") for name in names):
                reg.remove_local(image.id)
