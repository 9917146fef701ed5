"""The torch.compile backend (``backend="fxanalog"``)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog.dynamo_backend import fxanalog_backend, shared_backends
from tests import zoo


def fp():
    return fxanalog.FloatingPointRPUConfig()


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def tiles_per_weight(pairs) -> dict[int, int]:
    return {id(layer.weight): layer.num_tiles for _, layer in pairs}


def test_registered_as_an_entry_point():
    eps = entry_points(group="torch_dynamo_backends")
    assert [ep.value for ep in eps if ep.name == "fxanalog"] == ["fxanalog.dynamo_backend:fxanalog_backend"]
    assert "fxanalog" in torch._dynamo.list_backends()


def test_works_without_importing_fxanalog_first():
    code = (
        "import sys, torch\n"
        "torch.manual_seed(0)\n"
        "m = torch.nn.Linear(8, 4)\n"
        "x = torch.randn(16, 8)\n"
        "y = torch.compile(m, backend='fxanalog', options={'inner': 'eager'})(x)\n"
        "assert 'fxanalog' in sys.modules\n"
        "print(float((y - m(x)).abs().max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) > 1e-3  # default tiles: noisy


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_same_layers_as_compile(name):
    model = zoo.build(name)
    compiled = fxanalog.compile(model, fp(), inplace=True)  # layers around the model's own Parameters
    be = fxanalog.backend(fp(), inner="eager", model=model)
    fn = torch.compile(model, backend=be)
    with torch._dynamo.config.patch(allow_rnn=True):
        for x in zoo.all_branch_inputs(name, model):
            out = fn(*x)
            torch.testing.assert_close(out, model(*x), rtol=1e-5, atol=1e-5)
    assert tiles_per_weight(be.named_analog_layers()) == tiles_per_weight(compiled.named_analog_layers())
    digital_compile = {r.name for r in compiled.layer_records() if not r.analog}
    digital_backend = {r.name for r in be.layer_records() if not r.analog}
    # The embedding lookup is not a matmul call in the dynamo graph either way; recurrent layers are reported.
    assert digital_backend == digital_compile - {"wte"}


@pytest.mark.parametrize("inner", ["eager", "inductor"])
def test_gradients_reach_the_model_parameters(inner):
    model = zoo.build("mlp").train()
    x = zoo.inputs("mlp")[0]
    model(x).square().sum().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    fn = torch.compile(model, backend=fxanalog.backend(fp(), inner=inner))
    fn(x).square().sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[n], rtol=1e-4, atol=1e-6, msg=n)


def test_state_kept_across_recompiles_and_graph_breaks():
    model = zoo.build("control_flow")
    be = fxanalog.backend(fp(), inner="eager", model=model)
    fn = torch.compile(model, backend=be, dynamic=False)
    a, b = zoo.all_branch_inputs("control_flow", model)
    fn(*a)
    first = dict(be.named_analog_layers())
    fn(*b)  # the other branch: another graph after the break
    fn(torch.randn(7, 10))  # another batch size: recompiles
    assert be.graphs >= 4
    layers = dict(be.named_analog_layers())
    assert all(layers[name] is layer for name, layer in first.items())
    assert sorted(layers) == ["gate.fc1", "gate.fc2", "gate.fc3", "head", "inp"]
    # One analog layer per Parameter, however many graphs use it.
    assert len({id(layer.weight) for layer in layers.values()}) == len(layers)


def test_weight_updates_are_seen():
    model = nn.Sequential(nn.Linear(4, 3))
    fn = torch.compile(model, backend=fxanalog.backend(fp(), inner="eager"))
    x = torch.randn(2, 4)
    fn(x)
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    torch.testing.assert_close(fn(x), model(x))


def test_options_through_torch_compile():
    model = zoo.build("mlp")
    cfg = fp()
    fn = torch.compile(model, backend="fxanalog", options={"rpu_config": cfg, "inner": "eager", "mapped": False,
                                                           "exclude": ["fc3"], "model": model})
    x = zoo.inputs("mlp")[0]
    torch.testing.assert_close(fn(x), model(x), rtol=1e-5, atol=1e-5)
    (be,) = [b for b in shared_backends() if b.options.exclude == ("fc3",)]
    assert sorted(name for name, _ in be.named_analog_layers()) == ["fc1", "fc2"]
    assert {r.name: r.converted_by_text for r in be.layer_records()}["fc3"] == "digital: excluded by 'fc3'"


def test_bad_options():
    with pytest.raises(ValueError, match="unknown option 'rpu'"):
        fxanalog_backend(None, [], options={"rpu": fp()})
    with pytest.raises(ValueError, match="inner = 'tvm'"):
        fxanalog.backend(fp(), inner="tvm")
    with pytest.raises(TypeError, match="expected an RPU config"):
        fxanalog.backend("config")
