"""The tile forward (section 1 of the reference) and tile arrays (section 2).

Expected values come from hand computations, from the independent loop
implementation in ``reference_tile.py``, or from formulas for noise
statistics (tolerances stated at each test).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fxanalog
from fxanalog import (
    BoundManagementType,
    FloatingPointRPUConfig,
    InferenceRPUConfig,
    IOParameters,
    NoiseManagementType,
    WeightNoiseType,
)
from fxanalog.nn import AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogLinear
from fxanalog.geometry import split_sizes

from reference_tile import balanced_split, reference_tile, reference_tile_array


def quiet(**forward) -> InferenceRPUConfig:
    """A config without any noise, with the given forward fields."""
    cfg = InferenceRPUConfig()
    cfg.forward.out_noise = 0.0
    for k, v in forward.items():
        setattr(cfg.forward, k, v)
    return cfg


def linear(w, b=None, cfg=None, mapped=True) -> AnalogLinear:
    w = torch.as_tensor(w, dtype=torch.float32)
    layer = AnalogLinear(w.shape[1], w.shape[0], bias=b is not None, rpu_config=cfg, mapped=mapped)
    layer.set_weights(w, None if b is None else torch.as_tensor(b, dtype=torch.float32))
    return layer.eval()


# ----------------------------------------------------------------------------
# Exact grids, clipping, bound management: hand-computed cases


def test_dac_grid_by_hand():
    # inp_res 0.25 -> dx = 0.5: levels -1, -0.5, 0, 0.5, 1; ABS_MAX alpha = 1 here.
    cfg = quiet(inp_res=0.25, out_res=0.0, out_bound=0.0)
    layer = linear(torch.eye(4), cfg=cfg)
    x = torch.tensor([[0.3, -1.0, 0.5, 0.74]])
    # 0.3/0.5 = 0.6 -> 1; -2 -> -2; 1 -> 1; 1.48 -> 1 (times 0.5)
    assert layer(x).tolist() == [[0.5, -1.0, 0.5, 0.5]]
    # A step count > 1 means 1/res: 4 steps is the same grid.
    cfg.forward.inp_res = 4
    assert linear(torch.eye(4), cfg=cfg)(x).tolist() == [[0.5, -1.0, 0.5, 0.5]]


def test_dac_rounds_half_to_even():
    cfg = quiet(inp_res=0.25, out_res=0.0, out_bound=0.0)
    layer = linear(torch.eye(3), cfg=cfg)
    # alpha = 1: 0.25/0.5 = 0.5 -> 0 (even), 0.75/0.5 = 1.5 -> 2, -1 -> -2
    assert layer(torch.tensor([[0.25, 0.75, -1.0]])).tolist() == [[0.0, 1.0, -1.0]]


def test_dac_quantizes_relative_to_abs_max():
    cfg = quiet(inp_res=0.25, out_res=0.0, out_bound=0.0)
    layer = linear(torch.eye(2), cfg=cfg)
    # alpha = 4: x/alpha = [0.3, 1] -> [0.5, 1] -> times 4
    assert layer(torch.tensor([[1.2, 4.0]])).tolist() == [[2.0, 4.0]]


def test_input_clipping_without_noise_management():
    cfg = quiet(inp_res=0.0, out_res=0.0, out_bound=0.0, noise_management=NoiseManagementType.NONE)
    layer = linear(torch.eye(3), cfg=cfg)
    assert layer(torch.tensor([[2.0, -3.0, 0.5]])).tolist() == [[1.0, -1.0, 0.5]]


def test_constant_max_and_capped_noise_management():
    # CONSTANT: alpha = nm_thres = 2; dx = 0.5 -> x/2 on the grid, times 2.
    cfg = quiet(inp_res=0.25, out_res=0.0, out_bound=0.0, noise_management=NoiseManagementType.CONSTANT, nm_thres=2.0)
    assert linear(torch.eye(3), cfg=cfg)(torch.tensor([[0.6, -5.0, 1.0]])).tolist() == [[1.0, -2.0, 1.0]]
    # MAX: alpha = max(x) = 2 (not max|x| = 3): -3/2 = -1.5 -> clipped to -1.
    cfg = quiet(inp_res=0.25, out_res=0.0, out_bound=0.0, noise_management=NoiseManagementType.MAX)
    assert linear(torch.eye(3), cfg=cfg)(torch.tensor([[2.0, -3.0, 0.6]])).tolist() == [[2.0, -2.0, 1.0]]
    # ABS_MAX capped at nm_thres = 1: alpha = 1 although max|x| = 3.
    cfg = quiet(inp_res=0.25, out_res=0.0, out_bound=0.0, nm_thres=1.0)
    assert linear(torch.eye(2), cfg=cfg)(torch.tensor([[3.0, 0.3]])).tolist() == [[1.0, 0.5]]


def test_dac_quantizes_then_clips_with_an_odd_number_of_levels():
    # inp_res = 127 levels: dx = 2/127, 63.5 steps to the bound. x = [1, 0.3],
    # ABS_MAX: 1/dx = 63.5 rounds (half to even) to 64 steps = 1.00787, which
    # the DAC then clips to inp_bound = 1 (aihwkit gives 1.0); 0.3 has weight 0.
    for nm in (NoiseManagementType.ABS_MAX, NoiseManagementType.MAX):
        cfg = quiet(inp_res=127, out_res=0.0, noise_management=nm)
        y = linear([[1.0, 0.0]], cfg=cfg)(torch.tensor([[1.0, 0.3]])).item()
        assert y == pytest.approx(1.0, abs=1e-6), nm


def aihwkit_dac(x: np.ndarray, alpha: np.ndarray, res: float) -> np.ndarray:
    """The DAC in aihwkit's C++ float32 order, written out: the step
    dx = float32(1/float32(res)) * 2 (res > 1 levels), the scale 1/alpha,
    v = x * (1/alpha), rint(v / dx) * dx, then the clip to [-1, 1]."""
    f = np.float32
    dx = (f(1) / f(res)) * f(2)
    v = x.astype(f) * (f(1) / alpha.astype(f))[:, None]
    return np.clip(np.rint(v / dx) * dx, f(-1), f(1))


def test_dac_half_step_ties_resolve_as_aihwkit():
    # Inputs on exact half steps of the 127-level DAC (t * 63.5 = m/2, m odd)
    # scaled by a random alpha: whether x * (1/alpha) / dx lands a hair above
    # or below m/2 depends on the float32 order; aihwkit multiplies by
    # 1/alpha first, then divides by dx. The identity weights read the DAC
    # output back: y = alpha * v.
    gen = torch.Generator().manual_seed(7)
    a = torch.rand(400, generator=gen) * 3 + 0.05
    m = torch.randint(-63, 64, (400, 7), generator=gen) * 2 + 1  # odd: -125 .. 127
    x = torch.cat([a[:, None], a[:, None] * (m / 127.0)], dim=1)  # first input = alpha (> 0)
    want = aihwkit_dac(x.numpy(), a.numpy(), 127) * a.numpy()[:, None]
    for nm in (NoiseManagementType.ABS_MAX, NoiseManagementType.MAX):
        cfg = quiet(inp_res=127, out_res=0.0, out_bound=0.0, noise_management=nm)
        y = linear(torch.eye(8), cfg=cfg)(x)
        assert torch.allclose(y, torch.from_numpy(want), rtol=1e-6, atol=0), nm
    # the case matters: the other float32 order, x * (1/alpha/dx), rounds some differently
    fused = torch.round(x * ((1.0 / a) / (2 / 127))[:, None])
    assert bool((fused != torch.round(torch.from_numpy(want / a.numpy()[:, None]) / (2 / 127))).any())


def test_constant_noise_management_with_zero_threshold_uses_scale_one():
    # aihwkit: CONSTANT with nm_thres = 0 divides by 1. dx = 0.5 (inp_res 0.25):
    # 0.6 -> 1.2 steps -> 1 = 0.5; -5 -> clipped to -1; 1.0 -> 2 steps = 1.0.
    cfg = quiet(inp_res=0.25, out_res=0.0, out_bound=0.0, noise_management=NoiseManagementType.CONSTANT,
                nm_thres=0.0)
    layer = linear(torch.eye(3), cfg=cfg)
    assert layer(torch.tensor([[0.6, -5.0, 1.0], [0.0, 0.0, 0.0]])).tolist() == [[0.5, -1.0, 1.0], [0.0, 0.0, 0.0]]


def test_adc_grid_and_clip_by_hand():
    # out_res 0.1, out_bound 2 -> dy = 0.4; no input quantization, alpha = 1.
    cfg = quiet(inp_res=0.0, out_res=0.1, out_bound=2.0, noise_management=NoiseManagementType.NONE,
                bound_management=BoundManagementType.NONE, inp_bound=10.0)
    layer = linear(torch.eye(4), cfg=cfg)
    y = layer(torch.tensor([[0.5, 0.19, -0.61, 3.0]]))
    # 1.25 -> 1; 0.475 -> 0; -1.525 -> -2; 7.5 -> 8 = 3.2 -> clipped to 2
    assert torch.allclose(y, torch.tensor([[0.4, 0.0, -0.8, 2.0]]), atol=1e-6)


def test_out_scale_multiplies_the_result():
    cfg = quiet(inp_res=0.0, out_res=0.0, out_bound=0.0, out_scale=3.0)
    assert torch.allclose(linear(torch.eye(2), cfg=cfg)(torch.tensor([[0.5, -1.0]])), torch.tensor([[1.5, -3.0]]))


def test_bound_management_rounds_until_in_range():
    # One output summing 40 unit inputs: y = 40 > 12 at r=1, 20 at r=2, 10 at r=4.
    cfg = quiet(inp_res=0.0, out_res=0.0)
    layer = linear(torch.ones(1, 40), cfg=cfg)
    assert layer(torch.ones(1, 40)).item() == pytest.approx(40.0, rel=1e-6)
    # Without bound management the ADC clips at 12.
    layer.rpu_config.forward.bound_management = BoundManagementType.NONE
    assert layer(torch.ones(1, 40)).item() == pytest.approx(12.0)


def test_bound_management_last_round_by_factor():
    # max_bm_factor = 2: round r=2 (2 > 2 is false) then r=4 is the last (4 > 2): 10 fits.
    # max_bm_factor = 1: r=2 is the last round (2 > 1): 20 clipped to 12, times 2.
    cfg = quiet(inp_res=0.0, out_res=0.0, max_bm_factor=1)
    assert linear(torch.ones(1, 40), cfg=cfg)(torch.ones(1, 40)).item() == pytest.approx(24.0)
    cfg.forward.max_bm_factor = 2
    assert linear(torch.ones(1, 40), cfg=cfg)(torch.ones(1, 40)).item() == pytest.approx(40.0, rel=1e-6)


def test_bound_management_last_round_by_resolution():
    # Default DAC: dx = 1/63, max_bm_res/dx = 15.75: rounds 1, 2, 4, 8, 16; 16 is last.
    # 240 unit inputs at r=16: v = rint(63/16)/63 = 4/63, y = 240*4/63 = 15.2 -> clipped to 12.
    cfg = quiet(out_res=0.0)
    y = linear(torch.ones(1, 240), cfg=cfg)(torch.ones(1, 240)).item()
    assert y == pytest.approx(12.0 * 16)


def test_bound_management_test_is_strict_as_aihwkit():
    # Issue example: no noise, no quantization, NM NONE, BM ITERATIVE,
    # inp_bound = out_bound = 1, w = 1, x = 10: the DAC clips x to 1, y = 1
    # lands exactly on the bound, which aihwkit's tile does not count as
    # saturated (|y| > out_bound): no second round, the result is 1.0 (a >=
    # test would halve the input until r = 1024 and give 10.0).
    cfg = quiet(inp_res=0.0, out_res=0.0, noise_management=NoiseManagementType.NONE,
                bound_management=BoundManagementType.ITERATIVE, inp_bound=1.0, out_bound=1.0)
    assert linear([[1.0]], cfg=cfg)(torch.tensor([[10.0]])).item() == 1.0
    # Quantized, a level exactly at the bound: out_res 0.25 -> dy = 0.5, y = 1 is level 2,
    # exactly 1.0 in float32: not saturated either.
    cfg.forward.out_res = 0.25
    assert linear([[1.0]], cfg=cfg)(torch.tensor([[10.0]])).item() == 1.0
    # With inp_bound = 10: x = 1.2 -> 2.4 steps -> level 2 = 1.0, not saturated: 1.0;
    # x = 1.3 -> 2.6 steps -> level 3 = 1.5 > 1, saturated; r = 2: 0.65 -> 1.3 steps
    # -> level 1 = 0.5, times 2 = 1.0.
    cfg.forward.inp_bound = 10.0
    assert linear([[1.0]], cfg=cfg)(torch.tensor([[1.2]])).item() == 1.0
    assert linear([[1.0]], cfg=cfg)(torch.tensor([[1.3]])).item() == 1.0


def test_bound_management_top_default_level_counts_in_float32():
    # Default ADC (out_bound 12, 511 levels): dy = 24/510 and level 255 is the
    # bound, 12.0 in exact arithmetic but 12.000001 in aihwkit's float32
    # (255 * float32(24/510)), so it counts as saturated there. 12 inputs of
    # 1 with weights 1.001: y = 12.012 -> level 255 -> redone at r = 2:
    # 6.006 / dy = 127.63 -> level 128 -> 128 * dy * 2.
    dy = 24 / 510
    assert float(np.float32(255) * np.float32(np.float32(1 / 510) * np.float32(24))) > 12.0
    cfg = quiet(inp_res=0.0, noise_management=NoiseManagementType.NONE)
    y = linear(torch.full((1, 12), 1.001), cfg=cfg)(torch.ones(1, 12)).item()
    assert y == pytest.approx(128 * dy * 2, rel=1e-6)


def test_bound_management_redoes_only_rows_that_clipped():
    # Row 0 saturates; row 1 (y = 0.3, dy = 0.4) would quantize to 0 if it were
    # redone at r=2 (0.15/0.4 -> 0), and to 0.4 at r=1.
    cfg = quiet(inp_res=0.0, out_res=0.1, out_bound=2.0, noise_management=NoiseManagementType.NONE,
                inp_bound=100.0)
    w = torch.tensor([[1.0, 1.0]])
    y = linear(w, cfg=cfg)(torch.tensor([[1.5, 1.5], [0.15, 0.15]]))
    # row 0: 3 >= 2 -> r=2: 1.5 -> rint(3.75)=4 -> 1.6 -> times 2 = 3.2
    assert torch.allclose(y, torch.tensor([[3.2], [0.4]]), atol=1e-6)


def test_zero_batch_gives_zero_without_noise_and_zero_weights_work():
    cfg = InferenceRPUConfig()  # with output noise
    layer = linear(torch.randn(5, 7), cfg=cfg)
    assert torch.equal(layer(torch.zeros(3, 7)), torch.zeros(3, 5))
    zero_w = linear(torch.zeros(5, 7), cfg=quiet())
    assert torch.equal(zero_w(torch.randn(3, 7)), torch.zeros(3, 5))


@pytest.mark.parametrize("make, shape", [
    (lambda cfg: AnalogLinear(10, 5, rpu_config=cfg), (0, 10)),
    (lambda cfg: AnalogLinear(10, 5, rpu_config=cfg), (3, 0, 10)),
    (lambda cfg: AnalogConv2d(4, 6, 3, groups=2, rpu_config=cfg), (0, 4, 7, 7)),
])
def test_empty_batch_gives_an_empty_output_like_digital(make, shape):
    # Forward and backward as the digital layer: an empty output, an empty input
    # gradient, a zero weight gradient; for one tile, tile arrays with weight
    # scaling, and an ideal tile.
    arrays = InferenceRPUConfig()
    arrays.mapping.max_input_size = arrays.mapping.max_output_size = 4
    arrays.mapping.weight_scaling_omega = 1.0
    perfect = InferenceRPUConfig()
    perfect.forward.is_perfect = True
    for cfg in (InferenceRPUConfig(), arrays, perfect):
        layer = make(cfg)
        x = torch.randn(*shape, requires_grad=True)
        y = layer(x)
        want = layer.to_digital()(x.detach())
        assert y.shape == want.shape and y.numel() == 0
        y.sum().backward()
        assert x.grad.shape == x.shape
        assert torch.equal(layer.weight.grad, torch.zeros_like(layer.weight))
        with torch.no_grad():
            assert layer.eval()(x.detach()).shape == want.shape


def test_batch_of_one_and_one_by_one_layer():
    cfg = quiet(inp_res=0.0, out_res=0.0)
    assert linear([[2.0]], cfg=cfg)(torch.tensor([[0.25]])).item() == pytest.approx(0.5)
    w = torch.randn(6, 9)
    x = torch.randn(1, 9)
    assert torch.allclose(linear(w, cfg=cfg)(x), x @ w.T, atol=1e-5)


def test_nan_and_inf_propagate_like_digital():
    layer = linear(torch.randn(4, 6), cfg=InferenceRPUConfig())
    x = torch.randn(3, 6)
    x[0, 2] = float("nan")
    x[1, 4] = float("inf")
    y = layer(x)
    digital = x @ layer.weight.T
    assert torch.isfinite(y[2]).all()
    assert (~torch.isfinite(y[0])).all() and (~torch.isfinite(digital[0])).all()
    assert (~torch.isfinite(y[1])).all() and (~torch.isfinite(digital[1])).all()


def test_tiny_inputs_give_finite_scale_invariant_outputs():
    # A row with max|x| far below 1 (down to subnormals) must not give NaN
    # (1/alpha overflows in float32 below ~3e-39). ABS_MAX noise management
    # makes the tile scale-invariant: without noise, the output of x * 2^-k
    # is exactly the output of x times 2^-k (powers of two are exact), up to
    # the float32 resolution of the (maybe subnormal) result.
    cfg = quiet()
    cfg.mapping.max_input_size = 4
    layer = linear(torch.randn(5, 9), cfg=cfg)
    x = torch.randn(6, 9)
    k = torch.tensor([0, 100, 120, 126, 130, 140], dtype=torch.float64)
    scale = torch.pow(2.0, -k)[:, None]
    small = (x.double() * scale).float()  # subnormal rows keep fewer bits: scale them back up exactly
    y = layer(small).double()
    want = layer((small.double() / scale).float()).double() * scale
    assert torch.isfinite(y).all()
    # rows >= 2^-120 at float32 precision; below, the digital factor alpha * dy is
    # itself subnormal: its rounding (<= 0.7e-45) times up to ~255 ADC steps
    assert torch.allclose(y, want, rtol=1e-5, atol=2e-43)
    assert (y[:5] != 0).any(dim=1).all()  # not flushed to zero (the last row's outputs may underflow)


def test_an_infinite_weight_spoils_only_its_own_output_column():
    # weight_scaling_omega = 1: the scale is max|W| over the finite weights,
    # so the other columns are those of the same layer with that weight 0,
    # and the column of the infinite weight is non-finite, as digitally.
    w = torch.randn(5, 8)
    x = torch.randn(4, 8)
    for max_in in (0, 3):
        cfg = quiet()
        cfg.mapping.weight_scaling_omega = 1.0
        cfg.mapping.max_input_size = max_in
        w_inf, w_zero = w.clone(), w.clone()
        w_inf[2, 3], w_zero[2, 3] = float("inf"), 0.0
        y = linear(w_inf, cfg=cfg)(x)
        keep = [0, 1, 3, 4]
        assert torch.equal(y[:, keep], linear(w_zero, cfg=cfg)(x)[:, keep])
        assert not torch.isfinite(y[:, 2]).any() and not torch.isfinite((x @ w_inf.T)[:, 2]).any()


def test_eval_sees_weight_writes_through_data_and_no_grad():
    # In eval under no_grad the tile array is a copy of the weights when the
    # pieces are uneven or the weights scaled; writes through .data (which do
    # not bump the tensor's version) and no_grad in-place writes must be seen.
    # Without ADC/DAC quantization or bounds the tile is linear: doubling the
    # weights doubles the output (the mapping scale is fixed at conversion).
    w, x = torch.randn(4, 8), torch.randn(3, 8)
    for omega, max_in in ((1.0, 0), (0.0, 3), (1.0, 3)):
        cfg = quiet(inp_res=0.0, out_res=0.0, out_bound=0.0)
        cfg.mapping.weight_scaling_omega, cfg.mapping.max_input_size = omega, max_in
        layer = linear(w, cfg=cfg)
        with torch.no_grad():
            a = layer(x)
            assert torch.allclose(a, x @ w.T, rtol=1e-5, atol=1e-6)
            layer.weight.data.mul_(2)
            assert torch.allclose(layer(x), 2 * a, rtol=1e-5, atol=1e-6)
            layer.weight.mul_(0.25)
            assert torch.allclose(layer(x), 0.5 * a, rtol=1e-5, atol=1e-6)
    # Programmed weights (the tile's own buffer, whose layout is cached): an
    # in-place write bumps its version and is seen too.
    cfg = quiet(inp_res=0.0, out_res=0.0, out_bound=0.0)
    cfg.mapping.max_input_size = 3
    layer = linear(w, cfg=cfg)
    layer.program_analog_weights()
    with torch.no_grad():
        a = layer(x)
        assert torch.equal(layer(x), a)
        layer.tile.analog_weight.mul_(2)
        assert torch.allclose(layer(x), 2 * a, rtol=1e-5, atol=1e-6)


def test_is_perfect_is_exactly_digital():
    lin = torch.nn.Linear(30, 20)
    x = torch.randn(7, 30)
    cfg = InferenceRPUConfig()
    cfg.forward.is_perfect = True
    for c in (cfg, FloatingPointRPUConfig()):
        a = AnalogLinear.from_digital(lin, c)
        assert torch.allclose(a(x), lin(x), atol=1e-6)


# ----------------------------------------------------------------------------
# Against the independent per-vector implementation


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"noise_management": NoiseManagementType.MAX},
        {"noise_management": NoiseManagementType.NONE, "bound_management": BoundManagementType.NONE},
        {"inp_res": 0.0, "out_res": 0.0},
        {"inp_res": 2**5 - 2.0, "out_res": 1 / 62, "out_bound": 6.0},
        {"ir_drop": 1.0, "ir_drop_g_ratio": 50.0},
        {"out_nonlinearity": 0.3},
    ],
)
def test_single_tile_matches_reference(fields):
    torch.manual_seed(1)
    cfg = quiet(**fields)
    w = torch.randn(11, 19) * 0.3
    x = torch.randn(13, 19)
    got = linear(w, cfg=cfg, mapped=False)(x)
    want = reference_tile(x, w, cfg.forward)
    # One output step of slack for rare float ties (the reference is float64).
    dy = 2 * cfg.forward.out_bound * (cfg.forward.out_res if 0 < cfg.forward.out_res <= 1 else 0)
    assert torch.allclose(got.double(), want, atol=1e-5 + dy * 4.0)
    assert (got.double() - want).abs().gt(1e-4).float().mean() < 0.02


def test_split_sizes_balanced_rule():
    assert split_sizes(1300, 512) == [434, 433, 433]
    assert split_sizes(1024, 512) == [512, 512]
    assert split_sizes(100, 0) == [100]
    for size, mx in [(37, 16), (23, 10), (513, 512), (2048, 512)]:
        assert split_sizes(size, mx) == balanced_split(size, mx)


@pytest.mark.parametrize("max_in, max_out", [(16, 10), (512, 512), (7, 23), (12, 4)])
def test_tile_array_matches_per_tile_loop(max_in, max_out):
    torch.manual_seed(2)
    cfg = quiet()
    cfg.mapping.max_input_size, cfg.mapping.max_output_size = max_in, max_out
    w = torch.randn(23, 37) * 0.5
    b = torch.randn(23)
    x = torch.randn(9, 37)
    layer = linear(w, b, cfg=cfg)
    assert layer.in_sizes == balanced_split(37, max_in) and layer.out_sizes == balanced_split(23, max_out)
    want = reference_tile_array(x, w, cfg.forward, max_in, max_out, b)
    got = layer(x)
    assert torch.allclose(got.double(), want, atol=1e-4), (got.double() - want).abs().max()


def test_tile_array_bound_management_per_tile():
    # Two input pieces of 20 ones. The first tile (weights 2) gives 40 and is
    # redone at r = 2 (20) and r = 4 (10); the second (weights 0.1) gives 2 and
    # is never redone. Exact without quantization.
    cfg = quiet(inp_res=0.0, out_res=0.0)
    cfg.mapping.max_input_size = 20
    w = torch.cat([2.0 * torch.ones(1, 20), 0.1 * torch.ones(1, 20)], dim=1)
    x = torch.ones(2, 40)
    assert torch.allclose(linear(w, cfg=cfg)(x), torch.full((2, 1), 42.0))
    # max_bm_factor = 1: r = 2 is the last round: 20 is clipped to 12, times 2.
    cfg.forward.max_bm_factor = 1
    assert torch.allclose(linear(w, cfg=cfg)(x), torch.full((2, 1), 24.0 + 2.0))


def test_layer_holds_its_own_config_copy():
    cfg = quiet()
    layer = linear(torch.ones(2, 40), cfg=cfg)
    cfg.forward.out_noise = 0.5  # the user's object, not the layer's
    assert layer.rpu_config.forward.out_noise == 0.0
    layer.rpu_config.mapping.max_input_size = 20  # the mapping is read at conversion
    assert layer.in_sizes == [40]


# ----------------------------------------------------------------------------
# Noise statistics (formulas of section 1)


def _diffs(cfg, w, x, draws):
    layer = linear(w, cfg=cfg, mapped=False)
    xs = x.expand(draws, -1).contiguous()
    return layer(xs)


def test_output_noise_std_scales_with_alpha():
    # Zero weights: y = alpha * out_noise * xi (ADC off). 40k draws x 4 outputs:
    # relative standard error of a std estimate ~ 1/sqrt(2*160k) = 0.18%; tolerance 2%.
    torch.manual_seed(3)
    cfg = InferenceRPUConfig()
    cfg.forward.out_res = 0.0
    for scale in (1.0, 3.0):
        x = torch.tensor([[0.5, -1.0, 0.25]]) * scale
        y = _diffs(cfg, torch.zeros(4, 3), x, 40000)
        # zero weights with a non-zero input: noise only
        assert y.std().item() == pytest.approx(0.06 * scale, rel=0.02)
        assert y.mean().abs().item() < 0.06 * scale * 0.02


def test_input_noise_std():
    # v = q(x/alpha) + inp_noise*xi; y = alpha * W v: std_i = alpha*inp_noise*||W_i||.
    torch.manual_seed(4)
    cfg = quiet(inp_noise=0.05, out_res=0.0)
    w = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.5, 0.5]])
    x = torch.tensor([[2.0, -1.0, 0.5]])
    y = _diffs(cfg, w, x, 40000)
    want = 2.0 * 0.05 * w.norm(dim=1)
    assert torch.allclose(y.std(dim=0), want, rtol=0.03)


@pytest.mark.parametrize("kind", [WeightNoiseType.ADDITIVE_CONSTANT, WeightNoiseType.PCM_READ])
def test_weight_read_noise_std(kind):
    torch.manual_seed(5)
    cfg = quiet(w_noise=0.1, w_noise_type=kind, inp_res=0.0, out_res=0.0)
    w = torch.tensor([[0.8, -0.4, 0.2, 0.1], [0.0, 0.3, -0.6, 0.9]])
    x = torch.tensor([[1.0, -0.5, 0.25, 0.8]])
    y = _diffs(cfg, w, x, 40000)
    v = x[0] / x.abs().max()  # normalized input
    if kind == WeightNoiseType.ADDITIVE_CONSTANT:
        want = 0.1 * v.norm() * torch.ones(2)
    else:
        want = 0.1 * torch.sqrt(w.abs() @ v.square())
    want = want * x.abs().max()  # back to input units
    assert torch.allclose(y.std(dim=0), want, rtol=0.03)
    assert torch.allclose(y.mean(dim=0), x[0] @ w.T, atol=float(want.max()) * 0.03)


def test_stochastic_rounding_is_unbiased_and_on_the_grid():
    # DAC with dx = 0.5; x/alpha = 0.3 -> 0.5 with p = 0.6, 0 with p = 0.4: mean 0.3.
    torch.manual_seed(6)
    cfg = quiet(inp_res=0.25, inp_sto_round=True, out_res=0.0, out_bound=0.0)
    y = _diffs(cfg, torch.eye(2), torch.tensor([[0.3, 1.0]]), 40000)
    assert set(y[:, 0].unique().tolist()) <= {0.0, 0.5}
    assert y[:, 0].mean().item() == pytest.approx(0.3, abs=0.01)  # sd of mean 0.0012
    # ADC: dy = 0.4, y = 0.5 -> 0.4 (p 0.75) or 0.8 (p 0.25): mean 0.5.
    cfg = quiet(inp_res=0.0, out_res=0.1, out_bound=2.0, out_sto_round=True,
                noise_management=NoiseManagementType.NONE)
    y = _diffs(cfg, torch.eye(1), torch.tensor([[0.5]]), 40000)
    assert set(torch.round(y[:, 0] / 0.4).unique().tolist()) <= {1.0, 2.0}
    assert y.mean().item() == pytest.approx(0.5, abs=0.01)


def test_noise_is_fresh_and_seeded():
    layer = linear(torch.randn(8, 8), cfg=InferenceRPUConfig())
    x = torch.randn(4, 8)
    fxanalog.manual_seed(11)
    a = layer(x)
    b = layer(x)
    fxanalog.manual_seed(11)
    c = layer(x)
    torch.manual_seed(11)
    d = layer(x)
    assert not torch.equal(a, b)
    assert torch.equal(a, c) and torch.equal(a, d)


def test_default_config_error_level():
    # Reference: with omega = 1 a 512-input tile is close to W x; with omega = 0
    # and torch's default init the error is large (~0.35 relative).
    torch.manual_seed(7)
    lin = torch.nn.Linear(512, 256)
    x = torch.randn(64, 512)
    rel = {}
    for omega in (0.0, 1.0):
        cfg = InferenceRPUConfig()
        cfg.mapping.weight_scaling_omega = omega
        a = AnalogLinear.from_digital(lin, cfg).eval()
        ref = F.linear(x, lin.weight)
        y = a(x) - lin.bias
        rel[omega] = ((y - ref).norm() / ref.norm()).item()
    assert 0.2 < rel[0.0] < 0.5
    assert rel[1.0] < 0.1


# ----------------------------------------------------------------------------
# Mapping: weight scaling, output scaling, bias


def test_weight_scaling_omega_per_tensor_and_columnwise():
    torch.manual_seed(8)
    w = torch.randn(5, 6)
    x = torch.randn(4, 6)
    for columnwise in (False, True):
        cfg = quiet()
        cfg.mapping.weight_scaling_omega = 0.8
        cfg.mapping.weight_scaling_columnwise = columnwise
        layer = linear(w, cfg=cfg, mapped=False)
        amax = w.abs().amax(dim=1, keepdim=True) if columnwise else w.abs().max()
        alpha = amax / 0.8
        want = reference_tile(x, w / alpha, cfg.forward) * alpha.reshape(1, -1).double()
        assert torch.allclose(layer(x).double(), want, atol=1e-5)
        # The effective weights are the digital ones.
        assert torch.allclose(layer.get_weights()[0], w, atol=1e-6)


def reference_per_tile_scaling(x, w, b, cfg, max_in, max_out, omega, columnwise):
    """aihwkit's tile array with weight scaling, written out: every tile (its
    own block of w) scaled by its own max|W_t| / omega (per row of the tile
    when columnwise), its output times that factor, partial sums added."""
    ins, outs = balanced_split(w.shape[1], max_in), balanced_split(w.shape[0], max_out)
    cols, o0 = [], 0
    for no in outs:
        acc, i0 = 0, 0
        for ni in ins:
            wt = w[o0 : o0 + no, i0 : i0 + ni]
            amax = wt.abs().amax(dim=1, keepdim=True) if columnwise else wt.abs().max()
            alpha = torch.where(amax > 0, amax / omega, torch.ones_like(amax))
            acc = acc + reference_tile(x[:, i0 : i0 + ni], wt / alpha, cfg.forward) * alpha.reshape(1, -1).double()
            i0 += ni
        cols.append(acc)
        o0 += no
    return torch.cat(cols, dim=1) + b.double()


@pytest.mark.parametrize("columnwise", [False, True])
@pytest.mark.parametrize("max_in, max_out", [(4, 0), (3, 2), (8, 3)])
def test_weight_scaling_per_tile_of_a_tile_array(columnwise, max_in, max_out):
    # Each tile of a tile array gets its own factor (aihwkit's tile arrays):
    # the first input piece has 4x smaller weights, so a per-layer factor
    # would leave its tiles a quarter of their range.
    torch.manual_seed(21)
    w = torch.randn(5, 8)
    w[:, :4] *= 0.25
    b, x = torch.randn(5), torch.randn(6, 8)
    cfg = quiet()
    cfg.mapping.weight_scaling_omega = 0.8
    cfg.mapping.weight_scaling_columnwise = columnwise
    cfg.mapping.max_input_size, cfg.mapping.max_output_size = max_in, max_out
    layer = linear(w, b, cfg=cfg)
    want = reference_per_tile_scaling(x, w, b, cfg, max_in, max_out, 0.8, columnwise)
    assert torch.allclose(layer(x).double(), want, atol=1e-5)
    # every tile uses its full range (omega) and the effective weights are the digital ones
    t = layer.tile.to_tile_units(layer.weight_matrix()).detach()
    assert torch.allclose(layer.tile.geometry.tile_amax(t.abs()), torch.tensor(0.8), atol=1e-6)
    assert torch.allclose(layer.get_weights()[0], w, atol=1e-6)
    # gradients flow to the layer's weights as digitally (straight through)
    layer.train()
    layer(x).sum().backward()
    assert torch.allclose(layer.weight.grad, torch.ones(6, 5).T @ x, atol=1e-5)


def test_weight_scaling_per_tile_programming_read_and_remap():
    torch.manual_seed(22)
    w = torch.randn(4, 9)
    w[:, 5:] *= 0.1
    cfg = quiet(inp_res=0.0, out_res=0.0)
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.max_input_size = 5
    cfg.noise_model.prog_noise_scale = cfg.noise_model.read_noise_scale = 0.0  # noise-free devices
    layer = linear(w, cfg=cfg)
    assert layer.tile.mapping_scales.shape == (1, 4, 2)  # (groups, outputs, input pieces)
    # the noise-free read recovers the digital weights through every tile's factor
    assert torch.allclose(layer.get_weights(realistic=True)[0], w, atol=1e-4)
    # remapping multiplies into the per-tile factors; the effective weights stay
    layer.rpu_config.remap.type = fxanalog.WeightRemapType.CHANNELWISE_SYMMETRIC
    layer.tile.remap(layer.weight_matrix().data)
    assert layer.tile.mapping_scales.shape == (1, 4, 2)
    assert torch.allclose(layer.get_weights()[0], w, atol=1e-5)
    # programming (noise-free devices) keeps the per-tile factors
    x = torch.randn(3, 9)
    before = layer(x)
    layer.program_analog_weights()
    assert torch.allclose(layer(x), before, rtol=1e-5, atol=1e-5)


def test_weight_scaling_on_pulsed_devices_keeps_one_factor_per_layer():
    # The pulsed update takes one learning rate for the whole tile array, so
    # tiles on devices keep aihwkit's per-layer factor (docs/tile.md).
    cfg = fxanalog.SingleRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.max_input_size = 4
    layer = AnalogLinear(9, 3, rpu_config=cfg)
    assert layer.in_sizes == [3, 3, 3]
    assert layer.tile.mapping_scales.shape == (1,)  # one factor (from the weights before the devices' clip)
    assert not layer.tile.per_piece_scales


def test_learned_output_scaling_gets_gradients():
    cfg = quiet(inp_res=0.0, out_res=0.0)
    cfg.mapping.learn_out_scaling = True
    cfg.mapping.out_scaling_columnwise = True
    layer = linear(torch.randn(3, 4), b=torch.randn(3), cfg=cfg).train()
    x = torch.randn(5, 4)
    with torch.no_grad():
        layer.tile.out_scaling_alpha.copy_(torch.tensor([1.0, 2.0, 0.5]))
    y = layer(x)
    want = (x @ layer.weight.T) * torch.tensor([1.0, 2.0, 0.5]) + layer.bias
    assert torch.allclose(y, want, atol=1e-5)
    y.sum().backward()
    assert torch.allclose(layer.tile.out_scaling_alpha.grad, (x @ layer.weight.T).sum(0), atol=1e-4)


# ----------------------------------------------------------------------------
# Convolutions


@pytest.mark.parametrize(
    "cls, digital, shape, kwargs",
    [
        (AnalogConv1d, torch.nn.Conv1d, (2, 4, 17), dict(kernel_size=3, padding="same", dilation=2, padding_mode="reflect")),
        (AnalogConv2d, torch.nn.Conv2d, (2, 6, 9, 8), dict(kernel_size=3, stride=2, padding=1, groups=2)),
        (AnalogConv2d, torch.nn.Conv2d, (1, 4, 7, 7), dict(kernel_size=(3, 2), padding=(1, 2), groups=4, padding_mode="replicate")),
        (AnalogConv3d, torch.nn.Conv3d, (2, 4, 5, 6, 7), dict(kernel_size=(1, 2, 3), padding=(1, 0, 1), padding_mode="circular")),
        (AnalogConv3d, torch.nn.Conv3d, (1, 2, 5, 5, 5), dict(kernel_size=2, stride=(2, 1, 1), dilation=(1, 2, 1))),
    ],
)
def test_conv_perfect_equals_torch(cls, digital, shape, kwargs):
    torch.manual_seed(9)
    conv = digital(shape[1], 8 if kwargs.get("groups", 1) != 4 else 4, **kwargs)
    a = cls.from_digital(conv, FloatingPointRPUConfig())
    x = torch.randn(shape)
    assert torch.allclose(a(x), conv(x), atol=1e-5)
    assert torch.allclose(a(x[0]), conv(x[0]), atol=1e-5)  # unbatched


def test_conv2d_equals_unfold_then_tiles_per_group():
    torch.manual_seed(10)
    conv = torch.nn.Conv2d(6, 4, 3, padding=1, groups=2)
    cfg = quiet()
    cfg.mapping.max_input_size = 10  # 27 inputs per group -> pieces 9, 9, 9
    a = AnalogConv2d.from_digital(conv, cfg)
    x = torch.randn(2, 6, 5, 5)
    cols = F.unfold(x, 3, padding=1)  # (B, 6*9, L)
    want = []
    for g in range(2):
        xg = cols[:, g * 27 : (g + 1) * 27].transpose(1, 2).reshape(-1, 27)
        wg = conv.weight[g * 2 : (g + 1) * 2].reshape(2, 27).detach()
        yg = reference_tile_array(xg, wg, cfg.forward, 10, 512, conv.bias[g * 2 : (g + 1) * 2].detach())
        want.append(yg.reshape(2, 25, 2).permute(0, 2, 1))
    want = torch.cat(want, dim=1).reshape(2, 4, 5, 5)
    assert a.num_tiles == 2 * 3
    assert torch.allclose(a(x).double(), want, atol=1e-4)


# ----------------------------------------------------------------------------
# Gradients


def test_gradcheck_perfect_path():
    cfg = InferenceRPUConfig()
    cfg.forward.is_perfect = True
    cfg.mapping.max_input_size = 3
    layer = AnalogLinear(7, 4, rpu_config=cfg).double()
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: _functional(layer, x, w, b), (x, layer.weight, layer.bias))


def _functional(layer, x, w, b):
    layer.weight, layer.bias = w, b
    return layer(x)


def test_straight_through_gradients_of_noisy_forward():
    # Noisy quantized forward, perfect backward: the gradients are the digital ones.
    torch.manual_seed(12)
    lin = torch.nn.Linear(20, 6)
    a = AnalogLinear.from_digital(lin, InferenceRPUConfig()).train()
    x = torch.randn(8, 20, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    g = torch.randn(8, 6)
    a(x).backward(g)
    lin(x2).backward(g)
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)
    assert torch.allclose(a.weight.grad, lin.weight.grad, atol=1e-5)
    assert torch.allclose(a.bias.grad, lin.bias.grad, atol=1e-5)


def test_weight_gradient_uses_the_raw_input_as_aihwkits_cpp_tile():
    # aihwkit's C++ tile computes the weight update d x^T from the input it
    # received, before its DAC (no clip, no quantization); so does fxanalog.
    # NONE noise management, inp_bound 1, dx = 0.5: the DAC sees [1, 0.5, -1]
    # for x = [3, 0.3, -2], but the weight gradient is g^T x = [3, 0.3, -2] g.
    cfg = quiet(inp_res=0.25, out_res=0.0, noise_management=NoiseManagementType.NONE)
    layer = linear(torch.ones(2, 3), cfg=cfg).train()
    x = torch.tensor([[3.0, 0.3, -2.0]])
    g = torch.tensor([[1.0, -0.5]])
    y = layer(x)
    assert torch.allclose(y, torch.tensor([[0.5, 0.5]]))  # the forward saw the clipped, quantized input
    y.backward(g)
    assert torch.allclose(layer.weight.grad, g.T @ x)


def test_noisy_backward_is_a_transposed_tile_mvm():
    torch.manual_seed(13)
    cfg = InferenceRPUConfig()
    cfg.backward = quiet().forward  # quantized, noise-free backward
    w = torch.randn(6, 10) * 0.5
    layer = linear(w, cfg=cfg).train()
    x = torch.randn(4, 10, requires_grad=True)
    g = torch.randn(4, 6)
    layer(x).backward(g)
    want = reference_tile(g, w.T, cfg.backward)
    assert torch.allclose(x.grad.double(), want, atol=1e-5)


def test_training_step_with_any_optimizer():
    torch.manual_seed(14)
    model = torch.nn.Sequential(AnalogLinear(4, 8), torch.nn.ReLU(), AnalogLinear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, t = torch.randn(64, 4), torch.randn(64, 2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.mse_loss(model(x), t)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


# ----------------------------------------------------------------------------
# dtypes, shapes, errors


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    torch.manual_seed(15)
    lin = torch.nn.Linear(16, 8)
    cfg = quiet()
    a = AnalogLinear.from_digital(lin, cfg).to(dtype)
    x = torch.randn(5, 16).to(dtype)
    y = a(x)
    assert y.dtype == dtype
    ref = AnalogLinear.from_digital(lin.to(dtype).float(), cfg)(x.float())  # same rounded weights
    assert torch.allclose(y.float(), ref, atol=0.05, rtol=0.02)


def test_leading_batch_dimensions():
    lin = torch.nn.Linear(5, 3)
    a = AnalogLinear.from_digital(lin, FloatingPointRPUConfig())
    x = torch.randn(2, 3, 4, 5)
    assert a(x).shape == (2, 3, 4, 3)
    assert torch.allclose(a(x), lin(x), atol=1e-6)


def test_errors_name_layer_shape_and_dtype():
    a = AnalogLinear(5, 3)
    a.analog_name = "encoder.fc1"
    with pytest.raises(ValueError, match=r"encoder.fc1: input of shape \(2, 4\).*in_features = 5"):
        a(torch.randn(2, 4))
    with pytest.raises(TypeError, match="encoder.fc1: input dtype torch.int64: expected a floating-point"):
        a(torch.ones(2, 5, dtype=torch.long))
    conv = AnalogConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"input of shape \(2, 5, 8, 8\).*\(batch, 3"):
        conv(torch.randn(2, 5, 8, 8))


@pytest.mark.parametrize("max_in, max_out", [(16, 10), (12, 4)])
def test_tile_array_with_many_bound_management_rounds_matches_loop(max_in, max_out):
    # Large weights: most tiles clip and need 1 to 4 extra rounds, each piece
    # with its own rows. No DAC quantization, so no half-step ties at r = 2.
    torch.manual_seed(16)
    cfg = quiet(inp_res=0.0)
    cfg.mapping.max_input_size, cfg.mapping.max_output_size = max_in, max_out
    w = torch.randn(23, 37) * 6.0
    x = torch.randn(31, 37)
    got = linear(w, cfg=cfg)(x)
    want = reference_tile_array(x, w, cfg.forward, max_in, max_out)
    assert torch.allclose(got.double(), want, atol=1e-3, rtol=1e-5)


def test_grouped_conv_with_bound_management_matches_loop():
    torch.manual_seed(17)
    conv = torch.nn.Conv2d(4, 6, 3, groups=2, bias=False)
    with torch.no_grad():
        conv.weight.mul_(40.0)
    cfg = quiet(inp_res=0.0)
    cfg.mapping.max_input_size = 7  # 18 inputs per group -> 6, 6, 6
    a = AnalogConv2d.from_digital(conv, cfg)
    x = torch.randn(2, 4, 5, 5)
    cols = F.unfold(x, 3)  # (B, 4*9, 9)
    got = a(x)
    for g in range(2):
        xg = cols[:, g * 18 : (g + 1) * 18].transpose(1, 2).reshape(-1, 18)
        wg = conv.weight[g * 3 : (g + 1) * 3].reshape(3, 18).detach()
        want = reference_tile_array(xg, wg, cfg.forward, 7, 512).reshape(2, 9, 3).permute(0, 2, 1)
        assert torch.allclose(got[:, g * 3 : (g + 1) * 3].reshape(2, 3, 9).double(), want, atol=1e-3, rtol=1e-5)


def test_input_bound_sets_range_and_step():
    # inp_bound 2, inp_res 0.25 -> dx = 0.25 * 2 * 2 = 1: levels -2..2 (no noise management).
    cfg = quiet(inp_bound=2.0, inp_res=0.25, out_res=0.0, out_bound=0.0, noise_management=NoiseManagementType.NONE)
    y = linear(torch.eye(4), cfg=cfg)(torch.tensor([[0.4, 0.6, -3.0, 1.5]]))
    assert y.tolist() == [[0.0, 1.0, -2.0, 2.0]]  # 1.5 -> 2 (half to even)


def test_max_bm_res_sets_the_last_round():
    # dx = 1/63; max_bm_res = 0.1 -> limit 6.3: rounds 1, 2, 4, 8 (the last, 8 > 6.3).
    # 240 unit inputs: at r=8, v = rint(63/8)/63 = 8/63, y = 240*8/63 = 30.5 -> clipped 12, times 8.
    cfg = quiet(out_res=0.0, max_bm_res=0.1)
    assert linear(torch.ones(1, 240), cfg=cfg)(torch.ones(1, 240)).item() == pytest.approx(96.0)
