# Creates (or reuses) the project's virtual environment in .venv and installs
# fxanalog into it. Sourced by scripts/demo.sh and scripts/test.sh.
#   FXANALOG_VENV=/path   use another environment folder
#   FXANALOG_PYTHON=exe   the Python that creates it (default: python3)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FXANALOG_VENV:-$root/.venv}"
stamp="$venv/.fxanalog-installed"
if [ ! -x "$venv/bin/python" ]; then
  base="${FXANALOG_PYTHON:-python3}"
  if ! command -v "$base" >/dev/null 2>&1; then
    echo "fxanalog: '$base' not found; install Python 3.10 or newer (or set FXANALOG_PYTHON)" >&2
    exit 1
  fi
  if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "fxanalog: $("$base" --version 2>&1) is too old; Python 3.10 or newer is needed (set FXANALOG_PYTHON)" >&2
    exit 1
  fi
  echo "fxanalog: creating the virtual environment $venv" >&2
  "$base" -m venv "$venv"
fi
# Reinstalled when the packaging or a C extension (built by the install) changes.
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$root/setup.py" -nt "$stamp" ] \
  || [ "$root/fxanalog/_normal.c" -nt "$stamp" ] || [ "$root/fxanalog/_pulsed.c" -nt "$stamp" ] \
  || [ "$root/fxanalog/_periphery.c" -nt "$stamp" ] || [ "$root/fxanalog/_ziggurat.h" -nt "$stamp" ]; then
  echo "fxanalog: installing torch==2.13.0 and fxanalog[demo,test] into $venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned: on these machines 2.13.0 is a CPU build on local
  # disk, while a looser requirement would pull a several-GB CUDA build.
  "$venv/bin/python" -m pip install -q "torch==2.13.0"
  "$venv/bin/python" -m pip install -q -e "$root[demo,test]"
  touch "$stamp"
fi
PY="$venv/bin/python"
