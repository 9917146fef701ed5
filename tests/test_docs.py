"""The docs cannot go stale: every ```python block of README.md and docs/*.md
runs, and the config reference matches the dataclasses.

Each Markdown file is one test: its blocks run in order in one fresh
interpreter (a subprocess, in a temporary directory), as a reader would paste
them. A failure names the file and the line of the block, and the traceback
points at the line inside the Markdown file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))

_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the opening fence, 1-based; code) of each ```python block.

    Only blocks tagged ``python`` (or ``py``) count; ```text, ```bash etc. are
    not run. An unclosed fence is an error.
    """
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: the code block opened here is never closed")
        if lang.lower() in ("python", "py"):
            blocks.append((start + 1, textwrap.dedent("\n".join(body))))
        i += 1
    return blocks


# The runner executes the blocks of one file, each compiled with the Markdown
# file as its file name and padded so that line numbers are the file's own.
_RUNNER = r"""
import sys, traceback
path, blocks = sys.argv[1], __import__("json").loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
for line, code in blocks:
    try:
        exec(compile("\n" * line + code, path, "exec"), namespace)
    except BaseException:
        print(f"{path}: the python block at line {line} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", DOC_FILES, ids=_rel)
def test_python_blocks_run(path, tmp_path):
    import json

    blocks = python_blocks(path.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{_rel(path)} has no python block")
    # one torch thread: the blocks are small, and threads waiting for each other
    # on a busy machine cost more than they gain
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(path)],
        input=json.dumps(blocks),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"{_rel(path)}: a python block failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    )


def test_readme_gives_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    bash = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [ln.strip() for block in bash for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    assert "bash scripts/demo.sh" in commands
    assert "bash scripts/test.sh" in commands


def test_doc_links_point_to_existing_files():
    """Relative links between the Markdown files name files that exist
    (pages other engineers write are allowed to be missing only if listed)."""
    broken = []
    for path in DOC_FILES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{_rel(path)} -> {target}")
    assert not broken, "broken links: " + ", ".join(broken)


# --------------------------------------------------------------------------
# The block collector itself (hand-written Markdown with known blocks)


def test_python_blocks_collects_only_python_with_their_lines():
    md = "# t\n\n```python\nx = 1\n```\n\ntext\n```bash\nls\n```\n```py\n    y = 2\n```\n```text\nz\n```\n"
    assert python_blocks(md) == [(3, "x = 1"), (11, "y = 2")]


def test_python_blocks_rejects_an_unclosed_fence():
    with pytest.raises(ValueError, match="line 2"):
        python_blocks("a\n```python\nx = 1\n")


def test_a_failing_block_is_reported_with_file_and_line(tmp_path):
    md = tmp_path / "bad.md"
    md.write_text("# bad\n\n```python\nx = 1\n```\n\n```python\ny = x + 1\nraise RuntimeError('boom')\n```\n")
    import json

    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(md)],
        input=json.dumps(python_blocks(md.read_text())),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert f"{md}: the python block at line 7 failed" in proc.stderr
    # the traceback points at line 9 of the Markdown file (the raise)
    assert f'File "{md}", line 9' in proc.stderr
    assert "RuntimeError: boom" in proc.stderr


# --------------------------------------------------------------------------
# Config reference


def test_config_reference_is_up_to_date():
    from fxanalog import _docgen

    committed = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert committed == _docgen.generate(), (
        "docs/config-reference.md is out of date: run `python -m fxanalog._docgen` and commit it"
    )


def test_every_config_field_and_enum_member_has_a_meaning():
    from fxanalog import _docgen

    assert _docgen.missing_meanings() == [], (
        "fields without a meaning (add them to fxanalog/_docgen.py MEANINGS/ENUM_MEANINGS)"
    )


def test_config_reference_lists_every_field_with_its_default():
    """Each field of InferenceRPUConfig's groups has a row whose default is the
    value of a fresh instance (checked on a few values written out by hand)."""
    from fxanalog import _docgen
    from fxanalog.config import InferenceRPUConfig, IOParameters, MappingParameter

    text = _docgen.generate()
    for cls in (IOParameters, MappingParameter, InferenceRPUConfig):
        for f in dataclasses.fields(cls):
            assert re.search(rf"^\| `{f.name}` \|", text, flags=re.M), f"{cls.__name__}.{f.name} has no row"
    # aihwkit's defaults, written out independently of the dataclasses
    assert "| `out_noise` | float | `0.06` |" in text
    assert "| `out_bound` | float | `12.0` |" in text
    assert "| `max_bm_factor` | int | `1000` |" in text
    assert "| `noise_management` | NoiseManagementType | `ABS_MAX` |" in text
    assert "| `max_input_size` | int | `512` |" in text
    assert "| `t_0` | float | `20.0` |" in text


def test_missing_meaning_is_detected(monkeypatch):
    from fxanalog import _docgen

    monkeypatch.delitem(_docgen.MEANINGS["IOParameters"], "out_noise")
    assert "IOParameters.out_noise" in _docgen.missing_meanings()
    with pytest.raises(ValueError, match="IOParameters.out_noise"):
        _docgen.generate()


# --------------------------------------------------------------------------
# examples/


EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name != "models.py")


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=300)
    assert proc.returncode == 0, f"examples/{script.name} failed:\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip(), f"examples/{script.name} printed nothing"


def test_example_factories_build_modules():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import models
    finally:
        sys.path.remove(str(ROOT / "examples"))
        sys.modules.pop("models", None)
    import torch

    assert models.mlp()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert models.lenet()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
