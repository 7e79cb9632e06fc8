#!/usr/bin/env bash
# Run every check the project promises: lint, types, the whole test suite with coverage.
# Usage: ./scripts/test.sh [extra pytest options, e.g. -x or -k NAME; both pytest runs get
# them, so no test paths; with options the 95 % coverage gate is not applied]
set -euo pipefail
cd "$(dirname "$0")/.."
# The models extra too: the training and export tests need TensorFlow.
./scripts/setup.sh --with-models
VENV=.venv/bin
echo "==> ruff"
"$VENV/ruff" check .
echo "==> mypy --strict (integration and add-on service)"
"$VENV/mypy" custom_components/energy_tracker addon/energy_tracker_addon
echo "==> pytest: the add-on's own tests, on the image's pins (.venv-addon)"
rm -f .coverage
# Exit 5 (nothing selected): a -k that matches only the other run's tests.
.venv-addon/bin/python -m pytest tests/addon --cov=energy_tracker_addon --cov-report= "$@" \
    || [ $? -eq 5 ]
echo "==> pytest: everything else (.venv: Home Assistant, the integration, models, e2e)"
"$VENV/python" -m pytest --cov-append \
    --cov=custom_components/energy_tracker --cov=energy_tracker_addon \
    --cov-report=term-missing:skip-covered "$@" || [ $? -eq 5 ]
[ $# -eq 0 ] || exit 0  # a selection: coverage of part of the suite says nothing
# The integration's own coverage must stay >= 95 %; silent when it does, so pytest's
# summary stays the last line.
if ! "$VENV/coverage" report --include="custom_components/*" --fail-under=95 >/dev/null; then
    "$VENV/coverage" report --include="custom_components/*" | tail -1
    echo "error: integration coverage is below 95 %" >&2
    exit 1
fi
