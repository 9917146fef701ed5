"""The docs cannot go stale: every ```python block of README.md and docs/*.md
runs, and the config reference matches the dataclasses.

Each Markdown file is one test: its blocks run in order, in one fresh
namespace, in a process of their own (forked from a runner subprocess that
imported torch and fxanalog once), in a temporary directory, as a reader
would paste them. A failure names the file and the line of the block, and the
traceback points at the line inside the Markdown file. The scripts of
examples/ run the same way.
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


# The runner gets [[path, [[line, code], ...]], ...] on stdin and writes
# {path: {"exit": status, "log": output}} to the file named by argv[1]. Each
# Markdown file runs in its own process, in a fresh temporary directory, its
# blocks in order in one namespace, each block compiled with the Markdown file
# as its file name and padded so that traceback line numbers are the file's
# own. Where fork exists, torch and fxanalog are imported once and every file
# runs in a forked child (a fresh process without paying the imports again).
_RUNNER = r"""
import json, os, sys, tempfile, traceback

def run(path, blocks):
    namespace = {"__name__": "__main__", "__file__": path}
    if path.endswith(".py"):  # a script, as with `python script.py`: no arguments, its folder importable
        sys.argv = [path]
        sys.path.insert(0, os.path.dirname(path))
    for line, code in blocks:
        try:
            exec(compile("\n" * line + code, path, "exec"), namespace)
        except SystemExit as e:
            if e.code in (None, 0):
                return 0
            sys.stderr.write(f"{path}: the python block at line {line} called sys.exit({e.code!r})\n")
            return 1
        except BaseException:
            sys.stderr.write(f"{path}: the python block at line {line} failed:\n" + traceback.format_exc())
            return 1
    return 0

jobs = json.loads(sys.stdin.read())
fork = hasattr(os, "fork")
if fork:
    try:
        import torch, fxanalog  # noqa: F401  (inherited by every child)
    except BaseException:
        pass  # each child then reports the error where its blocks import them
results = {}
for path, blocks in jobs:
    fd, log = tempfile.mkstemp(suffix=".log")
    workdir = tempfile.mkdtemp()
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork() if fork else 0
    if pid == 0:
        status = 1
        try:
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(workdir)
            status = run(path, blocks)
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            if fork:
                os._exit(status)
        code = status
    else:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    os.close(fd)
    with open(log, encoding="utf-8", errors="replace") as f:
        results[path] = {"exit": code, "log": f.read()[-6000:]}
    os.remove(log)
with open(sys.argv[1], "w") as f:
    json.dump(results, f)
"""


def run_markdown(paths, tmp_dir: Path) -> dict:
    """Run the python blocks of each Markdown file, or each ``.py`` script as
    one block (see ``_RUNNER``); returns ``{str(path): {"exit": status,
    "log": output}}``."""
    import json

    jobs = [[str(p), [[0, Path(p).read_text(encoding="utf-8")]] if str(p).endswith(".py")
             else python_blocks(Path(p).read_text(encoding="utf-8"))] for p in paths]
    out = tmp_dir / "results.json"
    # one torch thread: the blocks are small, and threads waiting for each other
    # on a busy machine cost more than they gain
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(out)], input=json.dumps(jobs), capture_output=True,
                          text=True, cwd=tmp_dir, env=env, timeout=900)
    assert proc.returncode == 0 and out.exists(), f"the docs runner itself failed:\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text())


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name != "models.py")


@pytest.fixture(scope="session")
def doc_results(tmp_path_factory):
    """Every Markdown file's blocks and every example script, run once per session."""
    files = [p for p in DOC_FILES if python_blocks(p.read_text(encoding="utf-8"))]
    return run_markdown(files + EXAMPLES, tmp_path_factory.mktemp("docs"))


@pytest.mark.parametrize("path", [p for p in DOC_FILES if python_blocks(p.read_text(encoding="utf-8"))], ids=_rel)
def test_python_blocks_run(path, doc_results):
    result = doc_results[str(path)]
    assert result["exit"] == 0, f"{_rel(path)}: a python block failed (exit {result['exit']}):\n{result['log']}"


def test_readme_gives_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    bash = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [ln.strip() for block in bash for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    assert "bash scripts/demo.sh" in commands
    assert "bash scripts/test.sh" in commands
    assert python_blocks(text), "README.md has no python block (a first compile)"


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
    good = tmp_path / "good.md"
    good.write_text("```python\nimport os\nprint('cwd', os.getcwd())\nopen('scratch.txt', 'w').write('x')\n```\n")
    bad = tmp_path / "bad.md"
    bad.write_text("# bad\n\n```python\nx = 1\n```\n\n```python\ny = x + 1\nraise RuntimeError('boom')\n```\n")
    again = tmp_path / "again.md"  # a fresh namespace: x from bad.md is not defined here
    again.write_text("```python\nprint(x)\n```\n")
    results = run_markdown([good, bad, again], tmp_path)
    assert results[str(good)]["exit"] == 0
    assert "cwd" in results[str(good)]["log"]
    assert not (tmp_path / "scratch.txt").exists()  # files go to a temporary directory
    log = results[str(bad)]["log"]
    assert results[str(bad)]["exit"] == 1
    assert f"{bad}: the python block at line 7 failed" in log
    # the traceback points at line 9 of the Markdown file (the raise)
    assert f'File "{bad}", line 9' in log
    assert "RuntimeError: boom" in log
    assert results[str(again)]["exit"] == 1 and "NameError" in results[str(again)]["log"]


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
        "fields without a meaning (give the field a doc: param(..., doc=...); an enum member: NAME = value, doc)"
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
    """A plain dataclass field (no ``param`` doc) and an enum member without a
    doc are reported, and the page is not generated."""
    from dataclasses import dataclass

    from fxanalog import _docgen
    from fxanalog.config import (
        ConfigBase,
        NamedEnum,
        register_config_class,
        registered_config_classes,
        unregister_config_class,
    )

    @dataclass(repr=False)
    class Undocumented(ConfigBase):
        knob: float = 1.0

    class Kind(NamedEnum):
        ONE = "One", "The first."
        TWO = "Two"

    monkeypatch.setattr(_docgen, "config_enums", lambda: [Kind])
    register_config_class(Undocumented)
    try:
        assert _docgen.missing_meanings() == ["Undocumented.knob", "Kind.TWO"]
        with pytest.raises(ValueError, match="Undocumented.knob, Kind.TWO"):
            _docgen.generate()
    finally:
        unregister_config_class(Undocumented)
    assert "Undocumented" not in registered_config_classes()


# --------------------------------------------------------------------------
# examples/


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, doc_results):
    result = doc_results[str(script)]
    assert result["exit"] == 0, f"examples/{script.name} failed:\n{result['log']}"
    assert result["log"].strip(), f"examples/{script.name} printed nothing"


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


def test_meanings_from_declarations_and_base_classes():
    """A field documents itself with ``param(doc=...)``; a subclass inherits
    its base class's fields with their docs; an enum member's doc is next to
    it; a field declared without a doc is refused at declaration."""
    from dataclasses import dataclass

    from fxanalog import _docgen
    from fxanalog.config import (
        NoiseManagementType,
        param,
        register_config_class,
        registered_config_classes,
        unregister_config_class,
    )
    from fxanalog.config.base import Number
    from fxanalog.config.noise import PCMLikeNoiseModel

    @dataclass(repr=False)
    class MyNoiseModel(PCMLikeNoiseModel):
        documented: float = param(2.5, doc="A documented knob.", check=Number(ge=0))

    register_config_class(MyNoiseModel)
    try:
        assert _docgen.missing_meanings() == []
        text = _docgen.generate()
    finally:
        unregister_config_class(MyNoiseModel)
    assert "MyNoiseModel" not in registered_config_classes()
    section = text[text.index("## MyNoiseModel"):]
    assert "| `documented` | float | `2.5` | A documented knob. |" in section
    t0 = "Time in seconds between programming and the first read; drift is relative to it (t = t_inference + t_0)."
    assert f"| `t_0` | float | `20.0` | {t0} |" in section
    constant = "Divide every input by `nm_thres` (by 1 when `nm_thres` is 0, as aihwkit)."
    assert NoiseManagementType.CONSTANT.doc == constant
    assert f"| `CONSTANT` | {constant} |" in text
    with pytest.raises(TypeError, match="doc"):
        param(1.0, doc="", check=Number())
    with pytest.raises(TypeError):
        param(1.0, check=Number())  # doc is required
