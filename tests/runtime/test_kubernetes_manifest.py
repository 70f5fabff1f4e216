"""deploy/kubernetes/serverless-emulator.yaml on the real kube-apiserver 1.20 (RBAC on): every object is
accepted, the service account may do what the Kubernetes runtime does (SubjectAccessReview) and no more,
and the Deployment's environment makes valid in-cluster settings whose worker URL is the Service's.

No controller-manager runs here, so the Deployment makes no Pod: the control plane in a Pod stays on paper.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes.client
import kubernetes.utils
import pytest
import yaml

from emulator.config import Settings
from tests.runtime.kube_cluster import Running

pytestmark = pytest.mark.kubernetes
MANIFEST = Path(__file__).resolve().parents[2] / "deploy/kubernetes/serverless-emulator.yaml"
NAME = "serverless-emulator"
_create: Any = kubernetes.utils.create_from_dict  # untyped
# (namespaced, verb, resource, subresource): what emulator/runtime/kubernetes.py calls
NEEDED = [
    (True, "create", "pods", ""),
    (True, "get", "pods", ""),
    (True, "list", "pods", ""),
    (True, "watch", "pods", ""),
    (True, "patch", "pods", ""),
    (True, "delete", "pods", ""),
    (True, "get", "pods", "log"),
    (True, "create", "persistentvolumeclaims", ""),
    (False, "list", "nodes", ""),
]
NOT_GRANTED = [
    (True, "get", "secrets", ""),
    (True, "create", "deployments", ""),
    (False, "delete", "nodes", ""),
    (False, "create", "namespaces", ""),
]


def _documents(namespace: str, suffix: str) -> list[dict[str, Any]]:
    """The manifest moved to ``namespace`` (cluster-wide names get ``suffix``), as the test creates it."""
    text = MANIFEST.read_text().replace(f"{NAME}.{NAME}.svc", f"{NAME}.{namespace}.svc")
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            meta["name"] = namespace
        elif doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            meta["name"] += suffix
        else:
            meta["namespace"] = namespace
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] += suffix
        for subject in doc.get("subjects") or []:
            subject["namespace"] = namespace
    return docs


def _allowed(api: Any, user: str, namespace: str, check: tuple[bool, str, str, str]) -> bool:
    namespaced, verb, resource, sub = check
    attributes = {"verb": verb, "resource": resource, "group": "", "subresource": sub}
    if namespaced:
        attributes["namespace"] = namespace
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ],
            "resourceAttributes": attributes,
        },
    }
    authorization: Any = kubernetes.client.AuthorizationV1Api(api)
    answer = authorization.create_subject_access_review(review)
    return bool(answer.status.allowed)


def test_the_manifest_is_accepted_and_grants_what_the_runtime_needs(kube_cluster: Running) -> None:
    suffix = "-" + uuid.uuid4().hex[:8]
    namespace = f"se-deploy{suffix}"
    api = kube_cluster.kubelet.client
    docs = _documents(namespace, suffix)
    core: Any = kubernetes.client.CoreV1Api(api)
    rbac: Any = kubernetes.client.RbacAuthorizationV1Api(api)
    try:
        for doc in docs:
            _create(api, doc)
        user = f"system:serviceaccount:{namespace}:{NAME}"
        assert [c for c in NEEDED if not _allowed(api, user, namespace, c)] == []
        assert [c for c in NOT_GRANTED if _allowed(api, user, namespace, c)] == []
        assert not _allowed(api, user, "default", (True, "create", "pods", ""))  # only its own namespace

        apps: Any = kubernetes.client.AppsV1Api(api)
        deployment = apps.read_namespaced_deployment(NAME, namespace)
        [container] = deployment.spec.template.spec.containers
        env: dict[str, str] = {}
        for item in container.env:
            if item.value_from is not None:
                assert item.value_from.field_ref.field_path == "metadata.namespace"
                env[item.name] = namespace
            else:
                env[item.name] = item.value
        fields: dict[str, Any] = {k.removeprefix("EMULATOR_").lower(): v for k, v in env.items()}
        settings = Settings(**fields)
        assert settings.runtime == "kubernetes" and settings.kube_options()["in_cluster"] is True
        assert settings.kube_options()["namespace"] == namespace
        service = core.read_namespaced_service(NAME, namespace)
        [worker_port] = [p for p in service.spec.ports if p.name == "worker"]
        url = urlparse(settings.worker_url or "")
        assert (url.hostname, url.port) == (f"{NAME}.{namespace}.svc", worker_port.port)
        ports = {p.name: p.container_port for p in container.ports}
        assert ports[worker_port.target_port] == settings.worker_port
        assert deployment.spec.template.spec.service_account_name == NAME
        assert deployment.spec.strategy.type == "Recreate" and deployment.spec.replicas == 1
        claim = container.volume_mounts[0]
        assert claim.mount_path == str(settings.data_dir)
    finally:
        for kind, name in (("ClusterRoleBinding", NAME + "-nodes"), ("ClusterRole", NAME + "-nodes")):
            delete = (
                rbac.delete_cluster_role_binding if kind == "ClusterRoleBinding" else rbac.delete_cluster_role
            )
            try:
                delete(name + suffix)
            except kubernetes.client.exceptions.ApiException as exc:
                if exc.status != 404:
                    raise
        try:
            core.delete_namespace(namespace)
        except kubernetes.client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
