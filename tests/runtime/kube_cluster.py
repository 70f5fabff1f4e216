"""A real Kubernetes control plane on loopback for the Kubernetes runtime's tests, plus a kubelet stand-in.

``KubeCluster.start`` runs Debian's etcd and the kube-apiserver and kube-scheduler 1.20 built by
``scripts/kubernetes.sh`` (from its cache folder) on free loopback ports, with a private CA, a static
token (in ``system:masters``) and RBAC. There is no kubelet: ``Kubelet`` (a thread using the official client, as kwok
does for real) registers fake nodes (optionally with ``nvidia.com/gpu``), marks Pods the scheduler bound
Running, plays the contract harness' scenarios by the Pod's ``args`` (exit codes, log lines), honours
graceful deletion and ``activeDeadlineSeconds``, and serves ``/containerLogs`` over HTTPS, which the API
server proxies for ``pods/log``. Nothing touches Docker.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from emulator.runtime.kube_docs import CONTAINER, MANAGED_BY
from emulator.runtime.kubernetes import KubernetesRuntime
from tests.runtime.harness import BASE_IMAGE, SCENARIOS
from tests.runtime.kube_workers import WorkerProcesses

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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class _PodLogs:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ended = False
        self.changed = threading.Condition()

    def add(self, line: str) -> None:
        with self.changed:
            self.lines.append(line)
            self.changed.notify_all()

    def end(self) -> None:
        with self.changed:
            self.ended = True
            self.changed.notify_all()


class Kubelet:
    """The kubelet stand-in: fake nodes, Pod lifecycle by scenario, and the HTTPS log endpoint."""

    def __init__(self, cluster: KubeCluster) -> None:
        self.cluster = cluster
        self.client: Any = cluster.api()
        self.core: Any = kubernetes.client.CoreV1Api(self.client)  # untyped use: raw JSON documents
        self.logs: dict[str, _PodLogs] = {}
        self.handled: set[str] = set()
        self.ending: set[str] = set()  # worker processes being stopped by a delete or a deadline
        self.workers = WorkerProcesses()  # the supervisor's worker Pods, as processes (kube_workers)
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server = self._log_server()
        self.port: int = self.server.server_address[1]

    # --- nodes -------------------------------------------------------------------------------
    def add_nodes(self, count: int, gpus: int = 0, prefix: str = "node") -> list[str]:
        names = []
        for index in range(count):
            name = f"{prefix}-{index}"
            self.core.create_node({"metadata": {"name": name}})
            capacity = {"cpu": "16", "memory": "64Gi", "pods": "110"}
            if gpus:
                capacity["nvidia.com/gpu"] = str(gpus)
            status = {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastHeartbeatTime": _now(),
                        "lastTransitionTime": _now(),
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                "images": [{"names": [BASE_IMAGE], "sizeBytes": 1}],
            }
            self.core.patch_node_status(name, {"status": status})
            names.append(name)
        return names

    # --- pods --------------------------------------------------------------------------------
    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="kubelet-stand-in", daemon=True)
        thread.start()
        self._threads.append(thread)
        server = threading.Thread(target=self.server.serve_forever, name="kubelet-logs", daemon=True)
        server.start()
        self._threads.append(server)

    def stop(self) -> None:
        self.stopping.set()
        self.workers.stop_all()
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(10)
        self.client.close()

    def _run(self) -> None:
        version = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    listed = json.loads(
                        self.core.list_pod_for_all_namespaces(
                            label_selector="=".join(MANAGED_BY), _preload_content=False
                        ).data
                    )
                    version = listed["metadata"]["resourceVersion"]
                    for pod in listed["items"]:
                        self._on_pod(pod)
                stream = self.core.list_pod_for_all_namespaces(
                    label_selector="=".join(MANAGED_BY),
                    watch=True,
                    resource_version=version,
                    timeout_seconds=2,
                    _preload_content=False,
                    _request_timeout=(5, 10),
                )
                for line in stream:
                    for part in line.splitlines():
                        if not part.strip():
                            continue
                        event = json.loads(part)
                        if event["type"] == "ERROR":
                            version = None
                            break
                        version = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] != "DELETED":
                            self._on_pod(event["object"])
                stream.release_conn()
            except Exception:
                if self.stopping.wait(0.2):
                    return

    def _on_pod(self, pod: dict[str, Any]) -> None:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        ns, name = meta["namespace"], meta["name"]
        key = f"{ns}/{name}"
        phase = status.get("phase")
        if key in self.ending:
            if meta.get("deletionTimestamp") and not self.workers.running(key):
                _ignore_404(lambda: self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0))
            return
        if self.workers.running(key) and (meta.get("deletionTimestamp") or spec.get("activeDeadlineSeconds")):
            self.ending.add(key)
            deleting = bool(meta.get("deletionTimestamp"))
            grace_s = float(spec.get("terminationGracePeriodSeconds") or 0)
            threading.Thread(target=self._end_worker, args=(ns, name, deleting, grace_s), daemon=True).start()
            return
        if meta.get("deletionTimestamp"):
            if phase == "Running":
                self._terminate(ns, name, 0, "Completed", "Succeeded")  # the sleeper handles SIGTERM
            self._log(key).end()
            _ignore_404(lambda: self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0))
            return
        if phase == "Running" and spec.get("activeDeadlineSeconds") is not None:
            self._terminate(
                ns,
                name,
                137,
                "Error",
                "Failed",
                reason="DeadlineExceeded",
                message="Pod was active on the node longer than the specified deadline",
            )
            self._log(key).end()
            return
        if not spec.get("nodeName") or phase != "Pending" or key in self.handled:
            return
        self.handled.add(key)
        args = tuple(spec["containers"][0].get("args") or ())
        scenario = next((n for n, (cmd, _) in SCENARIOS.items() if tuple(cmd) == args), None)
        env = {e["name"]: e.get("value", "") for e in spec["containers"][0].get("env") or []}
        self._set_status(ns, name, "Running", {"running": {"startedAt": _now()}})
        if scenario is None and "RUNPOD_WEBHOOK_GET_JOB" in env:  # a worker of the supervisor: run it
            self.workers.spawn(key, env, self._log(key).add, lambda code: self._worker_exited(ns, name, code))
            return
        behavior = SCENARIOS[scenario or "sleep"][1]
        if behavior.exit_code is None:
            for line in behavior.logs:
                self._log(key).add(line)
            return

        def play() -> None:
            for line in behavior.logs:
                self._log(key).add(line)
                time.sleep(0.1)
            code = int(behavior.exit_code or 0)
            self._terminate(
                ns, name, code, "Completed" if code == 0 else "Error", "Succeeded" if code == 0 else "Failed"
            )
            self._log(key).end()

        threading.Thread(target=play, daemon=True).start()

    def _worker_exited(self, ns: str, name: str, code: int) -> None:
        key = f"{ns}/{name}"
        if key in self.ending or self.stopping.is_set():
            return  # a delete or a deadline ended it: that path reports
        self._terminate(
            ns, name, code, "Completed" if code == 0 else "Error", "Succeeded" if code == 0 else "Failed"
        )
        self._log(key).end()

    def _end_worker(self, ns: str, name: str, deleting: bool, grace_s: float) -> None:
        """A deleted Pod: SIGTERM, SIGKILL after the grace, then gone; a deadline: SIGKILL, Failed."""
        key = f"{ns}/{name}"
        if deleting:
            self.workers.stop(key, min(grace_s, 5.0))
            self._log(key).end()
            _ignore_404(lambda: self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0))
            return
        self.workers.kill(key)
        self._terminate(
            ns,
            name,
            137,
            "Error",
            "Failed",
            reason="DeadlineExceeded",
            message="Pod was active on the node longer than the specified deadline",
        )
        self._log(key).end()

    def _log(self, key: str) -> _PodLogs:
        return self.logs.setdefault(key, _PodLogs())

    def _terminate(self, ns: str, name: str, code: int, why: str, phase: str, **pod_fields: str) -> None:
        started = _now()
        try:
            current = json.loads(self.core.read_namespaced_pod_status(name, ns, _preload_content=False).data)
        except ApiException:
            return
        for entry in (current.get("status") or {}).get("containerStatuses") or []:
            started = ((entry.get("state") or {}).get("running") or {}).get("startedAt") or started
        state = {"terminated": {"exitCode": code, "reason": why, "startedAt": started, "finishedAt": _now()}}
        self._set_status(ns, name, phase, state, **pod_fields)

    def _set_status(self, ns: str, name: str, phase: str, state: dict[str, Any], **pod_fields: str) -> None:
        status = {
            "phase": phase,
            "podIP": "10.244.0.1",
            "hostIP": "127.0.0.1",
            "startTime": _now(),
            "containerStatuses": [
                {
                    "name": CONTAINER,
                    "state": state,
                    "ready": "running" in state,
                    "restartCount": 0,
                    "image": BASE_IMAGE,
                    "imageID": "",
                    "started": "running" in state,
                }
            ],
            **pod_fields,
        }
        _ignore_404(lambda: self.core.patch_namespaced_pod_status(name, ns, {"status": status}))

    # --- logs over HTTPS -----------------------------------------------------------------------
    def _log_server(self) -> http.server.ThreadingHTTPServer:
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # /containerLogs/{ns}/{pod}/{container}?tailLines=&follow=
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404)
                    return
                query = parse_qs(url.query)
                logs = kubelet._log(f"{parts[1]}/{parts[2]}")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                with logs.changed:
                    lines = list(logs.lines)
                sent = len(lines)
                if "tailLines" in query:
                    tail = int(query["tailLines"][0])
                    lines = lines[-tail:] if tail else []
                self.wfile.write("".join(f"{line}\n" for line in lines).encode())
                self.wfile.flush()
                if query.get("follow") != ["true"]:
                    return
                while not kubelet.stopping.is_set():
                    with logs.changed:
                        logs.changed.wait(0.2)
                        fresh, ended = logs.lines[sent:], logs.ended
                    sent += len(fresh)
                    try:
                        self.wfile.write("".join(f"{line}\n" for line in fresh).encode())
                        self.wfile.flush()
                    except OSError:
                        return
                    if ended:
                        return

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cluster.cert), str(self.cluster.key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        return server


def _ignore_404(call: Callable[[], Any]) -> None:
    try:
        call()
    except ApiException as exc:
        if exc.status not in (404, 409):
            raise


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
