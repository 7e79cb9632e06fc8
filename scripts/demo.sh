#!/usr/bin/env bash
# The demo: the add-on service on the simulated meter + a real Home Assistant with the
# integration, at http://localhost:8123 (user demo / password energy-demo). Ctrl-C stops both.
# Extra arguments go to scripts/demo.py (e.g. --speed 60 to replay an hour a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
