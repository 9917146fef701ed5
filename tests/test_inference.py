"""Programming, drift, compensation, clipping, modifiers, remapping and
realistic read/write on analog layers (docs/physics.md).

Expected values are computed here by hand or from the formulas; statistical
checks state their tolerance next to the sample size.
"""

import io
import math

import pytest
import torch
from torch import nn

from fxanalog import FloatingPointRPUConfig, InferenceRPUConfig
from fxanalog.config import (
    BoundManagementType,
    NoiseManagementType,
    WeightClipType,
    WeightModifierParameter,
    WeightModifierType,
    WeightNoiseType,
    WeightRemapType,
)
from fxanalog.inference import (
    apply_weight_modifier,
    clip_weights,
    drift_analog_weights,
    install_weight_clipping,
    program_analog_weights,
    read_weights,
    realistic_write,
    remap_weights,
)
from fxanalog.nn.modules import AnalogConv2d, AnalogLinear
from fxanalog.config.noise import GlobalDriftCompensation, PCMLikeNoiseModel, PerColumnDriftCompensation

T_YEAR = 365 * 24 * 3600.0


def pcm_sigma(g: float) -> float:
    gh = g / 25.0
    return 0.26348 + 1.9650 * gh - 1.1731 * gh * gh


def quiet_config(**noise) -> InferenceRPUConfig:
    """A config whose forward is exact, so the tile weights are what is seen."""
    cfg = InferenceRPUConfig()
    cfg.forward.is_perfect = True
    cfg.noise_model = PCMLikeNoiseModel(**noise)
    return cfg


# --------------------------------------------------------------------------
# Programming


def test_program_needs_eval_and_analog_layers():
    layer = AnalogLinear(8, 4)
    with pytest.raises(ValueError, match="training mode"):
        program_analog_weights(layer)
    with pytest.raises(ValueError, match="training mode"):
        drift_analog_weights(layer, 10.0)
    with pytest.raises(ValueError, match="no analog layers"):
        program_analog_weights(nn.Linear(3, 3).eval())
    with pytest.raises(ValueError, match="t_inference"):
        drift_analog_weights(layer.eval(), -1.0)


def test_programming_per_tile_conductance_scale():
    cfg = quiet_config()
    cfg.mapping.max_input_size = 2
    layer = AnalogLinear(4, 2, bias=False, rpu_config=cfg).eval()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0, 0.1, 0.2], [0.25, 0.0, -0.4, 0.0]]))
    program_analog_weights(layer)
    # tile 1: inputs 0-1, max 1.0 -> 25 uS per unit; tile 2: inputs 2-3, max 0.4 -> 62.5
    assert torch.allclose(layer.tile.conductance_scales, torch.tensor([[[25.0, 62.5]]]))
    assert layer.tile.programmed_conductances.shape == (2, 1, 2, 4)


def test_programming_noise_of_layer_weights():
    """Weights 0.5 max|W| on g+ = 12.5 uS, g- = 0: the weight error in uS is
    sigma(12.5) xi - max(0, sigma(0) xi'), std sqrt(s1^2 + s0^2 (1/2 - 1/(2 pi)))."""
    torch.manual_seed(0)
    cfg = quiet_config(read_noise_scale=0.0)
    cfg.mapping.max_input_size = 0
    layer = AnalogLinear(400, 250, bias=False, rpu_config=cfg).eval()
    with torch.no_grad():
        layer.weight.fill_(0.5)
        layer.weight[:, 0] = 1.0  # max 1 -> s = 25 uS per unit
    program_analog_weights(layer)
    err = (layer.tile.analog_weight[0, :, 1:] - 0.5) * 25.0  # 99 750 devices
    s1, s0 = pcm_sigma(12.5), pcm_sigma(0.0)
    expected = math.sqrt(s1 * s1 + s0 * s0 * (0.5 - 1 / (2 * math.pi)))
    assert abs(err.std().item() / expected - 1) < 0.02
    assert abs(err.mean().item() + s0 / math.sqrt(2 * math.pi)) < 0.02


@pytest.mark.parametrize("model", ["pcm", "state_independent", "custom"])
def test_drift_of_noise_free_devices_is_exact(model):
    from fxanalog.config.noise import CustomDriftPCMLikeNoiseModel, StateIndependentNoiseModel

    torch.manual_seed(1)
    cfg = quiet_config(prog_noise_scale=0.0, read_noise_scale=0.0)
    if model == "state_independent":
        cfg.noise_model = StateIndependentNoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0)
    elif model == "custom":
        cfg.noise_model = CustomDriftPCMLikeNoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0)
    cfg.drift_compensation = None
    cfg.mapping.max_input_size = 16
    layer = AnalogLinear(40, 8, rpu_config=cfg).eval()
    target = layer.tile.to_tile_units(layer.weight_matrix()).detach()
    program_analog_weights(layer)
    assert torch.allclose(layer.tile.analog_weight, target, atol=1e-7)
    g, nu = layer.tile.programmed_conductances, layer.tile.drift_exponents
    scale = layer.tile.conductance_scales.repeat_interleave(torch.tensor(layer.in_sizes), dim=2)
    for t in (3600.0, T_YEAR):
        drift_analog_weights(layer, t)
        f = ((t + 20.0) / 20.0) ** (-nu)
        expected = (g[0] * f[0] - g[1] * f[1]) / scale
        assert torch.allclose(layer.tile.analog_weight, expected, rtol=1e-5, atol=1e-7)
        x = torch.randn(5, 40)
        assert torch.allclose(layer(x), x @ expected[0].t() + layer.bias, rtol=1e-4, atol=1e-5)


def test_drift_is_recomputed_from_the_programmed_state():
    cfg = InferenceRPUConfig()
    layer = AnalogLinear(30, 10, rpu_config=cfg).eval()
    drift_analog_weights(layer, 3600.0)  # programs first
    assert layer.tile.programmed_conductances is not None
    torch.manual_seed(7)
    drift_analog_weights(layer, 3600.0)
    one_hour = layer.tile.analog_weight.clone()
    drift_analog_weights(layer, 86400.0)
    torch.manual_seed(7)
    drift_analog_weights(layer, 3600.0)
    assert torch.equal(layer.tile.analog_weight, one_hour)


def test_training_mode_uses_the_digital_weights():
    layer = AnalogLinear(6, 3, rpu_config=quiet_config()).eval()
    program_analog_weights(layer)
    drift_analog_weights(layer, 1e5)
    assert not torch.equal(layer.tile.tile_weight(layer.weight_matrix()), layer.tile.to_tile_units(layer.weight_matrix()))
    layer.train()
    assert torch.equal(layer.tile.tile_weight(layer.weight_matrix()), layer.tile.to_tile_units(layer.weight_matrix()))
    x = torch.randn(4, 6)
    assert torch.allclose(layer(x), x @ layer.weight.t() + layer.bias, atol=1e-6)


def test_floating_point_layers_are_not_programmed():
    layer = AnalogLinear(6, 3, rpu_config=FloatingPointRPUConfig()).eval()
    program_analog_weights(layer)
    drift_analog_weights(layer, 100.0)
    assert layer.tile.analog_weight is None


@pytest.mark.parametrize("comp", [GlobalDriftCompensation(), PerColumnDriftCompensation()])
def test_compensation_restores_the_mean_output(comp):
    torch.manual_seed(2)
    cfg = InferenceRPUConfig(drift_compensation=comp)
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.max_input_size = 128
    layer = AnalogLinear(256, 64, bias=False, rpu_config=cfg).eval()
    x = torch.randn(512, 256)
    program_analog_weights(layer)
    level0 = layer(x).abs().mean().item()
    drift_analog_weights(layer, T_YEAR)
    compensated = layer(x).abs().mean().item()
    assert abs(compensated / level0 - 1) < 0.05
    layer.tile.drift_scales = None  # the same drifted weights, uncompensated
    drifted = layer(x).abs().mean().item()
    assert drifted / level0 < 0.6  # (1.6e6)^-nu with nu ~ 0.05


@pytest.mark.parametrize("comp", [GlobalDriftCompensation, PerColumnDriftCompensation])
def test_drift_compensation_is_the_same_on_one_and_two_threads(comp):
    # docs/tile.md promises bitwise reproducibility on any number of threads.
    # The compensation's readout is a mean over a whole tile; in float32,
    # torch split that sum among threads, and drift_reference / drift_scales
    # (and so every output) changed with torch.set_num_threads (these sizes
    # and seeds all differed before).
    before = torch.get_num_threads()

    def run(threads, n_in, n_out, seed):
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        cfg = InferenceRPUConfig()
        cfg.drift_compensation = comp()
        cfg.mapping.max_input_size = cfg.mapping.max_output_size = 0
        layer = AnalogLinear(n_in, n_out, bias=False, rpu_config=cfg).eval()
        program_analog_weights(layer)
        drift_analog_weights(layer, 3600.0)
        return layer.tile.drift_reference.clone(), layer.tile.drift_scales.clone()

    try:
        for n_in, n_out, seed in ((512, 512, 1), (300, 200, 0), (1000, 100, 1)):
            one, two = run(1, n_in, n_out, seed), run(2, n_in, n_out, seed)
            assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1]), (n_in, n_out, seed)
    finally:
        torch.set_num_threads(before)


def test_state_dict_round_trip_weights_only():
    torch.manual_seed(3)
    cfg = InferenceRPUConfig()
    cfg.mapping.max_input_size = 20
    a = AnalogConv2d(3, 4, 3, rpu_config=cfg).eval()
    program_analog_weights(a)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    b = AnalogConv2d(3, 4, 3, rpu_config=cfg).eval()
    b.load_state_dict(state)
    x = torch.randn(2, 3, 6, 6)
    outs = []
    for layer in (a, b):
        torch.manual_seed(11)
        drift_analog_weights(layer, 1000.0)
        outs.append(layer(x))
    assert torch.equal(outs[0], outs[1])
    # an unprogrammed state loads back into a programmed layer
    a.load_state_dict(AnalogConv2d(3, 4, 3, rpu_config=cfg).state_dict())
    assert a.tile.analog_weight is None


# --------------------------------------------------------------------------
# Clipping, remapping


def _layer_with(w, **cfg_fields):
    cfg = InferenceRPUConfig()
    for name, value in cfg_fields.items():
        obj, field = name.split("__")
        setattr(getattr(cfg, obj), field, value)
    layer = AnalogLinear(w.shape[1], w.shape[0], bias=False, rpu_config=cfg)
    with torch.no_grad():
        layer.weight.copy_(w)
    return layer


def test_clip_fixed_value_after_optimizer_step():
    layer = _layer_with(torch.tensor([[0.5, -2.0, 1.5]]), clip__type=WeightClipType.FIXED_VALUE,
                        clip__fixed_value=1.0)
    opt = torch.optim.SGD(layer.parameters(), lr=0.0)
    handle = install_weight_clipping(opt, layer)
    layer(torch.ones(1, 3)).sum().backward()
    opt.step()
    assert torch.equal(layer.weight.detach(), torch.tensor([[0.5, -1.0, 1.0]]))
    handle.remove()


def test_clip_layer_gaussian_and_average_channel_max():
    # values 1, 2, 3, 4, 10: mean 4, population std sqrt(50/5)
    layer = _layer_with(torch.tensor([[1.0, 2.0, 3.0, 4.0, 10.0]]), clip__type=WeightClipType.LAYER_GAUSSIAN,
                        clip__sigma=1.0)
    clip_weights(layer)
    b = math.sqrt(10.0)
    assert torch.allclose(layer.weight.detach(), torch.tensor([[1.0, 2.0, 3.0, b, b]]))
    layer = _layer_with(torch.tensor([[1.0, -4.0], [2.0, 0.5]]), clip__type=WeightClipType.AVERAGE_CHANNEL_MAX)
    clip_weights(layer)  # row maxima 4 and 2 -> bound 3
    assert torch.equal(layer.weight.detach(), torch.tensor([[1.0, -3.0], [2.0, 0.5]]))


def test_remap_layerwise_and_channelwise():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    layer = _layer_with(w, remap__type=WeightRemapType.LAYERWISE_SYMMETRIC)
    remap_weights(layer)
    assert torch.equal(layer.tile.mapping_scales, torch.tensor([2.0]))
    assert torch.equal(layer.tile.to_tile_units(layer.weight_matrix())[0].detach(), w / 2)
    assert torch.allclose(layer.get_weights()[0], w)
    layer = _layer_with(w, remap__type=WeightRemapType.CHANNELWISE_SYMMETRIC, remap__remapped_wmax=0.5)
    remap_weights(layer)
    assert torch.equal(layer.tile.mapping_scales, torch.tensor([4.0, 1.0]))
    assert torch.allclose(layer.get_weights()[0], w)
    layer = _layer_with(w, remap__type=WeightRemapType.LAYERWISE_SYMMETRIC, remap__max_scale_range=2.0)
    with pytest.raises(ValueError, match="max_scale_range"):
        remap_weights(layer)


# --------------------------------------------------------------------------
# Weight modifiers


def _mod(**kw) -> WeightModifierParameter:
    return WeightModifierParameter(**kw)


def test_modifier_discretize_by_hand():
    w = torch.tensor([[0.3, -1.0, 0.74, 0.1]])
    out = apply_weight_modifier(w, _mod(type=WeightModifierType.DISCRETIZE, res=0.25))
    assert torch.equal(out, torch.tensor([[0.25, -1.0, 0.75, 0.0]]))  # rint(0.4) = 0
    out = apply_weight_modifier(w, _mod(type=WeightModifierType.DISCRETIZE, res=0.25,
                                        rel_to_actual_wmax=False, assumed_wmax=2.0))
    assert torch.equal(out, torch.tensor([[0.5, -1.0, 0.5, 0.0]]))  # steps of 0.5


def test_modifier_noise_statistics():
    torch.manual_seed(4)
    n = 200_000
    w = torch.full((1, n), 0.5)
    w[0, 0] = 2.0  # amax = 2
    rest = slice(1, None)
    d = apply_weight_modifier(w, _mod(type=WeightModifierType.ADD_NORMAL, std_dev=0.1)) - w
    assert abs(d[0, rest].std().item() / (0.1 * 2.0) - 1) < 0.02
    d = apply_weight_modifier(w, _mod(type=WeightModifierType.MULT_NORMAL, std_dev=0.1)) - w
    assert abs(d[0, rest].std().item() / (0.5 * 0.1 * 2.0) - 1) < 0.02
    d = apply_weight_modifier(w, _mod(type=WeightModifierType.POLY, std_dev=0.1, coeffs=[0.2, 0.4, 0.8])) - w
    a = 0.25
    assert abs(d[0, rest].std().item() / (2.0 * 0.1 * (0.2 + 0.4 * a + 0.8 * a * a)) - 1) < 0.02
    d = apply_weight_modifier(w, _mod(type=WeightModifierType.DISCRETIZE_ADD_NORMAL, std_dev=0.1, res=0.3)) - w
    # 0.5/2 = 0.25 -> rint(0.8333) * 0.3 = 0.3 -> 0.6: shift 0.1, then noise 0.2
    assert abs(d[0, rest].mean().item() - 0.1) < 0.005
    assert abs(d[0, rest].std().item() / 0.2 - 1) < 0.02
    # PCM: weight 0.25 amax on g+ = 6.25 uS (s = 12.5 uS per unit), std_dev scales the noise
    d = (apply_weight_modifier(w, _mod(type=WeightModifierType.PCM_NOISE, std_dev=2.0)) - w) * 12.5
    s1, s0 = pcm_sigma(6.25), pcm_sigma(0.0)
    assert abs(d[0, rest].std().item() / (2.0 * math.sqrt(s1 * s1 + s0 * s0 * (0.5 - 1 / (2 * math.pi)))) - 1) < 0.02


def test_modifier_drop_connect():
    torch.manual_seed(5)
    w = torch.rand(400, 500) + 0.5
    out = apply_weight_modifier(w, _mod(type=WeightModifierType.DROP_CONNECT, pdrop=0.3))
    dropped = out == 0
    assert abs(dropped.float().mean().item() - 0.3) < 0.005  # 200 000 draws: 5 sd = 0.005
    assert torch.equal(out[~dropped], w[~dropped])


def _perfect_modified(per_batch_sample: bool, **layer_kw):
    cfg = InferenceRPUConfig()
    cfg.forward.is_perfect = True
    cfg.modifier.type = WeightModifierType.ADD_NORMAL
    cfg.modifier.std_dev = 0.1
    cfg.modifier.per_batch_sample = per_batch_sample
    return cfg


@pytest.mark.parametrize("per_batch_sample", [False, True])
def test_modifier_per_batch_sample_linear(per_batch_sample):
    # Inputs (S, T, K) whose rows are the unit vectors: y[s, t] is column t of the weights
    # sample s used. One draw per leading index with per_batch_sample, else one per pass.
    torch.manual_seed(11)
    S, K, N = 64, 6, 5
    layer = AnalogLinear(K, N, bias=False, rpu_config=_perfect_modified(per_batch_sample)).train()
    w = layer.weight.detach().clone()
    x = torch.eye(K).expand(S, K, K)
    used = layer(x).transpose(1, 2)  # (S, N, K): the weights of each sample
    d = used - w
    if not per_batch_sample:
        assert torch.equal(used, used[:1].expand_as(used))
        return
    assert all(not torch.equal(used[0], used[s]) for s in range(1, S))
    # each sample: w + 0.1 amax xi, amax = max|w|; 64*30 draws: sd of the sd estimate ~1.6 %
    assert abs(d.std().item() / (0.1 * w.abs().max().item()) - 1) < 0.08
    assert abs(d.mean().item()) < 5 * 0.1 * w.abs().max().item() / (S * N * K) ** 0.5
    # straight-through: the weight gradient is the digital one, summed over the samples
    layer.zero_grad()
    g = torch.randn(S, K, N)
    (layer(x) * g).sum().backward()
    torch.testing.assert_close(layer.weight.grad, torch.einsum("stn,stk->nk", g, x), rtol=1e-5, atol=1e-5)


def test_modifier_per_batch_sample_conv_and_tile_array():
    # A 1x1 convolution on an image whose pixel j is the unit vector e_j reads back, per
    # sample, the weights that sample used; the tile array (2 x 2 tiles) is perturbed per
    # tile (amax per tile) and per sample.
    torch.manual_seed(12)
    S, C, O = 16, 6, 4
    cfg = _perfect_modified(True)
    cfg.mapping.max_input_size = 3
    cfg.mapping.max_output_size = 2
    conv = AnalogConv2d(C, O, 1, bias=False, rpu_config=cfg).train()
    assert conv.num_tiles == 4
    w = conv.weight.detach().reshape(O, C)
    x = torch.eye(C).reshape(1, C, C, 1).expand(S, C, C, 1)  # pixel (j, 0) = e_j
    used = conv(x)[..., 0]  # (S, O, C)
    assert all(not torch.equal(used[0], used[s]) for s in range(1, S))
    for oi in (slice(0, 2), slice(2, 4)):
        for ii in (slice(0, 3), slice(3, 6)):
            d = used[:, oi, ii] - w[oi, ii]
            amax = w[oi, ii].abs().max().item()
            assert abs(d.std().item() / (0.1 * amax) - 1) < 0.25  # 96 draws per tile


def test_modifier_per_batch_sample_with_input_range():
    torch.manual_seed(13)
    cfg = _perfect_modified(True)
    cfg.pre_post.input_range.enable = True
    cfg.pre_post.input_range.init_from_data = 0
    S, K, N = 8, 4, 3
    layer = AnalogLinear(K, N, bias=False, rpu_config=cfg).train()
    x = 0.5 * torch.eye(K).expand(S, K, K)  # inside the range 3: no clipping
    used = layer(x).transpose(1, 2) / 0.5
    assert all(not torch.equal(used[0], used[s]) for s in range(1, S))
    assert (used - layer.weight.detach()).abs().max() < 0.1 * layer.weight.abs().max() * 6


def test_modifier_only_in_training_forward():
    torch.manual_seed(6)
    cfg = InferenceRPUConfig()
    cfg.forward.is_perfect = True
    cfg.modifier.type = WeightModifierType.DROP_CONNECT
    cfg.modifier.pdrop = 0.5
    layer = AnalogLinear(64, 16, bias=False, rpu_config=cfg)
    stored = layer.weight.detach().clone()
    x = torch.randn(8, 64)
    y = layer(x)
    exact = x @ stored.t()
    assert not torch.allclose(y, exact, atol=1e-3)
    y.sum().backward()  # straight through: dL/dW = sum over rows of x
    assert torch.allclose(layer.weight.grad, x.sum(0).expand(16, 64), atol=1e-5)
    assert torch.equal(layer.weight.detach(), stored)
    layer.eval()
    assert torch.allclose(layer(x), exact, atol=1e-5)
    cfg2 = layer.rpu_config
    cfg2.modifier.enable_during_test = True
    assert not torch.allclose(layer(x), exact, atol=1e-3)


# --------------------------------------------------------------------------
# Realistic write and read


def test_realistic_write_512_tile_reaches_tolerance():
    torch.manual_seed(7)
    cfg = InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0
    layer = AnalogLinear(512, 512, rpu_config=cfg)
    target = layer.tile.to_tile_units(layer.weight_matrix()).detach().clone()
    report = realistic_write(layer)
    r = report["AnalogLinear"]
    assert layer.tile.programming_report == r
    assert r["iterations"] < 100 and r["error"] < 0.01
    true_error = (layer.tile.to_tile_units(layer.weight_matrix()).detach() - target).abs().mean() / target.abs().max()
    assert true_error < 0.01


def test_realistic_write_tile_array_reaches_tolerance():
    torch.manual_seed(8)
    cfg = InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.max_input_size = 128
    cfg.mapping.max_output_size = 64
    model = nn.Sequential(AnalogLinear(300, 100, rpu_config=cfg))  # 3 x 2 tiles
    layer = model[0]
    target = layer.tile.to_tile_units(layer.weight_matrix()).detach().clone()
    report = realistic_write(model)
    assert set(report) == {"0"} and report["0"]["error"] < 0.01
    err = (layer.tile.to_tile_units(layer.weight_matrix()).detach() - target).abs()
    for rows in err.split(layer.out_sizes, dim=1):
        for tile, t in zip(rows.split(layer.in_sizes, dim=2), target.split(layer.in_sizes, dim=2)):
            assert tile.mean() / t.abs().max() < 0.01  # every tile (max of its own target)


def test_realistic_write_floating_point_is_exact_up_to_the_band():
    torch.manual_seed(9)
    layer = AnalogLinear(100, 20, rpu_config=FloatingPointRPUConfig())
    target = layer.weight.detach().clone()
    report = realistic_write(layer, tolerance=1e-3)
    assert report["AnalogLinear"]["iterations"] == 1
    # devices left alone are within the band; the others are exact
    assert ((layer.weight.detach() - target).abs() <= 1e-3 * target.abs().max() + 1e-7).all()


def test_read_weights_noise_free_tile_array():
    torch.manual_seed(10)
    cfg = FloatingPointRPUConfig()
    cfg.mapping.max_input_size = 30
    cfg.mapping.max_output_size = 7
    layer = AnalogConv2d(4, 10, 3, groups=2, rpu_config=cfg)  # 2 groups, 18 inputs each
    layer2 = AnalogLinear(70, 12, rpu_config=cfg)  # 3 x 2 tiles of 24/23/23 inputs
    for lay in (layer, layer2):
        w, b = lay.get_weights(realistic=True)
        assert torch.allclose(w, lay.weight.detach(), rtol=1e-5, atol=1e-6)
        assert torch.equal(b, lay.bias.detach())


def test_read_weights_noisy_tile_within_predicted_error():
    """Output noise 0.06 alpha per read (alpha = max|x|, nothing else): the
    least-squares error covariance is (X'X)^-1 X' diag(0.06^2 alpha^2) X (X'X)^-1,
    evaluated here on independent draws of X."""
    torch.manual_seed(11)
    K, Nout = 64, 32
    cfg = InferenceRPUConfig()
    f = cfg.forward
    f.inp_res, f.out_res, f.out_bound = 0.0, 0.0, 0.0
    f.bound_management = BoundManagementType.NONE
    f.noise_management = NoiseManagementType.ABS_MAX
    layer = AnalogLinear(K, Nout, rpu_config=cfg).eval()
    errors = torch.cat([(read_weights(layer)[0] - layer.weight.detach()).reshape(-1) for _ in range(4)])
    measured = errors.square().mean().sqrt().item()
    pred = []
    for _ in range(8):
        x = torch.randn(10 * K, K, dtype=torch.float64)
        inv = torch.linalg.inv(x.t() @ x)
        d = 0.06**2 * x.abs().amax(dim=1) ** 2
        pred.append(torch.diagonal(inv @ (x.t() * d) @ x @ inv).mean().item())
    predicted = math.sqrt(sum(pred) / len(pred))
    assert abs(measured / predicted - 1) < 0.08  # 8192 estimates: ~1 % standard error


@pytest.mark.parametrize("inp_noise", [0.0, 1e-9])
def test_identity_and_probe_reads_of_an_exact_tile(inp_noise):
    """Both code paths (row by row, and whole tiles when idle inputs carry
    input noise) read an exact tile array's weights back exactly."""
    from fxanalog.programming import identity_read, probe_read

    torch.manual_seed(12)
    cfg = InferenceRPUConfig()
    cfg.forward.is_perfect = True
    cfg.forward.inp_noise = inp_noise
    cfg.mapping.max_input_size = 24
    cfg.mapping.max_output_size = 5
    layer = AnalogLinear(70, 12, rpu_config=cfg)
    w = layer.tile.to_tile_units(layer.weight_matrix()).detach()
    reader = layer.tile.reader()
    assert torch.allclose(identity_read(reader, w), w.transpose(1, 2), atol=1e-7)
    for k, R in ((4, 2), (32, 1)):
        assert torch.allclose(probe_read(reader, w, k, R), w, atol=1e-6)


def _small_weight_layer(cfg, seed):
    """A 100-input, 64-output tile holding U(-0.05, 0.05) tile weights (what
    the default omega 0 puts on a tile), and its reader."""
    torch.manual_seed(seed)
    layer = AnalogLinear(100, 64, bias=False, rpu_config=cfg)
    w = torch.empty(1, 64, 100).uniform_(-0.05, 0.05)
    return w, layer.tile.reader()


@pytest.mark.parametrize("case", ["default", "no_nm_coarse_dac"])
def test_closed_form_probe_read_matches_the_forward_in_distribution(case):
    """The verify read drawn from its closed form against the probe read
    computed by the tile's forward (docs/physics.md, "The verify read in
    closed form"): over 20 forward reads of 6400 devices, the standardized
    error z = (est - gain w) / std has mean 0 (4 standard errors: 0.011),
    variance 1 (4 standard errors: 1.6 %), P(|z| > 2) = 4.55 % (+-0.23 %)
    and no correlation between neighbouring devices of an output (+-0.011).
    ``no_nm_coarse_dac``: no noise management, inputs of +-2 and a DAC step
    of 0.061 x 2 x 2, so a driven input reaches the tile as 16 steps, 1.952:
    gain 0.976 (its error against gain 1 would be 120 standard errors)."""
    from fxanalog.programming import closed_form_read, probe_read

    cfg = InferenceRPUConfig()
    k, R = 128, 8
    if case == "no_nm_coarse_dac":
        cfg.forward.noise_management = NoiseManagementType.NONE
        cfg.forward.inp_bound = 2.0
        cfg.forward.inp_res = 0.0305
    w, reader = _small_weight_layer(cfg, 20)
    gain, std = closed_form_read(reader, w, k, R)
    io = cfg.forward
    amp = 1.0 if case == "default" else 2.0
    dy = 2 * io.out_bound * io.out_res
    assert std == pytest.approx(math.sqrt(io.out_noise**2 + dy**2 / 12) / (amp * math.sqrt(R * k)), rel=1e-6)
    assert gain == (1.0 if case == "default" else pytest.approx(16 * 0.0305 * 2 * 2 / 2, rel=1e-6))
    z = torch.stack([(probe_read(reader, w, k, R, "forward") - gain * w) / std for _ in range(20)])
    n = z.numel()
    assert abs(z.mean().item()) < 4 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 4 * math.sqrt(2 / n)
    tail = (z.abs() > 2).float().mean().item()
    assert abs(tail - 0.0455) < 4 * math.sqrt(0.0455 * 0.9545 / n)
    corr = (z[..., 1:] * z[..., :-1]).mean().item()
    assert abs(corr) < 4 / math.sqrt(n)
    # the closed form, drawn: the same two moments
    zc = torch.stack([(probe_read(reader, w, k, R, "auto") - gain * w) / std for _ in range(20)])
    assert abs(zc.mean().item()) < 4 / math.sqrt(n) and abs(zc.var().item() - 1) < 4 * math.sqrt(2 / n)


@pytest.mark.parametrize("change", ["inp_noise", "w_noise", "out_sto_round", "out_noise_below_step",
                                    "max_noise_management", "ir_drop", "large_weights"])
def test_closed_form_probe_read_refused_outside_its_class(change):
    """Where the forward adds something the closed form does not hold
    (input or weight noise, stochastic rounding, output noise below one ADC
    step, a data-dependent sign of the scale, IR drop, outputs that could
    reach the ADC bound) the verify read runs the forward."""
    from fxanalog.programming import closed_form_read

    cfg = InferenceRPUConfig()
    f = cfg.forward
    if change == "inp_noise":
        f.inp_noise = 0.01
    elif change == "w_noise":
        f.w_noise, f.w_noise_type = 0.01, WeightNoiseType.ADDITIVE_CONSTANT
    elif change == "out_sto_round":
        f.out_sto_round = True
    elif change == "out_noise_below_step":
        f.out_noise = 0.04  # the ADC step is 24 / 510 = 0.047
    elif change == "max_noise_management":
        f.noise_management = NoiseManagementType.MAX
    elif change == "ir_drop":
        f.ir_drop = 1.0
    w, reader = _small_weight_layer(cfg, 21)
    if change == "large_weights":  # 128 inputs of +-1 x |w| ~ 0.5: sums of sigma 5.8 against the bound 12
        w = w * 10
    assert closed_form_read(reader, w, 128, 8) is None
    assert closed_form_read(_small_weight_layer(InferenceRPUConfig(), 21)[1], w / 10 if change == "large_weights"
                            else w, 128, 8) is not None


def test_realistic_write_default_config_small_weights():
    """The default config (omega 0: tile weights of a few % of the range)
    written in closed loop, verify reads in closed form: the written weights
    are within the tolerance of the target (measured without read noise)."""
    torch.manual_seed(22)
    layer = AnalogLinear(512, 512, rpu_config=InferenceRPUConfig())
    target = layer.tile.to_tile_units(layer.weight_matrix()).detach().clone()
    assert target.abs().max() < 0.05
    r = realistic_write(layer)["AnalogLinear"]
    assert r["iterations"] < 100 and r["error"] < 0.01
    true_error = (layer.tile.to_tile_units(layer.weight_matrix()).detach() - target).abs().mean() / target.abs().max()
    assert true_error < 0.01
    with pytest.raises(ValueError, match="probe = 'fast'"):
        realistic_write(layer, probe="fast")


def test_compensation_with_input_noise_uses_the_full_identity():
    torch.manual_seed(13)
    cfg = InferenceRPUConfig()
    cfg.forward.inp_noise = 0.01
    cfg.mapping.weight_scaling_omega = 1.0
    layer = AnalogLinear(128, 32, bias=False, rpu_config=cfg).eval()
    x = torch.randn(256, 128)
    program_analog_weights(layer)
    level0 = layer(x).abs().mean().item()
    drift_analog_weights(layer, T_YEAR)
    assert abs(layer(x).abs().mean().item() / level0 - 1) < 0.05
