"""The learned input range (rpu_config.pre_post.input_range), against
independent computations: forward by a per-piece loop over the reference
tile, data initialization by torch.std of each piece, gradients by the
formulas of aihwkit's torch tile written out again here."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

import fxanalog
from fxanalog import BoundManagementType, InferenceRPUConfig, NoiseManagementType
from fxanalog.nn import AnalogConv2d, AnalogLinear

from reference_tile import balanced_split, reference_tile


def ir_config(**fields) -> InferenceRPUConfig:
    """Input range on, no noise, no dynamic management (as aihwkit recommends)."""
    cfg = InferenceRPUConfig()
    cfg.forward.out_noise = 0.0
    cfg.forward.noise_management = NoiseManagementType.NONE
    cfg.forward.bound_management = BoundManagementType.NONE
    cfg.pre_post.input_range.enable = True
    for k, v in fields.items():
        setattr(cfg.pre_post.input_range, k, v)
    return cfg


def make_linear(w, cfg, max_in=0, bias=None):
    cfg.mapping.max_input_size = max_in
    layer = AnalogLinear(w.shape[1], w.shape[0], bias=bias is not None, rpu_config=cfg, mapped=True)
    layer.set_weights(w, bias)
    return layer


def pieces(x, sizes):
    out, c = [], 0
    for s in sizes:
        out.append((c, c + s))
        c += s
    return out


def test_config_defaults_round_trip_and_validation():
    ir = InferenceRPUConfig().pre_post.input_range
    assert (ir.enable, ir.learn_input_range, ir.init_value, ir.init_from_data, ir.init_std_alpha) == (
        False, True, 3.0, 100, 3.0)
    assert (ir.decay, ir.input_min_percentage, ir.manage_output_clipping, ir.output_min_percentage) == (
        0.001, 0.95, False, 0.95)
    assert (ir.gradient_scale, ir.gradient_relative, ir.calibration_info) == (1.0, True, None)
    cfg = ir_config(init_value=2.0, decay=0.01)
    assert InferenceRPUConfig.from_dict(cfg.to_dict()) == cfg
    bad = ir_config(init_value=0.0)
    with pytest.raises(ValueError, match=r"pre_post\.input_range\.init_value = 0\.0"):
        AnalogLinear(4, 3, rpu_config=bad)
    bad = ir_config(input_min_percentage=1.5)
    with pytest.raises(ValueError, match="input_min_percentage = 1.5"):
        bad.validate()
    # output clipping management needs static management, as in aihwkit
    bad = ir_config(manage_output_clipping=True)
    bad.forward.noise_management = NoiseManagementType.ABS_MAX
    with pytest.raises(ValueError, match="manage_output_clipping.*noise_management = NONE"):
        bad.validate()


def test_disabled_by_default_no_parameter():
    layer = AnalogLinear(6, 4)
    assert layer.tile.input_range is None and layer.tile.input_range_update_idx is None
    assert "input_range" not in dict(layer.named_parameters())


def test_perfect_forward_is_the_clipped_digital_result():
    # With a perfect tile r * W (clip(x)/r) = W clip(x): the clipping is the only effect.
    torch.manual_seed(0)
    cfg = ir_config(init_from_data=0)
    cfg.forward.is_perfect = True
    w, b = torch.randn(5, 9), torch.randn(5)
    layer = make_linear(w, cfg, max_in=4, bias=b)  # pieces 3, 3, 3
    assert layer.in_sizes == [3, 3, 3]
    with torch.no_grad():
        layer.tile.input_range.copy_(torch.tensor([[0.5, 1.0, 2.0]]))
    x = 3 * torch.randn(7, 9)
    r = torch.tensor([0.5] * 3 + [1.0] * 3 + [2.0] * 3)
    expected = F.linear(torch.maximum(torch.minimum(x, r), -r), w, b)
    torch.testing.assert_close(layer.eval()(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("max_in", [0, 5])
def test_quantized_forward_matches_per_piece_reference(max_in):
    # Each tile sees clip(x)/r on its DAC (7 bits) and its ADC (9 bits, bound 12);
    # the partial outputs are scaled by r and summed. Reference: a loop over pieces.
    torch.manual_seed(1)
    cfg = ir_config(init_from_data=0)
    cfg.forward.out_bound = 3.0  # some outputs clip
    w = torch.randn(6, 13)
    layer = make_linear(w, cfg, max_in=max_in).eval()
    sizes = balanced_split(13, max_in)
    assert layer.in_sizes == sizes
    ranges = torch.linspace(0.7, 1.6, len(sizes))
    with torch.no_grad():
        layer.tile.input_range.copy_(ranges.reshape(1, -1))
    x = 1.5 * torch.randn(10, 13)
    expected = 0
    for (a, e), r in zip(pieces(x, sizes), ranges.tolist()):
        xc = x[:, a:e].clamp(-r, r) / r
        expected = expected + r * reference_tile(xc, w[:, a:e], cfg.forward)
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_grouped_conv_has_a_range_per_group_and_piece():
    torch.manual_seed(2)
    cfg = ir_config(init_from_data=0)
    cfg.forward.is_perfect = True
    cfg.mapping.max_input_size = 10  # 4 channels/group * 3*3 = 36 inputs -> 4 pieces of 9
    conv = AnalogConv2d(8, 6, 3, padding=1, groups=2, rpu_config=cfg).eval()
    assert tuple(conv.tile.input_range.shape) == (2, 4)
    with torch.no_grad():
        conv.tile.input_range.copy_(torch.tensor([[0.3, 0.6, 0.9, 1.2], [1.5, 1.8, 2.1, 2.4]]))
    x = 2 * torch.randn(2, 8, 5, 5)
    # Reference: unfold per group, clip each piece by its range, matmul, fold.
    cols = F.unfold(x, 3, padding=1).reshape(2, 2, 36, 25)  # (batch, group, K, L)
    r = conv.tile.input_range.detach().repeat_interleave(9, dim=1)  # (group, K)
    cols = torch.maximum(torch.minimum(cols, r[None, :, :, None]), -r[None, :, :, None])
    wg = conv.weight.detach().reshape(2, 3, 36)
    y = torch.einsum("gnk,bgkl->bgnl", wg, cols).reshape(2, 6, 5, 5) + conv.bias.detach().reshape(1, 6, 1, 1)
    torch.testing.assert_close(conv(x), y, rtol=1e-5, atol=1e-5)


def test_initialization_from_data_is_a_running_mean_of_alpha_std():
    torch.manual_seed(3)
    cfg = ir_config(init_from_data=2, init_std_alpha=2.0, init_value=5.0)
    w = torch.randn(4, 10)
    layer = make_linear(w, cfg, max_in=5).train()  # pieces 5, 5
    batches = [torch.randn(8, 10) * s for s in (1.0, 3.0, 7.0)]
    std = [torch.stack([b[:, :5].std(), b[:, 5:].std()]) for b in batches]
    layer(batches[0])
    torch.testing.assert_close(layer.tile.input_range.detach()[0], 2.0 * std[0])  # k = 0: the first batch only
    layer(batches[1])
    torch.testing.assert_close(layer.tile.input_range.detach()[0], (2.0 * std[0] + 2.0 * std[1]) / 2)
    assert layer.tile.input_range_update_idx.tolist() == [[2, 2]]
    layer(batches[2])  # past init_from_data: unchanged
    torch.testing.assert_close(layer.tile.input_range.detach()[0], (2.0 * std[0] + 2.0 * std[1]) / 2)
    layer.eval()(batches[2] * 100)  # eval never updates
    assert layer.tile.input_range_update_idx.tolist() == [[2, 2]]


def test_constant_piece_does_not_count_for_initialization():
    cfg = ir_config(init_from_data=5, init_value=4.0)
    layer = make_linear(torch.randn(3, 6), cfg, max_in=3).train()
    x = torch.randn(4, 6)
    x[:, :3] = 1.5  # std 0 in the first piece
    layer(x)
    assert layer.tile.input_range_update_idx.tolist() == [[0, 1]]
    assert layer.tile.input_range[0, 0].item() == 4.0
    torch.testing.assert_close(layer.tile.input_range[0, 1].detach(), 3.0 * x[:, 3:].std())


def _expected_grads(x, w, g, r, cfg):
    """aihwkit's input-range gradient for a perfect tile, one piece: the
    autograd parts cancel (r W (xc/r)), leaving the clipping push and decay."""
    up, low = x >= r, x <= -r
    d = g @ w  # dL/d clip(x)
    push = (d.clamp(max=0) * up).sum() - (d.clamp(min=0) * low).sum()
    if cfg.gradient_relative:
        push = push * r
    push = push * cfg.gradient_scale
    frac = 1 - (up | low).float().mean()
    decay = cfg.decay * r * float(frac > cfg.input_min_percentage)
    grad_x = d.masked_fill(up | low, 0.0)
    return push + decay, grad_x


@pytest.mark.parametrize(
    "fields, scale",
    [
        ({}, 1.2),  # many clip: no decay
        ({}, 0.2),  # few clip: decay adds decay * r
        ({"gradient_relative": False, "gradient_scale": 3.0, "decay": 0.5}, 0.2),
    ],
)
def test_gradient_of_the_range_and_of_the_input(fields, scale):
    torch.manual_seed(4)
    cfg = ir_config(init_from_data=0, **fields)
    cfg.forward.is_perfect = True
    w = torch.randn(5, 40)
    layer = make_linear(w, cfg).train()
    r = 0.8
    with torch.no_grad():
        layer.tile.input_range.fill_(r)
    x = (scale * torch.randn(6, 40)).requires_grad_()
    g = torch.randn(6, 5)
    (layer(x) * g).sum().backward()
    exp_r, exp_x = _expected_grads(x.detach(), w, g, torch.tensor(r), cfg.pre_post.input_range)
    frac = 1 - ((x.detach().abs() >= r).float().mean())
    assert (frac > 0.95) == (scale == 0.2)  # the cases cover both sides of input_min_percentage
    torch.testing.assert_close(layer.tile.input_range.grad[0, 0], exp_r, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x.grad, exp_x, rtol=1e-5, atol=1e-6)


def test_gradient_with_output_clipping_management():
    # Noise-free, unquantized tile with a low ADC bound: y = r clamp(W v, +-b), v = clip(x)/r.
    # Autograd (straight-through ADC): d/dr = sum g (clamp(Wv) - W v); plus the push and
    # -(1 - f) r for the fraction f of unclipped outputs below output_min_percentage.
    torch.manual_seed(5)
    cfg = ir_config(init_from_data=0, manage_output_clipping=True, decay=0.0)
    cfg.forward.inp_res = -1
    cfg.forward.out_res = -1
    cfg.forward.out_bound = 2.0
    w = torch.randn(8, 20)
    layer = make_linear(w, cfg).train()
    r = 1.1
    with torch.no_grad():
        layer.tile.input_range.fill_(r)
    x = torch.randn(12, 20)
    g = torch.randn(12, 8)
    (layer(x) * g).sum().backward()
    xc = x.clamp(-r, r)
    wv = (xc / r) @ w.T
    f = 1 - (wv.abs() >= 2.0).float().mean()
    assert f < 0.95
    push, _ = _expected_grads(x, w, g, torch.tensor(r), cfg.pre_post.input_range)
    expected = (g * (wv.clamp(-2.0, 2.0) - wv)).sum() + push - (1 - f) * r
    torch.testing.assert_close(layer.tile.input_range.grad[0, 0], expected, rtol=1e-4, atol=1e-4)


def test_fixed_range_gets_no_gradient_and_training_learns_it():
    cfg = ir_config(learn_input_range=False, init_from_data=0)
    layer = make_linear(torch.randn(3, 4), cfg).train()
    assert not layer.tile.input_range.requires_grad
    layer(torch.randn(2, 4)).sum().backward()
    assert layer.tile.input_range.grad is None
    # Learned: inputs far beyond the range and a loss asking for larger outputs widen it.
    torch.manual_seed(6)
    cfg = ir_config(init_from_data=0, init_value=0.5)
    cfg.forward.is_perfect = True
    layer = make_linear(torch.ones(1, 4), cfg).train()
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        (-layer(2.0 + torch.rand(16, 4))).mean().backward()
        layer.weight.grad = None
        opt.step()
    assert layer.tile.input_range.item() > 1.0


def test_state_dict_round_trip_with_weights_only():
    torch.manual_seed(7)
    cfg = ir_config(init_from_data=3)
    layer = make_linear(torch.randn(4, 6), cfg, max_in=3).train()
    layer(torch.randn(5, 6))
    sd = layer.state_dict()
    assert set(sd) >= {"tile.input_range", "tile.input_range_update_idx"}
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    fresh = make_linear(torch.zeros(4, 6), ir_config(init_from_data=3), max_in=3)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(fresh.tile.input_range, layer.tile.input_range)
    assert fresh.tile.input_range_update_idx.tolist() == [[1, 1]]


def test_bad_ranges_and_late_enabling_are_reported():
    layer = make_linear(torch.randn(3, 4), ir_config(init_from_data=0))
    with torch.no_grad():
        layer.tile.input_range.fill_(-1.0)
    with pytest.raises(ValueError, match=r"AnalogLinear\.input_range = \[-1\.0\]: every range must be > 0"):
        layer(torch.randn(2, 4))
    late = AnalogLinear(4, 3)
    late.rpu_config.pre_post.input_range.enable = True
    with pytest.raises(ValueError, match="enable it in the config before converting"):
        late(torch.randn(2, 4))


def test_compiled_model_trains_its_input_ranges():
    torch.manual_seed(8)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    cfg = ir_config(init_from_data=1)
    cfg.mapping.max_input_size = 8
    analog = fxanalog.compile(model, cfg)
    names = [n for n, _ in analog.named_parameters() if n.endswith("input_range")]
    assert len(names) == 2
    x = torch.randn(32, 12)
    analog.train()
    before = {n: p.detach().clone() for n, p in analog.named_parameters() if n.endswith("input_range")}
    opt = torch.optim.SGD(analog.parameters(), lr=0.1)
    loss = F.cross_entropy(analog(x), torch.randint(0, 3, (32,)))
    loss.backward()
    opt.step()
    after = dict(analog.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in names)
    # the source model is untouched and has no input range
    assert not any(n.endswith("input_range") for n, _ in model.named_parameters())
