#!/usr/bin/env bash
# Create or reuse the project venv at .venv/ (idempotent).
# Picks a Python >= 3.13 by itself: python3.13 on PATH, then pyenv.
# Usage: scripts/setup.sh [--with-models]   (adds the `models` extra: TensorFlow for training)
set -euo pipefail
with_models=0
case "${1:-}" in
    "") ;;
    --with-models) with_models=1 ;;
    *) echo "usage: $0 [--with-models]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.setup-complete"

find_python() {
    local cand
    for cand in python3.14 python3.13; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null; then
            command -v "$cand"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for cand in 3.13.0 3.13; do
            local prefix
            if prefix=$(pyenv prefix "$cand" 2>/dev/null) && [ -x "$prefix/bin/python3" ]; then
                echo "$prefix/bin/python3"; return 0
            fi
        done
    fi
    return 1
}

# The stamp records the hash of every requirements input (a change re-runs pip), plus a
# second line when the models extra went in too.
base=$(cat requirements-dev.txt addon/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
want=$base
[ "$with_models" = 1 ] && want="$base+models"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && grep -qx "$want" "$STAMP"; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    if ! PY=$(find_python); then
        echo "error: energy_tracker needs Python >= 3.13 (Home Assistant 2025.4)." >&2
        echo "       Install it (e.g. 'pyenv install 3.13.0') or put python3.13 on PATH." >&2
        exit 1
    fi
    echo "==> creating .venv with $PY ($("$PY" --version))"
    "$PY" -m venv "$VENV"
fi
echo "==> installing dependencies into .venv (a cold install takes about 5 minutes)"
# This machine's pip config lists local indexes that lack most projects; pip warns once per
# project about each. Those lines say nothing about our install, so they are filtered out.
pip_install() {
    "$VENV/bin/python" -m pip install --quiet "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}
pip_install --upgrade pip
pip_install -r requirements-dev.txt
if [ "$with_models" = 1 ]; then
    echo "==> installing the models extra too (TensorFlow, about 1.3 GB)"
    pip_install -e '.[models]'
    printf '%s\n%s\n' "$base" "$base+models" > "$STAMP"
else
    pip_install --no-deps -e .
    echo "$base" > "$STAMP"
fi
echo "==> .venv ready"
