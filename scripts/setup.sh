#!/usr/bin/env bash
# Make a checkout ready to test and serve; safe to run again (each step skips what is done).
#   1. pip install -e '.[test]'     (skipped while pyproject.toml is unchanged since the last install)
#   2. a Python base image          (python:3.12-slim if present or pullable, else one made from
#                                    Debian's packages: serverless-emulator/python-base:bookworm)
#   3. the sample worker images     (serverless-emulator/sample-NAME:latest; Docker's cache makes a
#                                    rebuild of unchanged samples take about a second each)
# Set EMULATOR_BASE_IMAGE to build the samples on another base image (step 2 is then skipped),
# VERBOSE=1 to see the output of docker build and debootstrap.
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
setup_started=$(now_ms)
pick_python
verbose=()
[ "${VERBOSE:-}" = 1 ] && verbose=(-v)

install_package() {
  local stamp=build/setup-stamp want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$PY" -c 'import sys; print(sys.prefix)')"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
     && "$PY" -c 'import pathlib, sys, emulator
sys.exit(pathlib.Path(emulator.__file__).resolve().parents[1] != pathlib.Path.cwd())' 2>/dev/null; then
    echo "    already installed from this checkout (pyproject.toml unchanged)"
    return 0
  fi
  echo "    $PY -m pip install -e '.[test]'"
  "$PY" -m pip install --quiet -e '.[test]' || return 1
  mkdir -p build && echo "$want" > "$stamp"
}

docker_answers() {
  command -v docker >/dev/null || die "the docker command is not installed (Debian: apt-get install docker.io)"
  timeout 20 docker version --format 'Docker engine {{.Server.Version}}' \
    || die "the Docker engine does not answer: start it (e.g. sudo systemctl start docker) and run this again"
}

step "install the package (Python: $PY)" install_package
step "check Docker" docker_answers
if [ -n "${EMULATOR_BASE_IMAGE:-}" ]; then
  echo "==> base image: EMULATOR_BASE_IMAGE=$EMULATOR_BASE_IMAGE (not building one)"
else
  step "base image (python -m emulator.images build-base)" "$PY" -m emulator.images build-base "${verbose[@]}"
fi
step "sample worker images (python -m emulator.images build-samples)" "$PY" -m emulator.images build-samples "${verbose[@]}"
echo "==> setup done in $(since "$setup_started")"
