#!/usr/bin/env bash
# The main job: trains a small CNN, compiles it to analog tiles and reports
# its accuracy over time on PCM hardware. Extra arguments go to `fxanalog demo`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
exec "$PY" -m fxanalog demo "$@"
