#!/usr/bin/env bash
# Runs the whole test suite (tests/, and every Python block of README.md and docs/).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
exec "$PY" -m pytest -q "$@"
