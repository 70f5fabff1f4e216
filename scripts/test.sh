#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the tests: bash scripts/test.sh [pytest arguments, e.g. -q -k echo]
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
bash scripts/setup.sh
pick_python
echo "==> $PY -m pytest $*"
started=$(now_ms)
rc=0
"$PY" -m pytest "$@" || rc=$?
echo "==> tests: $(since "$started") (pytest exit code $rc)"
exit "$rc"
