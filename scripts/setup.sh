#!/usr/bin/env bash
# Create or reuse the project venvs (idempotent): .venv/ (Home Assistant 2025.4, the
# integration, models, every test but the add-on's own) and .venv-addon/ (the add-on
# service with exactly the image's pins, addon/requirements.txt: its tests and the
# demo's add-on process run there).
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
ADDON_VENV="$ROOT/.venv-addon"
ADDON_STAMP="$ADDON_VENV/.setup-complete"

find_python() {
    local cand
    # 3.13 first: the pins (numpy 2.2, Home Assistant 2025.4) have wheels for it, not all
    # for 3.14.
    for cand in python3.13 python3 python3.14; do
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

# This machine's pip config lists local indexes that lack most projects; pip warns once per
# project about each. Those lines say nothing about our install, so they are filtered out.
pip_install() {
    local venv=$1
    shift
    "$venv/bin/python" -m pip install --quiet "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}

new_venv() {
    local venv=$1 py
    # Only a whole one is reused: an interrupted venv or ensurepip (Debian without
    # python3.13-venv) leaves bin/python without pip, and every later run failed alike.
    if [ -x "$venv/bin/python" ]; then
        if "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null \
                && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
            return 0
        fi
        echo "==> $(basename "$venv") is incomplete or too old: creating it again"
        rm -rf "$venv"
    fi
    if ! py=$(find_python); then
        echo "error: energy_tracker needs Python >= 3.13 (Home Assistant 2025.4)." >&2
        echo "       Install it (e.g. 'pyenv install 3.13.0') or put python3.13 on PATH." >&2
        exit 1
    fi
    echo "==> creating $(basename "$venv") with $py ($("$py" --version))"
    "$py" -m venv "$venv"
}

# Each stamp records the hash of the requirements inputs of its venv (a change re-runs
# pip), plus a second line in .venv's when the models extra went in too.
addon_want=$(cat requirements-addon-test.txt addon/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if ! { [ -x "$ADDON_VENV/bin/python" ] && [ -f "$ADDON_STAMP" ] && grep -qx "$addon_want" "$ADDON_STAMP"; }; then
    new_venv "$ADDON_VENV"
    echo "==> installing the add-on's pinned requirements into .venv-addon (about a minute)"
    pip_install "$ADDON_VENV" --upgrade pip
    pip_install "$ADDON_VENV" -r requirements-addon-test.txt
    pip_install "$ADDON_VENV" --no-deps -e .
    echo "$addon_want" > "$ADDON_STAMP"
    echo "==> .venv-addon ready"
fi

base=$(cat requirements-dev.txt addon/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
want=$base
[ "$with_models" = 1 ] && want="$base+models"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && grep -qx "$want" "$STAMP"; then
    exit 0
fi

new_venv "$VENV"
echo "==> installing dependencies into .venv (a cold install takes about 5 minutes)"
# The add-on's requirements but aiohttp: Home Assistant pins its own, and the add-on code
# runs in-process beside it in the integration tests (its own pins are .venv-addon's).
grep -v '^aiohttp==' addon/requirements.txt > "$VENV/addon-requirements.txt"
pip_install "$VENV" --upgrade pip
pip_install "$VENV" -r requirements-dev.txt -r "$VENV/addon-requirements.txt"
pip_install "$VENV" --no-deps -e .
if [ "$with_models" = 1 ]; then
    echo "==> installing the models extra too (TensorFlow, about 1.3 GB)"
    # Listed by pyproject.toml; installed by name, as the package's own dependencies
    # (addon/requirements.txt) hold an aiohttp Home Assistant's pin refuses.
    mapfile -t extra < <("$VENV/bin/python" -c 'import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["models"]))')
    pip_install "$VENV" "${extra[@]}"
    printf '%s\n%s\n' "$base" "$base+models" > "$STAMP"
else
    echo "$base" > "$STAMP"
fi
echo "==> .venv ready"
