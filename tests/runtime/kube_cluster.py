"""A real Kubernetes control plane on loopback for the Kubernetes runtime's tests, plus a kubelet stand-in.

``KubeCluster.start`` runs Debian's etcd and the kube-apiserver and kube-scheduler 1.20 built by
``scripts/kubernetes.sh`` (from its cache folder) on free loopback ports, with a private CA, a static
token (in ``system:masters``) and RBAC. There is no kubelet: ``kube_kubelet.Kubelet`` stands in for it
(fake nodes, optionally with ``nvidia.com/gpu``; Pods Running or Failed; logs over HTTPS; the supervisor's
worker Pods as processes). Nothing touches Docker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kubernetes.client

from emulator.runtime.kubernetes import KubernetesRuntime
from tests.runtime.kube_kubelet import Kubelet, _ignore_404

__all__ = ["KubeCluster", "Kubelet", "Running", "namespaced_runtime", "start_cluster", "unreachable_runtime"]

CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "serverless-emulator/kubernetes-1.20"
)
BINARIES = ("etcd", "kube-apiserver", "kube-scheduler")
BUILD_HINT = "build them once with `sudo bash scripts/kubernetes.sh` (about 9 minutes on 2 cores)"
TOKEN = "serverless-emulator-test-token"


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if not os.access(CACHE / "bin" / name, os.X_OK)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _wait(check: Callable[[], bool], timeout_s: float, what: str, logs: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            tail = logs.read_text(errors="replace")[-3000:] if logs and logs.exists() else ""
            raise RuntimeError(f"{what} not ready after {timeout_s}s\n{tail}")
        time.sleep(0.1)


class KubeCluster:
    """etcd + kube-apiserver + kube-scheduler on loopback in ``workdir``; ``kubeconfig`` for clients."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.api_port = _free_port()
        self.kubeconfig = workdir / "kubeconfig"
        self.ca = workdir / "ca.crt"
        self.cert = workdir / "serving.crt"
        self.key = workdir / "serving.key"

    def _certs(self) -> None:
        w = self.workdir
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=se-test-ca",
            "-keyout",
            str(w / "ca.key"),
            "-out",
            str(self.ca),
        )
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(self.key),
            "-out",
            str(w / "serving.csr"),
        )
        (w / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(w / "serving.csr"),
            "-CA",
            str(self.ca),
            "-CAkey",
            str(w / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(w / "san.ext"),
            "-out",
            str(self.cert),
        )
        _openssl("genrsa", "-out", str(w / "sa.key"), "2048")
        (w / "tokens.csv").write_text(f'{TOKEN},admin,admin,"system:masters"\n')
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "test",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {
                                "server": f"https://127.0.0.1:{self.api_port}",
                                "certificate-authority": str(self.ca),
                            },
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                }
            )
        )

    def _spawn(self, name: str, args: list[str]) -> Path:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            self.processes.append(
                subprocess.Popen([str(CACHE / "bin" / name), *args], stdout=out, stderr=out)
            )
        return log

    def start(self) -> None:
        self._certs()
        w = self.workdir
        client_port, peer_port = _free_port(), _free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        etcd_log = self._spawn(
            "etcd",
            [
                "--name",
                "se-test",
                "--data-dir",
                str(w / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"se-test=http://127.0.0.1:{peer_port}",
            ],
        )
        _wait(lambda: _port_open(client_port), 30, "etcd", etcd_log)
        api_log = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                f"--secure-port={self.api_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--insecure-port=0",
                f"--cert-dir={w / 'certs'}",
                f"--tls-cert-file={self.cert}",
                f"--tls-private-key-file={self.key}",
                f"--token-auth-file={w / 'tokens.csv'}",
                "--authorization-mode=RBAC",  # the test token is in system:masters; the manifest test asks RBAC
                f"--service-account-key-file={w / 'sa.key'}",
                f"--service-account-signing-key-file={w / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                f"--kubelet-certificate-authority={self.ca}",
                "--kubelet-preferred-address-types=InternalIP",
                "--enable-priority-and-fairness=false",
            ],
        )
        _wait(self._api_ready, 90, "kube-apiserver", api_log)
        sched_log = self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--port=0",
                f"--secure-port={_free_port()}",
                "--bind-address=127.0.0.1",
            ],
        )
        time.sleep(0)  # the scheduler's readiness shows in the tests' own deadlines (bound Pods)
        self.scheduler_log = sched_log

    def _api_ready(self) -> bool:
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca))
            with (
                socket.create_connection(("127.0.0.1", self.api_port), timeout=1) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"GET /readyz HTTP/1.0\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
                return b" 200 " in tls.recv(64)
        except OSError:
            return False

    def api(self) -> kubernetes.client.ApiClient:
        config = kubernetes.client.Configuration()
        config.host = f"https://127.0.0.1:{self.api_port}"
        config.ssl_ca_cert = str(self.ca)
        config.api_key = {"authorization": f"Bearer {TOKEN}"}
        return kubernetes.client.ApiClient(config)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def start_cluster() -> KubeCluster:
    cluster = KubeCluster(Path(tempfile.mkdtemp(prefix="se-kube-")))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


class Running:
    """The session's cluster and its kubelet stand-in."""

    def __init__(self, cluster: KubeCluster, kubelet: Kubelet) -> None:
        self.cluster = cluster
        self.kubelet = kubelet


@contextlib.asynccontextmanager
async def namespaced_runtime(running: Running, labels: dict[str, str]) -> AsyncIterator[KubernetesRuntime]:
    """A KubernetesRuntime in a fresh namespace; afterwards every Pod there is deleted (grace 0)."""
    namespace = "se-test-" + "".join(c for c in next(iter(labels.values())) if c.isalnum())[:12].lower()
    core: Any = kubernetes.client.CoreV1Api(running.kubelet.client)
    core.create_namespace({"metadata": {"name": namespace}})
    runtime = KubernetesRuntime(
        namespace=namespace, kubeconfig=str(running.cluster.kubeconfig), watch_timeout_s=2
    )
    try:
        yield runtime
    finally:
        await runtime.close()
        core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        core.delete_collection_namespaced_persistent_volume_claim(namespace)
        _ignore_404(lambda: core.delete_namespace(namespace))


def unreachable_runtime(kubeconfig: str) -> KubernetesRuntime:
    """A runtime whose kube config names a loopback port nothing listens on."""
    port = _free_port()
    dead = Path(kubeconfig).parent / f"dead-{port}.kubeconfig"  # in the cluster's folder: removed with it
    config = json.loads(Path(kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead.write_text(json.dumps(config))
    return KubernetesRuntime(namespace="default", kubeconfig=str(dead), timeout_s=5)
