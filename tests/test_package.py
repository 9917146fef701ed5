"""The package layout: pyproject.toml, the installed metadata, the import names.

Checks that run against the installed distribution use a subprocess in an
empty directory, so the source tree on ``sys.path`` cannot hide a packaging
mistake.
"""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_layout_maps_only_into_fxanalog():
    tool = PYPROJECT["tool"]["setuptools"]
    package_dir = tool["package-dir"]
    assert package_dir["fxanalog.passes"] == "passes"
    assert package_dir["fxanalog.triton_kernels"] == "triton_kernels"
    packages = tool["packages"]
    assert all(p == "fxanalog" or p.startswith("fxanalog.") for p in packages), packages


def test_every_source_package_is_listed():
    """Each folder with an __init__.py under fxanalog/, passes/ and
    triton_kernels/ is a listed package (a forgotten subpackage would be
    missing from a wheel)."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    roots = {"fxanalog": ROOT / "fxanalog", "fxanalog.passes": ROOT / "passes",
             "fxanalog.triton_kernels": ROOT / "triton_kernels"}
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((name,) + rel))
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_entry_points_declared():
    project = PYPROJECT["project"]
    assert project["scripts"]["fxanalog"] == "fxanalog.cli:main"
    assert project["entry-points"]["torch_dynamo_backends"]["fxanalog"] == "fxanalog.backend:fxanalog_backend"


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
    "native": getattr(fxanalog._rng.native, "__file__", None),
}))
"""
    out = _run(code, tmp_path)
    import fxanalog

    assert out["version"] == fxanalog.__version__ == PYPROJECT["project"]["version"]
    assert out["stray"] == [], f"top-level import names other than fxanalog: {out['stray']}"
    assert ["torch_dynamo_backends", "fxanalog", "fxanalog.backend:fxanalog_backend"] in out["eps"]
    assert ["console_scripts", "fxanalog", "fxanalog.cli:main"] in out["eps"]
    assert out["backend_callable"] and out["script_is_main"]
    assert Path(out["kernels_file"]).resolve().parent == (ROOT / "triton_kernels").resolve()
    # the C extension (optional): built by the install wherever a C compiler is
    if can_build_c_extension():
        assert out["native"] is not None, "fxanalog._normal was not built by the install"
        assert Path(out["native"]).resolve().parent == (ROOT / "fxanalog").resolve()


def test_python_dash_m_is_the_console_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fxanalog", "--version"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    import fxanalog

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"fxanalog {fxanalog.__version__}"


@pytest.mark.parametrize("script", ["scripts/env.sh", "scripts/demo.sh", "scripts/test.sh", ".ci/run"])
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_setup_installs_pinned_torch_before_the_package():
    text = (ROOT / "scripts" / "env.sh").read_text()
    torch_at = text.index('"torch==2.13.0"')
    pkg_at = text.index("-e \"$root[demo,test]\"")
    assert torch_at < pkg_at


def test_ci_runs_the_readme_test_command_only():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#") and not ln.startswith("set ")
                and not ln.startswith("cd ")]
    assert commands == ["bash scripts/test.sh"]
