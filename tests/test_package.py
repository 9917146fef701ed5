"""The package layout: pyproject.toml, the installed metadata, the import names.

Checks that run against the installed distribution use a subprocess in an
empty directory, so the source tree on ``sys.path`` cannot hide a packaging
mistake.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from buildenv import can_build_c_extension

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _run(code: str, tmp_path) -> dict:
    """Run ``code`` in a fresh interpreter outside the source tree; it prints JSON."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_project_metadata():
    from packaging.specifiers import SpecifierSet
    from packaging.requirements import Requirement

    project = PYPROJECT["project"]
    assert project["name"] == "fxanalog"
    assert "3.10" in SpecifierSet(project["requires-python"])
    assert "3.9" not in SpecifierSet(project["requires-python"])
    deps = {Requirement(d).name: Requirement(d) for d in project["dependencies"]}
    assert set(deps) == {"torch", "triton", "networkx"}
    # the set-up installs torch 2.13.0 first; the range must keep it
    assert "2.13.0" in deps["torch"].specifier
    assert deps["triton"].marker.evaluate({"sys_platform": "linux"})
    assert not deps["triton"].marker.evaluate({"sys_platform": "darwin"})
    extras = project["optional-dependencies"]
    names = {k: {Requirement(r).name for r in v} for k, v in extras.items()}
    assert {"scikit-learn", "matplotlib", "tqdm"} <= names["demo"]
    assert {"pytest", "scikit-learn", "matplotlib", "tqdm", "packaging"} <= names["test"]
    assert "dev" in names


PACKAGE_DIR = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]


def package_folder(name: str) -> Path:
    """The source folder of package ``name`` as setuptools finds it: the
    longest ``package-dir`` key that is ``name`` or a parent package of it
    (``""`` is the root), then the rest of the name as subfolders."""
    parts = name.split(".")
    for i in range(len(parts), -1, -1):
        key = ".".join(parts[:i])
        if key in PACKAGE_DIR:
            return ROOT.joinpath(PACKAGE_DIR[key], *parts[i:])
    return ROOT.joinpath(*parts)


def test_layout_maps_only_into_fxanalog():
    # Every mapped and every listed package is fxanalog or under it, and is
    # a source folder with an __init__.py (what setuptools copies).
    for name in list(PACKAGE_DIR) + PACKAGES:
        assert name == "fxanalog" or name.startswith("fxanalog."), name
    for name, folder in PACKAGE_DIR.items():
        assert (ROOT / folder / "__init__.py").is_file(), f"package-dir {name!r} -> {folder!r}: no package there"
    for name in PACKAGES:
        assert (package_folder(name) / "__init__.py").is_file(), f"listed package {name!r} has no source folder"
    # the top-level folders passes/ and triton_kernels/ install under fxanalog
    assert package_folder("fxanalog.passes").resolve() == (ROOT / "passes").resolve()
    assert package_folder("fxanalog.triton_kernels").resolve() == (ROOT / "triton_kernels").resolve()


def test_every_source_package_is_listed():
    """Each folder with an __init__.py under a mapped folder is a listed
    package, and the other way round (a forgotten subpackage would be
    missing from a wheel)."""
    found = set()
    for name, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            found.add(".".join((name,) + init.parent.relative_to(ROOT / folder).parts))
    listed = set(PACKAGES)
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
    assert listed <= found, f"listed packages without a source folder: {sorted(listed - found)}"
    assert len(PACKAGES) == len(listed), "a package is listed twice"


def test_entry_points_declared():
    project = PYPROJECT["project"]
    assert project["scripts"]["fxanalog"] == "fxanalog.cli:main"
    assert project["entry-points"]["torch_dynamo_backends"]["fxanalog"] == "fxanalog.dynamo_backend:fxanalog_backend"


def test_installed_distribution(tmp_path):
    """From outside the source tree: only the ``fxanalog`` import name, its
    subpackages importable, the entry points installed and loadable."""
    code = r"""
import importlib.metadata as md, importlib.util, json
dist = md.distribution("fxanalog")
import fxanalog, fxanalog.passes, fxanalog.triton_kernels, fxanalog.nn, fxanalog.cli, fxanalog._rng
eps = {(e.group, e.name): e.value for e in dist.entry_points}
backend = [e for e in dist.entry_points if e.group == "torch_dynamo_backends"][0].load()
script = [e for e in dist.entry_points if e.group == "console_scripts"][0].load()
print(json.dumps({
    "version": dist.version,
    "stray": [n for n in ("passes", "triton_kernels", "tests", "docs") if importlib.util.find_spec(n)],
    "eps": [list(k) + [v] for k, v in eps.items()],
    "backend_callable": callable(backend),
    "script_is_main": script is fxanalog.cli.main,
    "kernels_file": fxanalog.triton_kernels.__file__,
    "native": [getattr(m, "__file__", None) for m in (fxanalog._rng.native, fxanalog.ops.tile_update_torch.native,
                                                       fxanalog.ops.tile_mvm_torch.native)],
}))
"""
    out = _run(code, tmp_path)
    import fxanalog

    assert out["version"] == fxanalog.__version__ == PYPROJECT["project"]["version"]
    assert out["stray"] == [], f"top-level import names other than fxanalog: {out['stray']}"
    assert ["torch_dynamo_backends", "fxanalog", "fxanalog.dynamo_backend:fxanalog_backend"] in out["eps"]
    assert ["console_scripts", "fxanalog", "fxanalog.cli:main"] in out["eps"]
    assert out["backend_callable"] and out["script_is_main"]
    assert Path(out["kernels_file"]).resolve().parent == package_folder("fxanalog.triton_kernels").resolve()
    # the C extensions (optional): built by the install wherever a C compiler is
    if can_build_c_extension():
        for name, path in zip(("_normal", "_pulsed", "_periphery"), out["native"]):
            assert path is not None, f"fxanalog.{name} was not built by the install"
            assert Path(path).resolve().parent == (ROOT / "fxanalog").resolve()


def test_python_dash_m_is_the_console_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fxanalog", "--version"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    import fxanalog

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"fxanalog {fxanalog.__version__}"


# ---------------------------------------------------------------------------
# The shell scripts, run: copies of scripts/ and .ci/run in an empty folder,
# with a stand-in Python that logs each call (its path, working directory and
# arguments) and does nothing else, except that ``-m venv DIR`` puts a copy
# of it at DIR/bin/python. No real install runs.

FAKE_PYTHON = r"""#!/usr/bin/env bash
{ printf '%s\t%s' "$0" "$PWD"; printf '\t%s' "$@"; printf '\n'; } >> "$FAKE_LOG"
case "$1" in
  -c) exit "${FAKE_TOO_OLD:-0}" ;;
  --version) echo "Python ${FAKE_VERSION:-3.12.0}" ;;
  -m) if [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi ;;
esac
exit 0
"""

SCRIPT_FILES = ("scripts/env.sh", "scripts/test.sh", "scripts/demo.sh", ".ci/run")
# a change reinstalls
WATCHED = ("pyproject.toml", "setup.py", "fxanalog/_normal.c", "fxanalog/_pulsed.c", "fxanalog/_periphery.c",
           "fxanalog/_ziggurat.h")


@dataclass
class Call:
    exe: str
    cwd: str
    args: list


class Sandbox:
    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "repo"
        for rel in SCRIPT_FILES + WATCHED:
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, self.root / rel)
        self.fake = tmp_path / "python-stand-in"
        self.fake.write_text(FAKE_PYTHON)
        self.fake.chmod(0o755)
        self.venv = tmp_path / "venv"
        self.python = self.venv / "bin" / "python"
        self.stamp = self.venv / ".fxanalog-installed"
        self.log = tmp_path / "calls.log"
        self.env = {**os.environ, "FXANALOG_VENV": str(self.venv), "FXANALOG_PYTHON": str(self.fake),
                    "FAKE_LOG": str(self.log)}
        self.env.pop("FAKE_TOO_OLD", None)

    def run(self, *cmd, cwd=None, **env) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), cwd=cwd or self.root, env={**self.env, **env}, capture_output=True,
                              text=True, timeout=60)

    def source_env(self, **env) -> subprocess.CompletedProcess:
        return self.run("bash", "-c", 'source scripts/env.sh && echo "$PY"', **env)

    def calls(self, clear=True) -> list:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        if clear:
            self.log.unlink(missing_ok=True)
        return [Call(exe, cwd, args) for exe, cwd, *args in (ln.split("\t") for ln in lines)]


@pytest.fixture
def sandbox(tmp_path):
    return Sandbox(tmp_path)


def same_path(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


@pytest.mark.parametrize("script", ["scripts/env.sh", "scripts/demo.sh", "scripts/test.sh", ".ci/run"])
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_setup_installs_pinned_torch_before_the_package(sandbox):
    from packaging.requirements import Requirement

    proc = sandbox.source_env()
    assert proc.returncode == 0, proc.stderr
    assert same_path(proc.stdout.strip(), sandbox.python)  # $PY: the environment's Python
    calls = sandbox.calls()
    # the base Python: the version check, then the environment
    assert [c.exe for c in calls[:2]] == [str(sandbox.fake)] * 2
    assert calls[0].args[0] == "-c" and calls[1].args == ["-m", "venv", str(sandbox.venv)]
    # then every install with the environment's pip
    installs = calls[2:]
    assert installs and all(c.exe == str(sandbox.python) and c.args[:3] == ["-m", "pip", "install"] for c in installs)
    torch_at = [i for i, c in enumerate(installs) if any(a.startswith("torch") for a in c.args)]
    pkg_at = [i for i, c in enumerate(installs) if "-e" in c.args]
    assert len(torch_at) == 1 and len(pkg_at) == 1 and torch_at[0] < pkg_at[0], [c.args for c in installs]
    # torch pinned to one version that pyproject's range admits
    (pin,) = [Requirement(a) for a in installs[torch_at[0]].args if a.startswith("torch")]
    (spec,) = pin.specifier
    assert spec.operator == "==", pin
    deps = {Requirement(d).name: Requirement(d) for d in PYPROJECT["project"]["dependencies"]}
    assert spec.version in deps["torch"].specifier
    # the package: this folder, editable, with extras that pyproject declares
    editable = installs[pkg_at[0]].args
    target = editable[editable.index("-e") + 1]
    folder, extras = re.fullmatch(r"(.*)\[(.*)\]", target).groups()
    assert same_path(folder, sandbox.root)
    assert set(extras.split(",")) == {"demo", "test"} <= set(PYPROJECT["project"]["optional-dependencies"])
    assert sandbox.stamp.is_file()


def test_setup_reinstalls_only_when_the_packaging_changes(sandbox):
    assert sandbox.source_env().returncode == 0
    sandbox.calls()
    assert sandbox.source_env().returncode == 0
    assert sandbox.calls() == [], "nothing changed: nothing may be installed"
    for rel in WATCHED:
        stamped = sandbox.stamp.stat().st_mtime
        os.utime(sandbox.root / rel, (stamped + 10, stamped + 10))  # changed after the install
        assert sandbox.source_env().returncode == 0
        calls = sandbox.calls()
        assert any("-e" in c.args for c in calls), f"{rel} changed, the package was not reinstalled"
        assert all(c.exe == str(sandbox.python) for c in calls)  # the environment is reused
        os.utime(sandbox.root / rel, (stamped - 10, stamped - 10))
    assert sandbox.source_env().returncode == 0
    assert sandbox.calls() == []


def test_setup_refuses_a_missing_or_too_old_python(sandbox, tmp_path):
    missing = tmp_path / "no-such-python"
    proc = sandbox.source_env(FXANALOG_PYTHON=str(missing))
    assert proc.returncode != 0 and str(missing) in proc.stderr
    assert sandbox.calls() == [] and not sandbox.venv.exists()
    proc = sandbox.source_env(FAKE_TOO_OLD="1", FAKE_VERSION="3.9.7")
    assert proc.returncode != 0 and "3.9.7" in proc.stderr  # says which Python it found
    assert [c.args[0] for c in sandbox.calls()] == ["-c", "--version"] and not sandbox.venv.exists()


@pytest.mark.parametrize(
    "script, extra, runs",
    [("scripts/test.sh", ["-k", "a b"], ["-m", "pytest", "-q"]), ("scripts/demo.sh", ["--quick"], ["-m", "fxanalog", "demo"])],
)
def test_scripts_run_in_the_environment_from_the_root(sandbox, tmp_path, script, extra, runs):
    assert sandbox.source_env().returncode == 0
    sandbox.calls()
    proc = sandbox.run("bash", str(sandbox.root / script), *extra, cwd=tmp_path)  # from elsewhere
    assert proc.returncode == 0, proc.stderr
    (call,) = sandbox.calls()
    assert call.exe == str(sandbox.python) and same_path(call.cwd, sandbox.root)
    assert call.args == runs + extra  # extra arguments passed on


def readme_commands() -> list:
    """The commands of the bash block of the README's "Two commands" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^## Two commands\n.*?```bash\n(.*?)```", text, re.S | re.M).group(1)
    return [shlex.split(ln) for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_ci_runs_the_readme_test_command_only(sandbox, tmp_path):
    assert sandbox.source_env().returncode == 0
    sandbox.calls()
    proc = sandbox.run("bash", str(sandbox.root / ".ci" / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ci = sandbox.calls()
    assert len(ci) == 1 and ci[0].args[:2] == ["-m", "pytest"], [c.args for c in ci]
    # exactly what one of the README's commands runs, with no arguments added
    readme = []
    for cmd in readme_commands():
        assert sandbox.run(*cmd).returncode == 0, cmd
        readme.append(sandbox.calls())
    assert ci in readme, (ci, readme)
