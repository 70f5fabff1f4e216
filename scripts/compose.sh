#!/usr/bin/env bash
# docker compose for machines whose containers reach neither Docker Hub nor PyPI:
#   bash scripts/compose.sh up --build        (any compose arguments)
# First makes sure a Python base image exists (python:3.12-slim, else the local Debian one) and
# downloads, on the host, the wheels the emulator and the runpod-sdk sample install; then runs
# `docker compose` (v2) or `docker-compose` (v1) with EMULATOR_BASE_IMAGE set to that base image.
# Needs only python3 (3.11+) on the host: the package need not be installed.
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
started=$(now_ms)
echo "==> base image and wheels (python3 -m emulator.images prepare-compose)"
base=$(PYTHONPATH="$REPO_ROOT" "${PYTHON:-python3}" -m emulator.images prepare-compose ${EMULATOR_BASE_IMAGE:+--base-image "$EMULATOR_BASE_IMAGE"})
export EMULATOR_BASE_IMAGE="$base"
echo "    EMULATOR_BASE_IMAGE=$base ($(since "$started"))"
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  die "neither 'docker compose' nor 'docker-compose' is installed (Debian: apt-get install docker-compose)"
fi
echo "==> ${compose[*]} $*"
exec "${compose[@]}" "$@"
