"""The kubelet stand-in for the test cluster (``kube_cluster``): fake nodes, Pod lifecycle, logs over HTTPS.

It watches Pods with the official client, as kwok does for real: marks Pods the scheduler bound Running,
plays the contract harness' scenarios by the Pod's ``args`` (exit codes, log lines), runs the supervisor's
worker Pods as processes (``kube_workers``), honours graceful deletion and ``activeDeadlineSeconds``, and
serves ``/containerLogs`` over HTTPS, which the API server proxies for ``pods/log``.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from emulator.runtime.kube_docs import CONTAINER, MANAGED_BY
from tests.runtime.harness import BASE_IMAGE, SCENARIOS
from tests.runtime.kube_workers import WorkerProcesses

if TYPE_CHECKING:
    from tests.runtime.kube_cluster import KubeCluster


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    def __init__(self, cluster: KubeCluster, run_workers: bool = True) -> None:
        self.cluster = cluster
        self.client: Any = cluster.api()
        self.core: Any = kubernetes.client.CoreV1Api(self.client)  # untyped use: raw JSON documents
        self.logs: dict[str, _PodLogs] = {}
        self.handled: set[str] = set()
        self.ending: set[str] = set()  # worker processes being stopped by a delete or a deadline
        self.workers = WorkerProcesses()  # the supervisor's worker Pods, as processes (kube_workers)
        self.run_workers = run_workers  # False: worker Pods only run (a bench simulates their contact)
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
        if (
            scenario is None and "RUNPOD_WEBHOOK_GET_JOB" in env and self.run_workers
        ):  # a worker of the supervisor: run it
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
