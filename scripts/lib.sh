# shellcheck shell=bash
# Helpers shared by scripts/*.sh (sourced, not run): the repository root, timed steps, and which
# Python to use.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

die() { echo "error: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }
since() { local ms=$(( $(now_ms) - $1 )); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }

# step "title" command...: print what runs, run it, print how long it took.
step() {
  local title=$1 started
  shift
  echo "==> $title"
  started=$(now_ms)
  if ! "$@"; then
    echo "!!! $title: failed after $(since "$started")" >&2
    exit 1
  fi
  echo "    $title: $(since "$started")"
}

# pick_python: set PY to the Python the project is installed into, and put its scripts folder
# (where `serverless-emulator` lands) first on PATH. An active virtual environment wins; otherwise
# the project's own ./.venv, created on first use. Set-up never installs into the user's global
# Python (a global `pip install -e` can break another tool's pinned dependencies).
pick_python() {
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    PY="$VIRTUAL_ENV/bin/python"
  elif [ -x "$REPO_ROOT/.venv/bin/python" ]; then
    PY="$REPO_ROOT/.venv/bin/python"
  else
    PY="${PYTHON:-python3}"
    command -v "$PY" >/dev/null || die "$PY not found: install Python 3.11 or newer (or set PYTHON=...)"
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || die "Python 3.11 or newer needed; $PY is $("$PY" --version 2>&1)"
    echo "    creating the project's virtual environment in .venv (from $("$PY" --version 2>&1))"
    "$PY" -m venv "$REPO_ROOT/.venv" || die "could not create .venv (Debian: apt-get install python3-venv)"
    PY="$REPO_ROOT/.venv/bin/python"
  fi
  PATH="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  export PATH PY
}

# readme_command NAME: the command README.md marks with `<!-- NAME -->`: the first line after the
# marker that is not blank, a ``` fence or another HTML comment (a leading "$ " is dropped).
readme_command() {
  awk -v marker="<!-- $1 -->" '
    found && /^[[:space:]]*$/ { next }
    found && /^[[:space:]]*(```|<!--)/ { next }
    found { sub(/^[[:space:]]*\$[[:space:]]+/, ""); print; exit }
    index($0, marker) { found = 1 }
  ' README.md 2>/dev/null
}
