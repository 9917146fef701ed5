"""Reliability of the compiler with the user's model (issues 14 and 15):
nothing the user saves or gives is lost or changed, and every failure is a
clear error. Each test reproduces a reported case."""

from __future__ import annotations

import copy
import io
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import fxanalog
from tests import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fp():
    return fxanalog.FloatingPointRPUConfig()


def run_python(code: str, cwd: str = ROOT, **env) -> subprocess.CompletedProcess:
    """A fresh interpreter running ``code`` in ``cwd`` (the repository root by
    default, so ``tests.zoo`` imports)."""
    full_env = dict(os.environ, **env)
    full_env.pop("FXANALOG_DUMP_DIR", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


# -- issue 15 item 1: saving the whole compiled model ----------------------------------


def _programmed(name: str):
    """A compiled zoo model with programmed and drifted tiles (state beyond
    the weights), and an input that runs every branch."""
    model = zoo.build(name)
    analog = fxanalog.compile(model, fxanalog.InferenceRPUConfig(), example_inputs=zoo.inputs(name))
    analog.eval()
    torch.manual_seed(3)
    analog.drift_analog_weights(3600.0)
    return analog


@pytest.mark.parametrize("name", ["mlp", "control_flow", "gpt"])
def test_torch_save_round_trips_in_a_fresh_process(name, tmp_path):
    analog = _programmed(name)
    path = tmp_path / "model.pt"
    torch.save(analog, path)
    state = {k: v.clone() for k, v in analog.state_dict().items()}
    torch.save({"state": state, "records": [r.to_dict() for r in analog.layer_records()],
                "class": type(analog).__name__, "training": analog.training}, tmp_path / "expected.pt")
    out = run_python(f"""
        import torch, fxanalog
        from fxanalog.model import AnalogModelMixin
        m = torch.load({str(path)!r}, weights_only=False)
        exp = torch.load({str(tmp_path / 'expected.pt')!r}, weights_only=False)
        assert isinstance(m, AnalogModelMixin), type(m).__mro__
        assert type(m).__name__ == exp["class"], type(m).__name__
        assert m.training == exp["training"]
        sd = m.state_dict()
        assert sorted(sd) == sorted(exp["state"]), set(sd) ^ set(exp["state"])
        for k, v in exp["state"].items():
            assert torch.equal(sd[k], v), k
        assert [r.to_dict() for r in m.layer_records()] == exp["records"]
        print("layers", len(list(m.analog_tiles())))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["layers", str(len(list(analog.analog_tiles())))]


@pytest.mark.parametrize("name", ["mlp", "control_flow"])
def test_pickle_round_trip_keeps_outputs_and_records(name):
    model = zoo.build(name)
    analog = fxanalog.compile(model, fp())
    x = zoo.all_branch_inputs(name, model)
    back = pickle.loads(pickle.dumps(analog))
    assert type(back).__name__ == type(analog).__name__
    assert back.layer_records() == analog.layer_records()
    for inputs in x:
        torch.testing.assert_close(back(*inputs), model(*inputs), rtol=1e-5, atol=1e-5)
    # The loaded model is an independent copy: its parameters are new tensors.
    assert all(p is not q for p, q in zip(back.parameters(), analog.parameters()))


def test_untraceable_model_of_the_users_class_round_trips():
    model = zoo.Gate().eval()  # its own forward cannot be traced: the child swap
    analog = fxanalog.compile(model, fp())
    assert isinstance(analog, zoo.Gate) and not isinstance(analog, torch.fx.GraphModule)
    buf = io.BytesIO()
    torch.save(analog, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert isinstance(back, zoo.Gate) and type(back) is type(analog)
    assert [n for n, _ in back.named_analog_layers()] == ["fc1", "fc2", "fc3"]
    for sign in (1.0, -1.0):
        x = sign * torch.rand(3, 16)
        torch.testing.assert_close(back(x), model(x), rtol=1e-5, atol=1e-5)


def test_untraceable_class_in_main_is_refused_at_save_time(tmp_path):
    out = run_python(f"""
        import pickle, torch, fxanalog
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 4)
            def forward(self, x):
                return self.a(x) if x.sum() > 0 else -self.a(x)

        analog = fxanalog.compile(Net(), fxanalog.FloatingPointRPUConfig())
        try:
            torch.save(analog, {str(tmp_path / 'm.pt')!r})
        except pickle.PicklingError as e:
            print("refused:", e)
    """)
    assert out.returncode == 0, out.stderr
    assert "refused: saving the analog model: the class Net of the model is defined in __main__" in out.stdout
    assert "save model.state_dict()" in out.stdout


def test_class_defined_in_a_function_is_refused_but_copies_work():
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return self.a(x) if x.sum() > 0 else -self.a(x)

    analog = fxanalog.compile(Local(), fp())
    with pytest.raises(pickle.PicklingError, match="class .*Local of the model is defined inside a function"):
        pickle.dumps(analog)
    # In-process copies need no import: they keep working.
    for other in (copy.deepcopy(analog), copy.copy(analog)):
        assert type(other) is type(analog)
        x = torch.rand(2, 4)
        torch.testing.assert_close(other(x), analog(x))
    assert copy.deepcopy(analog).a.weight is not analog.a.weight
    assert copy.copy(analog).a is analog.a


def test_traced_model_with_an_untraceable_child_in_main_is_refused(tmp_path):
    out = run_python("""
        import pickle, torch, fxanalog
        from torch import nn

        class Gate(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 4)
            def forward(self, x):
                return self.a(x) if x.sum() > 0 else -self.a(x)

        model = nn.Sequential(nn.Linear(4, 4), Gate())
        analog = fxanalog.compile(model, fxanalog.FloatingPointRPUConfig())
        try:
            pickle.dumps(analog)
        except pickle.PicklingError as e:
            print("refused:", e)
    """)
    assert out.returncode == 0, out.stderr
    assert "the class Gate of module '1' is defined in __main__" in out.stdout
