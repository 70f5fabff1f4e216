#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the emulator with the sample endpoints of examples/endpoints.toml:
#   bash scripts/serve.sh [more serve options, e.g. --port 8080]
# Stop it with Ctrl-C (or SIGTERM): its workers are drained and removed.
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
bash scripts/setup.sh
pick_python
echo "==> serverless-emulator serve --config examples/endpoints.toml $*"
exec serverless-emulator serve --config examples/endpoints.toml "$@"
