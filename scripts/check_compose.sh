#!/usr/bin/env bash
# Checks the Compose set-up as a user meets it: `up -d` (with --wait on Compose v2), the emulator's
# healthcheck, one job on the runpod-sdk sample (RunPod's own SDK, which ignores SIGTERM), then `down`,
# which must leave no worker container behind, within Compose's stop grace.
# Usage: bash scripts/check_compose.sh      Env: EMULATOR_PORT (default 18000), COMPOSE_PROJECT_NAME
# (default serverless-emulator-check). Builds through scripts/compose.sh (local base image, host wheels).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
export EMULATOR_PORT=${EMULATOR_PORT:-18000} COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-serverless-emulator-check}
BASE="http://127.0.0.1:$EMULATOR_PORT"
if docker compose version >/dev/null 2>&1; then
  plain=(docker compose) wait_flag=(--wait)  # Compose v2; v1 has no --wait
else
  plain=(docker-compose) wait_flag=()
fi
compose() { "${plain[@]}" "$@"; }
cleanup() { compose down -v >/dev/null 2>&1 || true; }
trap cleanup EXIT

started=$(now_ms)
# (scripts/compose.sh: the local base image and host wheels first, for machines without registry access)
step "compose up -d ${wait_flag[*]} --build" bash "$REPO_ROOT/scripts/compose.sh" up -d "${wait_flag[@]}" --build
echo "==> waiting for the emulator's healthcheck"
for _ in $(seq 120); do
  health=$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q emulator)" 2>/dev/null || echo none)
  [ "$health" = healthy ] && break
  sleep 1
done
[ "$health" = healthy ] || die "the emulator container is not healthy ($health)"
echo "    healthy after $(since "$started")"

answer=$(curl -s --max-time 300 -X POST "$BASE/v2/runpod-sdk/runsync" -H 'Content-Type: application/json' \
  -d '{"input": {"message": "compose check"}}')
echo "    runsync on runpod-sdk: $answer"
case "$answer" in *'"COMPLETED"'*) ;; *) die "the job on runpod-sdk did not complete";; esac
workers=$(curl -s "$BASE/v1/endpoints/runpod-sdk/workers" | python3 -c '
import json, sys
print(" ".join(w["containerId"] for w in json.load(sys.stdin)["workers"] if w.get("containerId")))')
[ -n "$workers" ] || die "no worker container listed for runpod-sdk"
echo "    worker container(s): $workers"

down_started=$(now_ms)
step "compose down" compose down
echo "    down took $(since "$down_started")"
left=()
for container in $workers; do
  docker inspect "$container" >/dev/null 2>&1 && left+=("$container")
done
if [ ${#left[@]} -gt 0 ]; then
  docker rm -f "${left[@]}" >/dev/null
  die "compose down left worker container(s) behind: ${left[*]}"
fi
echo "==> compose check OK in $(since "$started"): no worker container left after down"
