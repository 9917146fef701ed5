"""The small-weights warning of compile, explain and analog_summary
(issue 14 item 18; docs/compiler.md, "Small weights on the tiles")."""

import warnings

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog import FloatingPointRPUConfig, InferenceRPUConfig
from fxanalog.compiler import SmallWeightRangeWarning
from fxanalog.nn.modules import AnalogLinear


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.small = nn.Linear(16, 12)
        self.full = nn.Linear(12, 4)

    def forward(self, x):
        return self.full(torch.relu(self.small(x)))


def _net(small=0.04, full=0.8, seed=0):
    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():
        net.small.weight.uniform_(-small, small)
        net.small.weight[3, 5] = -small  # max|W| exactly `small`
        net.full.weight.uniform_(-full, full)
        net.full.weight[0, 0] = full
    return net


def _caught(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [w for w in got if issubclass(w.category, SmallWeightRangeWarning)]


def test_compile_warns_once_for_the_small_layer_only():
    net = _net()
    model, got = _caught(fxanalog.compile, net)
    assert len(got) == 1
    msg = str(got[0].message)
    assert msg.startswith("layer small: max|W| = 0.04 in tile units uses 4% of the tile's weight range")
    assert "25.0x" in msg  # 1 / 0.04
    assert "set rpu_config.mapping.weight_scaling_omega = 1.0" in msg
    assert got[0].filename == __file__  # points at the user's call
    # not per call: running the model warns nothing
    _, again = _caught(model, torch.randn(3, 16))
    assert again == []


def test_explain_and_summary_warn_and_show_the_range():
    net = _net()
    report, got = _caught(fxanalog.explain, net)
    assert [str(w.message).split(":")[0] for w in got] == ["layer small"]
    rows = {r["name"]: r for r in report.rows}
    # max|W| in tile units with omega = 0: the weights themselves
    assert rows["small"]["weight_range"] == pytest.approx(0.04)
    assert rows["full"]["weight_range"] == pytest.approx(0.8)
    assert "0.04 !" in str(report) and "note: 1 layer" in str(report)
    model, _ = _caught(fxanalog.compile, net)
    summary, got = _caught(fxanalog.analog_summary, model)
    assert len(got) == 1 and "layer small" in str(got[0].message)
    assert {r["name"]: r["weight_range"] for r in summary.rows} == pytest.approx({"small": 0.04, "full": 0.8})


def test_no_warning_with_omega_one_full_range_or_ideal_tiles():
    net = _net()
    cfg = InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0
    model, got = _caught(fxanalog.compile, net, cfg)
    assert got == []
    summary, got = _caught(fxanalog.analog_summary, model)
    assert got == [] and all(r["weight_range"] == pytest.approx(1.0) for r in summary.rows)
    assert "note:" not in str(summary)
    _, got = _caught(fxanalog.compile, _net(small=0.6, full=1.0))  # both at least half the range
    assert got == []
    for ideal in (FloatingPointRPUConfig(), InferenceRPUConfig()):
        if isinstance(ideal, InferenceRPUConfig):
            ideal.forward.is_perfect = True
        model, got = _caught(fxanalog.compile, net, ideal)
        assert got == []
        assert all(r["weight_range"] is None for r in fxanalog.analog_summary(model).rows)
        assert all(r["weight_range"] is None for r in _caught(fxanalog.explain, net, ideal)[0].rows)


def test_a_small_omega_warns_and_names_it():
    cfg = InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = 0.25
    report, got = _caught(fxanalog.explain, _net(), cfg)
    assert len(got) == 2  # both layers are scaled to max|W_tile| = 0.25
    assert all("raise rpu_config.mapping.weight_scaling_omega from 0.25 to 1.0" in str(w.message) for w in got)
    assert all(r["weight_range"] == pytest.approx(0.25) for r in report.rows)


def test_tile_array_range_per_tile():
    """omega = 0: the largest weight over the layer's tiles; omega = 1: every
    tile scaled by its own max, so 1 whatever the tile's weights."""
    torch.manual_seed(1)
    lin = nn.Sequential(nn.Linear(8, 4))
    with torch.no_grad():
        lin[0].weight.copy_(torch.cat([torch.full((4, 4), 0.01), torch.full((4, 4), -0.3)], dim=1))
    for omega, expected, warned in ((0.0, 0.3, 1), (1.0, 1.0, 0)):
        cfg = InferenceRPUConfig()
        cfg.mapping.weight_scaling_omega = omega
        cfg.mapping.max_input_size = 4
        model, got = _caught(fxanalog.compile, lin, cfg)
        assert len(got) == warned
        row = fxanalog.analog_summary(model).rows[0]
        assert row["tile_grid"] == [1, 1, 2] and row["weight_range"] == pytest.approx(expected)


def test_output_noise_is_in_tile_units():
    """The premise of the warning: the output noise is added in tile units, so
    with omega = 0 its size in digital units does not shrink with the
    weights (std = out_noise max|x| under ABS_MAX noise management), while
    with omega = 1 it is scaled by alpha = max|W| (std = out_noise max|x| f).
    Tolerance 2.5%: about 9 standard errors of a std from 64,000 draws."""
    f, sigma = 0.05, 0.06
    for omega, expected in ((0.0, sigma), (1.0, sigma * f)):
        cfg = InferenceRPUConfig()
        cfg.forward.out_noise = sigma
        cfg.forward.inp_res = -1
        cfg.forward.out_res = -1
        cfg.forward.out_bound = -1
        cfg.mapping.weight_scaling_omega = omega
        layer = AnalogLinear(32, 16, bias=False, rpu_config=cfg)
        torch.manual_seed(2)
        w = torch.empty(16, 32).uniform_(-f, f)
        w[0, 0] = f
        layer.set_weights(w)
        x = torch.randn(4000, 32)
        x = x / x.abs().amax(dim=1, keepdim=True)  # max|x| = 1 per vector
        with torch.no_grad():
            err = layer(x) - x @ w.T
        assert err.std().item() == pytest.approx(expected, rel=0.025)
