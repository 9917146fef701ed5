# Creates (or reuses) the project's virtual environment in .venv and installs
# fxanalog into it. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FXANALOG_VENV:-$root/.venv}"
stamp="$venv/.fxanalog-installed"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned: on these machines 2.13.0 is a CPU build on local
  # disk, while a looser requirement would pull a several-GB CUDA build.
  "$venv/bin/python" -m pip install -q "torch==2.13.0"
  "$venv/bin/python" -m pip install -q -e "$root[demo,test]"
  touch "$stamp"
fi
PY="$venv/bin/python"
