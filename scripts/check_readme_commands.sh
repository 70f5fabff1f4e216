#!/usr/bin/env bash
# Runs README.md's two commands on a fresh clone, so that README and scripts cannot drift apart.
# It reads the command after the marker `<!-- test-command -->` and the one after
# `<!-- serve-command -->` in README.md (see readme_command in scripts/lib.sh), then, in a clone of
# this repository's HEAD (committed work only), in its own virtual environment:
#   1. runs the test command and needs it to pass;
#   2. starts the serve command in the background, waits for GET /ping, sends a runsync to the
#      echo endpoint with curl and checks its output, then stops the server by its PID (SIGTERM)
#      and checks that it exits.
#   3. checks that the global Python (python3 outside any virtual environment) has the same installed
#      packages before and after: set-up must install into the project's .venv, never globally.
# Usage: bash scripts/check_readme_commands.sh [--here]   (--here: use this checkout, no clone)
# Env: PORT (default 8000), PING_TIMEOUT_S (600), SKIP_TESTS=1 to check only the serve command.
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
PORT=${PORT:-8000}
PING_TIMEOUT_S=${PING_TIMEOUT_S:-600}
BASE="http://127.0.0.1:$PORT"
check_started=$(now_ms)

test_cmd=$(readme_command test-command)
serve_cmd=$(readme_command serve-command)
[ -n "$test_cmd" ] || die "README.md has no command after <!-- test-command -->"
[ -n "$serve_cmd" ] || die "README.md has no command after <!-- serve-command -->"
echo "README test command:  $test_cmd"
echo "README serve command: $serve_cmd"

if [ "${1:-}" != "--here" ]; then
  work=$(mktemp -d -t readme-check-XXXXXX)
  [ -z "$(git status --porcelain)" ] || echo "note: uncommitted changes are not part of the clone"
  git clone -q "$REPO_ROOT" "$work/repo"
  # CI clones keep shared/ beside the repository; do the same when it is there.
  [ -e "$REPO_ROOT/../shared" ] && ln -s "$(cd "$REPO_ROOT/../shared" && pwd)" "$work/shared"
  cd "$work/repo"
  echo "fresh clone: $work/repo"
  # As a new user runs them: no virtual environment active, so the commands make the clone's own .venv
  # (and `pip install -e .` there does not re-point this checkout's).
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$VIRTUAL_ENV/bin" | paste -sd: -)
    unset VIRTUAL_ENV
    export PATH
  fi
fi

# The global Python (python3 on PATH outside any virtual environment) and its installed distributions,
# to compare after the commands.
outside_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF -e "${VIRTUAL_ENV:-/nonexistent}/bin" \
  -e "$PWD/.venv/bin" | paste -sd: -)
global_python=$(PATH="$outside_path" command -v "${PYTHON:-python3}") || die "no ${PYTHON:-python3} on PATH"
global_packages() {  # from / so that the checkout's own *.egg-info (cwd on sys.path) is not counted
  (cd / && env -u PYTHONPATH -u VIRTUAL_ENV "$global_python" -c '
import importlib.metadata as m
print("\n".join(sorted(d.name + "==" + d.version + " " + str(d.locate_file("")) for d in m.distributions())))')
}
packages_before=$(global_packages)
echo "global Python: $global_python ($(printf '%s\n' "$packages_before" | grep -c .) distributions)"

if curl -s -o /dev/null "$BASE/ping"; then
  die "something already answers on port $PORT; stop it or set PORT"
fi

if [ "${SKIP_TESTS:-}" != 1 ]; then
  step "README test command: $test_cmd" bash -c "$test_cmd"
fi

log=$(mktemp -t readme-serve-XXXXXX.log)
echo "==> README serve command in the background: $serve_cmd (log: $log)"
serve_started=$(now_ms)
port_arg=""
[ "$PORT" = 8000 ] || port_arg=" --port $PORT"  # the serve command passes options on to `serve`
setsid bash -c "$serve_cmd$port_arg" >"$log" 2>&1 </dev/null &
pid=$!
stop_server() {
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  echo "!!! the server (PID $pid) did not stop within 30 s of SIGTERM; killing its process group" >&2
  kill -KILL -- "-$pid" 2>/dev/null || true
  return 1
}
trap 'stop_server >/dev/null 2>&1 || true' EXIT

fail() { echo "!!! $*" >&2; echo "--- the end of the server's log:" >&2; tail -n 40 "$log" >&2; exit 1; }

deadline=$(( $(date +%s) + PING_TIMEOUT_S ))
until curl -sf -o /dev/null "$BASE/ping"; do
  kill -0 "$pid" 2>/dev/null || fail "the serve command exited before answering GET /ping"
  [ "$(date +%s)" -lt "$deadline" ] || fail "no answer from GET /ping within $PING_TIMEOUT_S s"
  sleep 0.5
done
echo "    GET /ping answered after $(since "$serve_started")"

auth=()
[ -n "${EMULATOR_API_KEY:-}" ] && auth=(-H "Authorization: Bearer $EMULATOR_API_KEY")
runsync_started=$(now_ms)
answer=$(curl -s --max-time 180 -X POST "$BASE/v2/echo/runsync" "${auth[@]}" \
  -H 'Content-Type: application/json' -d '{"input": {"message": "hello from the README check"}}') \
  || fail "POST /v2/echo/runsync failed"
echo "    runsync answered in $(since "$runsync_started"): $answer"
python3 -c '
import json, sys
answer = json.loads(sys.argv[1])
assert answer.get("status") == "COMPLETED", answer
assert answer.get("output") == {"message": "hello from the README check"}, answer
' "$answer" || fail "runsync on echo did not complete with the echoed input"

stop_started=$(now_ms)
stop_server || fail "the server did not stop on SIGTERM"
wait "$pid" 2>/dev/null && code=0 || code=$?
echo "    the server stopped in $(since "$stop_started") (exit code $code)"
packages_after=$(global_packages)
if [ "$packages_before" != "$packages_after" ]; then
  diff <(printf '%s\n' "$packages_before") <(printf '%s\n' "$packages_after") >&2 || true
  die "the README commands changed the global Python's packages ($global_python)"
fi
echo "    the global Python's packages are unchanged ($global_python)"
echo "==> README commands OK in $(since "$check_started")"
if [ -n "${work:-}" ]; then
  rm -rf "$work"  # the clone and its virtual environment; kept when a check failed
fi
