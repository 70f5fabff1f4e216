#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the tests: bash scripts/test.sh [pytest arguments, e.g. -q -k echo]
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
bash scripts/setup.sh
pick_python

# The dashboard test drives Debian's chromium through Playwright (no browser download is needed).
ensure_chromium() {
  command -v chromium >/dev/null && { echo "    $(chromium --version 2>/dev/null | head -1)"; return 0; }
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "    apt-get install chromium"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q chromium; } >/dev/null || return 1
    return 0
  fi
  echo "    chromium is not installed and cannot be installed here (not root): the browser test will skip"
  [ "${CI:-}" != true ]  # in CI the browser test must run
}
step "browser for the dashboard test" ensure_chromium

# The image-pull tests start Debian's container registry (docker-registry, with htpasswd from
# apache2-utils) on a loopback port; they skip without it outside CI.
ensure_registry() {
  command -v docker-registry >/dev/null && command -v htpasswd >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "    apt-get install docker-registry apache2-utils"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q docker-registry apache2-utils; } >/dev/null || return 1
    return 0
  fi
  echo "    docker-registry is not installed and cannot be installed here (not root): the registry tests will skip"
  [ "${CI:-}" != true ]  # in CI the registry tests must run
}
step "container registry for the image-pull tests" ensure_registry

# The Kubernetes runtime tests run a real kube-apiserver and kube-scheduler (v1.20, built once per
# machine from Debian's source package into ~/.cache by scripts/kubernetes.sh; a no-op once cached).
ensure_kubernetes() {
  bash scripts/kubernetes.sh >/dev/null && return 0  # needs root only for the first build
  echo "    kube-apiserver/kube-scheduler/etcd are not built (scripts/kubernetes.sh): the Kubernetes tests will skip"
  [ "${CI:-}" != true ]  # in CI the Kubernetes tests must run
}
step "Kubernetes API server and scheduler for the runtime tests" ensure_kubernetes

# Lint and types first: quick, and a failure here is cheaper to read than one in a test.
step "format (ruff format --check)" "$PY" -m ruff format --check emulator worker_sdk tests bench
step "lint (ruff check)" "$PY" -m ruff check emulator worker_sdk tests bench
step "types (mypy, strict: emulator, worker_sdk, tests)" "$PY" -m mypy
step "import rules (lint-imports)" lint-imports --no-cache
echo "==> $PY -m pytest --cov $*"
started=$(now_ms)
rc=0
# branch coverage is reported (term, skipping fully covered files), never enforced: no threshold to game
"$PY" -m pytest --cov --cov-report=term:skip-covered "$@" || rc=$?
echo "==> tests: $(since "$started") (pytest exit code $rc)"
exit "$rc"
