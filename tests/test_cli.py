"""The ``fxanalog`` command line: parsing, help, errors (one line, exit 2),
presets and config files, and the summary/dump subcommands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fxanalog import cli
from fxanalog.cli import CLIError, load_model, main, parse_shape
from fxanalog.presets import PRESETS, get_preset, load_config

# A module the tests import as MODEL: factories that work, raise, or return junk.
FACTORIES = '''
import torch
from torch import nn

def good():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))

def raises():
    raise RuntimeError("no weights here")

def not_a_module():
    return 42

constant = 3
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "cli_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("cli_factories", None)
    yield "cli_factories"
    sys.modules.pop("cli_factories", None)


def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------
# Help and usage errors


def test_help_of_each_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "summary", "dump"):
        assert command in out
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--output", "--seed", "--draws", "--quick"):
        assert option in out
    assert main(["summary", "--help"]) == 0
    out = capsys.readouterr().out
    assert "MODEL" in out and "--input-shape" in out and "--config" in out
    for name in PRESETS:
        assert name in out
    assert main(["dump", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--format" in out and "{text,json,dot}" in out and "-o" in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: fxanalog" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["demo", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["demo", "--draws", "0"], "--draws"),
        (["demo", "--seed", "x"], "--seed"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["summary", "fxanalog.presets:tiny_mlp"], "--input-shape"),
        (["summary", "fxanalog.presets:tiny_mlp", "--input-shape", "1,a"], "--input-shape"),
        (["dump", "fxanalog.presets:tiny_mlp", "--format", "svg"], "invalid choice: 'svg'"),
    ],
)
def test_usage_errors_are_one_line(argv, expected, capsys):
    assert main(argv) == 2
    line = _err_line(capsys)
    assert line.startswith("fxanalog")
    assert expected in line


def test_parse_shape():
    assert parse_shape("1,3,32,32") == (1, 3, 32, 32)
    assert parse_shape("2x16") == (2, 16)
    assert parse_shape(" 4 ") == (4,)
    for bad in ("", "1,0", "-1,3", "a,b", ","):
        with pytest.raises(CLIError, match="--input-shape"):
            parse_shape(bad)


# --------------------------------------------------------------------------
# MODEL


def test_load_model_calls_the_factory(factories):
    model = load_model(f"{factories}:good")
    assert isinstance(model, nn.Sequential)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]
    assert model[0].in_features == 6 and model[2].out_features == 3


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("cli_factories", "expected package.module:factory"),
        ("cli_factories:", "expected package.module:factory"),
        ("no_such_module_xyz:good", "cannot import 'no_such_module_xyz'"),
        ("cli_factories:missing", "has no attribute 'missing'"),
        ("cli_factories:raises", "the factory raised RuntimeError: no weights here"),
        ("cli_factories:not_a_module", "returned a int, expected an nn.Module"),
        ("cli_factories:constant", "is a int, expected a callable"),
    ],
)
def test_bad_model_is_a_one_line_error_with_exit_2(spec, expected, factories, capsys):
    with pytest.raises(CLIError, match=expected.replace("(", r"\(")):
        load_model(spec)
    assert main(["summary", spec, "--input-shape", "1,6"]) == 2
    line = _err_line(capsys)
    assert expected in line and repr(spec) in line


def test_model_from_the_current_directory(tmp_path, monkeypatch):
    """``examples.models:mlp``-style paths resolve against the working directory."""
    pkg = tmp_path / "mypkg_cli_cwd"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text("from torch import nn\ndef net():\n    return nn.Linear(2, 2)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert isinstance(load_model("mypkg_cli_cwd.models:net"), nn.Linear)
    finally:
        for name in ("mypkg_cli_cwd", "mypkg_cli_cwd.models"):
            sys.modules.pop(name, None)


# --------------------------------------------------------------------------
# --config


def test_presets():
    from fxanalog.config import FloatingPointRPUConfig, InferenceRPUConfig, WeightModifierType
    from fxanalog.config.noise import GlobalDriftCompensation, PCMLikeNoiseModel

    pcm = get_preset("pcm")
    assert isinstance(pcm, InferenceRPUConfig)
    assert pcm.mapping.weight_scaling_omega == 1.0
    assert isinstance(pcm.noise_model, PCMLikeNoiseModel)
    assert isinstance(pcm.drift_compensation, GlobalDriftCompensation)
    assert pcm.forward.out_noise == 0.06  # aihwkit's default periphery
    assert get_preset("inference") == InferenceRPUConfig()
    assert get_preset("floating-point") == FloatingPointRPUConfig()
    assert get_preset("ideal").forward.is_perfect
    assert get_preset("pcm-hwa").modifier.type == WeightModifierType.ADD_NORMAL
    assert get_preset("pcm-hwa").modifier.std_dev == 0.08
    # fresh objects: mutating one does not change the next
    pcm.forward.out_noise = 0.0
    assert get_preset("pcm").forward.out_noise == 0.06
    for name in PRESETS:
        get_preset(name).validate()
    with pytest.raises(ValueError, match="unknown; expected one of inference, pcm"):
        get_preset("pmc")


def test_config_json_round_trip(tmp_path):
    cfg = get_preset("pcm")
    cfg.forward.out_noise = 0.02
    cfg.mapping.max_input_size = 128
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert load_config(str(path)) == cfg


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"class": "InferenceRPUConfig", "forward": {"out_noize": 0.1}}, "unknown field 'out_noize'"),
        ({"class": "InferenceRPUConfig", "mapping": {"weight_scaling_omega": -1}}, "weight_scaling_omega = -1"),
        ({"class": "NoSuchConfig"}, "unknown config class 'NoSuchConfig'"),
        ({"forward": {}}, 'no "class" entry'),
        ([1, 2], "expected a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_config_file_is_a_one_line_error(content, expected, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        load_config(str(path))
    assert main(["summary", "fxanalog.presets:tiny_mlp", "--input-shape", "1,16", "--config", str(path)]) == 2
    line = _err_line(capsys)
    assert expected in line and "bad.json" in line


def test_unknown_preset_or_missing_file(tmp_path, capsys):
    assert main(["dump", "fxanalog.presets:tiny_mlp", "--config", "pcm2"]) == 2
    assert "not a preset (inference, pcm" in _err_line(capsys)
    missing = tmp_path / "missing.json"
    assert main(["dump", "fxanalog.presets:tiny_mlp", "--config", str(missing)]) == 2
    assert "cannot read it" in _err_line(capsys)


# --------------------------------------------------------------------------
# The console script and python -m


def test_console_script_and_module_agree(tmp_path):
    script = Path(sys.executable).with_name("fxanalog")
    assert script.exists(), "the console script `fxanalog` is not installed in this environment"
    a = subprocess.run([str(script), "demo", "--bogus"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    b = subprocess.run([sys.executable, "-m", "fxanalog", "demo", "--bogus"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    for proc in (a, b):
        assert proc.returncode == 2
        assert proc.stderr.strip() == ("fxanalog demo: error: unrecognized arguments: --bogus "
                                       "(see 'fxanalog demo --help')")


# --------------------------------------------------------------------------
# summary and dump, for real


def test_summary_of_small_cnn(capsys):
    assert main(["summary", "fxanalog.presets:small_cnn", "--input-shape", "1,3,32,32", "--config", "pcm"]) == 0
    out = capsys.readouterr().out
    # three weight matmuls, each small enough for one 512x512 tile
    assert "3 analog layers on 3 tiles" in out
    # MACs for a 1x3x32x32 input, by hand: conv 3->8 (k=27) on 32x32 outputs,
    # conv 8->16 (k=72) on 16x16, linear 16->10
    macs = 8 * 32 * 32 * 27 + 16 * 16 * 16 * 72 + 16 * 10
    assert f"{macs:,}" in out
    assert "weight_scaling_omega" in out  # the pcm preset differs from the default there


def test_summary_input_shape_reaches_the_model(capsys):
    # a shape the model cannot take is a one-line error, not a traceback
    assert main(["summary", "fxanalog.presets:tiny_mlp", "--input-shape", "2,15"]) == 2
    line = _err_line(capsys)
    assert "fxanalog.presets:tiny_mlp" in line


def test_dump_formats(tmp_path, capsys):
    path = tmp_path / "mlp.json"
    assert main(["dump", "fxanalog.presets:tiny_mlp", "--format", "json", "-o", str(path)]) == 0
    assert str(path) in capsys.readouterr().out
    data = json.loads(path.read_text())
    tiles = {layer["name"]: layer["tiles"]["count"] for layer in data["layers"] if layer["tiles"]}
    assert tiles == {"0": 1, "2": 1}
    assert [layer["shape"] for layer in data["layers"]] == [[32, 16], [4, 32]]

    dot = tmp_path / "mlp.dot"
    assert main(["dump", "fxanalog.presets:tiny_mlp", "--format", "dot", "-o", str(dot),
                 "--input-shape", "2,16"]) == 0
    assert dot.read_text().lstrip().startswith("digraph")

    capsys.readouterr()
    assert main(["dump", "fxanalog.presets:tiny_mlp", "--config", "floating-point"]) == 0
    text = capsys.readouterr().out
    assert "analog" in text and "def forward" in text


def test_dump_to_an_unwritable_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["dump", "fxanalog.presets:tiny_mlp", "-o", str(blocker / "x.txt")]) == 2
    assert "cannot write it" in _err_line(capsys)


def test_examples_models_from_the_repository_root(monkeypatch, capsys):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    try:
        assert main(["summary", "examples.models:mlp", "--input-shape", "1,1,28,28"]) == 0
    finally:
        for name in ("examples", "examples.models"):
            sys.modules.pop(name, None)
    out = capsys.readouterr().out
    # 784 inputs at max_input_size 512: two pieces of 392 -> 2 tiles; 256 -> 10: 1 tile
    assert "3 tiles" in out


def test_demo_train_quick(tmp_path):
    import json

    from fxanalog.cli import main

    assert main(["demo", "--train", "--quick", "--no-progress", "-o", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "training_results.json").read_text())
    assert data["epochs"] == 2
    assert set(data["accuracy"]) == {"ConstantStep", "SoftBounds", "Ideal device", "digital (SGD)"}
    for curve in data["accuracy"].values():
        assert len(curve) == 2 and all(0.0 <= a <= 1.0 for a in curve)
        assert curve[-1] > 0.5  # ten classes: far above chance after two epochs
    png = (tmp_path / "training_accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# Every failure is one line and exit code 2 (issue 15 item 16)

FAILING = '''
from torch import nn

class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        raise ZeroDivisionError("boom in forward")

def boom():
    return Boom()

def net():
    return nn.Sequential(nn.Linear(4, 4))
'''


@pytest.fixture
def failing(tmp_path, monkeypatch):
    (tmp_path / "cli_failing.py").write_text(FAILING)
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("cli_failing", None)
    yield tmp_path
    sys.modules.pop("cli_failing", None)


def test_a_forward_that_raises_is_one_line(failing, capsys):
    assert main(["summary", "cli_failing:boom", "--input-shape", "2,4"]) == 2
    line = _err_line(capsys)
    assert "compiling MODEL 'cli_failing:boom' failed" in line and "ZeroDivisionError: boom in forward" in line


def test_an_input_too_large_to_allocate_is_one_line(failing, capsys):
    assert main(["summary", "cli_failing:net", "--input-shape", "100000,100000,100000"]) == 2
    line = _err_line(capsys)
    assert line.startswith("fxanalog: error: --input-shape 100000,100000,100000: cannot make an input of that shape")


def test_config_files_that_are_not_configs_are_one_line_naming_the_file(failing, capsys):
    nested = failing / "nested_class.json"
    nested.write_text(json.dumps({"class": "InferenceRPUConfig", "forward": {"class": "MappingParameter"}}))
    deep = failing / "deep.json"
    deep.write_text('{"class": "InferenceRPUConfig", "forward": ' + "[" * 100000 + "]" * 100000 + "}")
    binary = failing / "binary.json"
    binary.write_bytes(bytes(range(256)))
    for path, expected in ((nested, "expected an IOParameters"), (deep, "nested too deeply"),
                           (binary, "codec can't decode")):
        assert main(["summary", "cli_failing:net", "--input-shape", "2,4", "--config", str(path)]) == 2
        line = _err_line(capsys)
        assert path.name in line and expected in line, line


def test_an_unexpected_failure_is_one_line(failing, capsys, monkeypatch):
    import fxanalog

    def crash(*a, **k):
        raise KeyError("internal")

    monkeypatch.setattr(fxanalog, "analog_summary", crash)
    assert main(["summary", "cli_failing:net", "--input-shape", "2,4"]) == 2
    assert _err_line(capsys) == "fxanalog: error: KeyError: 'internal'"


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_a_dump_dir_that_cannot_be_written_is_a_warning(kind, tmp_path, monkeypatch):
    import os

    import fxanalog

    target = tmp_path / "dumps"
    if kind == "file":
        target.write_text("")
    else:
        target.mkdir()
        target.chmod(0o500)
        if os.access(target, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("permissions are not enforced for this user")
    monkeypatch.setenv("FXANALOG_DUMP_DIR", str(target))
    try:
        with pytest.warns(UserWarning, match=r"FXANALOG_DUMP_DIR: cannot write the pass dumps to .*dumps.*; "
                                             r"compiling without them"):
            analog = fxanalog.compile(nn.Sequential(nn.Linear(4, 4)), fxanalog.FloatingPointRPUConfig())
        assert len(list(analog.analog_tiles())) == 1
    finally:
        if kind != "file":
            target.chmod(0o700)


def test_dump_run_folders_are_new_and_never_follow_a_planted_link(tmp_path, monkeypatch):
    import os

    import fxanalog

    victim = tmp_path / "victim"
    victim.mkdir()
    root = tmp_path / "dumps"
    root.mkdir()
    for n in range(3):  # the names the old scheme used
        os.symlink(victim, root / f"Sequential_{os.getpid()}_{n}")
    monkeypatch.setenv("FXANALOG_DUMP_DIR", str(root))
    for _ in range(2):
        fxanalog.compile(nn.Sequential(nn.Linear(4, 4)), fxanalog.FloatingPointRPUConfig())
    assert os.listdir(victim) == []
    runs = [p for p in root.iterdir() if not p.is_symlink()]
    assert len(runs) == 2
    assert all(any(f.endswith("_final.txt") for f in os.listdir(p)) for p in runs)
    assert all((p.stat().st_mode & 0o777) == 0o700 for p in runs)


# --------------------------------------------------------------------------
# sys.path: only MODEL's module comes from the current directory (issue 15 item 17)


def test_a_file_in_the_current_directory_never_shadows_a_library_module(tmp_path):
    (tmp_path / "colorsys.py").write_text("open('SHADOWED', 'w').write('yes')\n")
    (tmp_path / "cli_helper.py").write_text("WIDTH = 4\n")
    (tmp_path / "cli_model.py").write_text(
        "from torch import nn\nimport cli_helper\n\n"
        "def net():\n    import colorsys  # imported lazily, as torch does\n"
        "    assert colorsys.__file__.endswith('colorsys.py') and 'SHADOWED' not in colorsys.__file__\n"
        "    return nn.Linear(cli_helper.WIDTH, 2)\n")
    script = Path(sys.executable).with_name("fxanalog")
    for cmd in ([str(script)], [sys.executable, "-m", "fxanalog"]):
        proc = subprocess.run(cmd + ["summary", "cli_model:net", "--input-shape", "1,4"], capture_output=True,
                              text=True, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "Linear" in proc.stdout
        assert not (tmp_path / "SHADOWED").exists(), cmd
