"""EMULATOR_RUNTIME=kubernetes: the settings refuse to start without a worker URL Pods can reach."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from emulator.config import Settings
from emulator.runtime import make_runtime


def test_kubernetes_runtime_needs_a_worker_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMULATOR_RUNTIME", "kubernetes")
    with pytest.raises(ValidationError) as caught:
        Settings.load()
    assert "EMULATOR_WORKER_URL" in str(caught.value)
    monkeypatch.setenv("EMULATOR_WORKER_URL", "http://serverless-emulator.ml.svc:8001")
    monkeypatch.setenv("EMULATOR_KUBE_NAMESPACE", "ml")
    settings = Settings.load()
    assert settings.kube_options()["namespace"] == "ml"


async def test_make_runtime_builds_the_kubernetes_adapter_lazily(tmp_path: object) -> None:
    runtime = make_runtime("kubernetes", namespace="ml", kubeconfig="/nonexistent/kubeconfig")
    try:
        assert type(runtime).__name__ == "KubernetesRuntime"
        from emulator.errors import RuntimeUnavailable

        with pytest.raises(RuntimeUnavailable) as caught:
            await runtime.ping()  # no such kube config: unavailable, with the hint
        assert "kubectl get --raw /version" in caught.value.message
    finally:
        await runtime.close()  # type: ignore[attr-defined]
