#!/usr/bin/env bash
# Re-resolve scripts/dev.lock, the exact versions the README's install uses (pip's -c), from
# pyproject.toml's ranges: one universal lock (Linux, macOS; Python >= 3.11) made by uv.
# Afterwards: install through it in a fresh venv and run the tests (README "Refreshing the lock").
set -euo pipefail
cd "$(dirname "$0")/.."
uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
    --no-emit-package sed -o scripts/dev.lock "$@"
