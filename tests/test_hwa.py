"""Weight modifiers of hardware-aware training (fxanalog.hwa) against
aihwkit's formulas (its C++ tile, weight_modifier.cpp), computed here by hand
or by a plain loop, and their statistics against the normal and folded-normal
laws (10^5 draws: standard errors of 0.3 % on a standard deviation; the
tolerances are several of them wide)."""

import math

import pytest
import torch

from fxanalog import InferenceRPUConfig
from fxanalog.config import WeightModifierParameter, WeightModifierType
from fxanalog.hwa import apply_weight_modifier, modifier_active
from fxanalog.nn import AnalogLinear

N = 100_000


def round_half_away(x: float) -> float:
    """C's roundf."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def dorefa_by_hand(w: list[float], amax: float, res: float, clip: float = 0.6) -> list[float]:
    scale = abs(clip / math.tanh(amax))
    return [round_half_away(math.tanh(v) * scale / res) * res for v in w]


def test_modifier_defaults_are_aihwkits():
    # aihwkit 1.1.0's WeightModifierParameter, typed in by hand
    m = WeightModifierParameter()
    assert (m.type, m.coeffs, m.dorefa_clip, m.g_max) == (WeightModifierType.NONE, [0.0105392, 0.0768, -0.046925],
                                                          0.6, 25.0)
    assert (WeightModifierType.DOREFA.value, WeightModifierType.PROG_NOISE.value) == ("DoReFa", "ProgNoise")
    assert not modifier_active(m)


def test_dorefa_by_hand():
    w = torch.tensor([[-1.0, -0.3, 0.0, 0.2, 0.5, 0.8]])  # amax = 1
    mod = WeightModifierParameter(type=WeightModifierType.DOREFA, res=0.1)
    out = apply_weight_modifier(w, mod)
    assert torch.allclose(out, torch.tensor([dorefa_by_hand(w[0].tolist(), 1.0, 0.1)]), atol=1e-6)
    assert out.abs().max().item() == pytest.approx(0.6, abs=1e-6)  # max|W| lands on dorefa_clip
    # a number of steps (res > 1 is 1/res) and an assumed amax
    mod = WeightModifierParameter(type=WeightModifierType.DOREFA, res=4.0, dorefa_clip=1.0, rel_to_actual_wmax=False,
                                  assumed_wmax=2.0)
    out = apply_weight_modifier(w, mod)
    assert torch.allclose(out, torch.tensor([dorefa_by_hand(w[0].tolist(), 2.0, 0.25, 1.0)]), atol=1e-6)
    # res = 0: the weights as they are (as aihwkit)
    assert torch.equal(apply_weight_modifier(w, WeightModifierParameter(type=WeightModifierType.DOREFA)), w)


def test_dorefa_rounds_halves_away_from_zero():
    # tanh(w) scale / res = +-2.5 exactly: tanh(w) = 2.5 res tanh(amax) / clip
    amax, res, clip = 1.0, 0.1, 0.6
    w_half = math.atanh(2.5 * res * math.tanh(amax) / clip)
    w = torch.tensor([[w_half, -w_half, amax]], dtype=torch.float64)
    out = apply_weight_modifier(w, WeightModifierParameter(type=WeightModifierType.DOREFA, res=res))
    assert out[0, 0].item() == pytest.approx(0.3) and out[0, 1].item() == pytest.approx(-0.3)


def test_dorefa_per_tile_amax():
    # two input pieces of 3: each tile's own max|W| (aihwkit: one modifier per tile)
    w = torch.tensor([[0.1, -0.2, 0.4, 1.0, -2.0, 0.5]])
    out = apply_weight_modifier(w, WeightModifierParameter(type=WeightModifierType.DOREFA, res=0.05), in_sizes=[3, 3])
    expected = dorefa_by_hand([0.1, -0.2, 0.4], 0.4, 0.05) + dorefa_by_hand([1.0, -2.0, 0.5], 2.0, 0.05)
    assert torch.allclose(out, torch.tensor([expected]), atol=1e-6)


def test_dorefa_stochastic_rounding_is_unbiased():
    torch.manual_seed(0)
    w = torch.full((1, N), 0.3)
    w[0, 0] = 1.0
    mod = WeightModifierParameter(type=WeightModifierType.DOREFA, res=0.1, sto_round=True)
    out = apply_weight_modifier(w, mod)[0, 1:]
    exact = math.tanh(0.3) * 0.6 / math.tanh(1.0)  # 0.2617...: between the levels 0.2 and 0.3
    levels = set(round(v, 6) for v in out.tolist())
    assert levels <= {0.2, 0.3}
    # the level is 0.3 with probability (exact - 0.2) / 0.1: mean = exact, standard error 0.05 / sqrt(N)
    assert abs(out.mean().item() - exact) < 4 * 0.05 / math.sqrt(N)


def test_prog_noise_statistics():
    torch.manual_seed(1)
    w = torch.full((1, N), 0.5)
    w[0, 0] = 1.0  # amax = 1
    mod = WeightModifierParameter(type=WeightModifierType.PROG_NOISE, std_dev=2.0, g_max=25.0, coeffs=[0.1, 0.2, 0.4])
    out = apply_weight_modifier(w, mod)[0, 1:]
    sigma = 1.0 * 2.0 / 25.0 * (0.1 + 0.2 * 0.5 + 0.4 * 0.25)  # 0.024, 20 sigma from 0: no sign flip
    assert abs(out.std().item() / sigma - 1) < 0.02
    assert abs(out.mean().item() - 0.5) < 4 * sigma / math.sqrt(N)
    # POLY, the same settings: no division by g_max
    poly = apply_weight_modifier(w, WeightModifierParameter(type=WeightModifierType.POLY, std_dev=2.0,
                                                            coeffs=[0.1, 0.2, 0.4]))[0, 1:]
    assert abs(poly.std().item() / (sigma * 25.0) - 1) < 0.02


def folded_mean(mu: float, sd: float) -> float:
    return sd * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * sd * sd)) + mu * math.erf(mu / (sd * math.sqrt(2)))


@pytest.mark.parametrize("w0", [-0.01, 0.0, 0.01])
def test_prog_noise_keeps_the_sign(w0):
    torch.manual_seed(2)
    w = torch.full((1, N), w0)
    w[0, 0] = 1.0  # amax = 1; |w0|/amax is about 0: sigma = std_dev / g_max c0
    mod = WeightModifierParameter(type=WeightModifierType.PROG_NOISE, std_dev=25.0, coeffs=[0.02])
    out = apply_weight_modifier(w, mod)[0, 1:]
    sd = 25.0 / 25.0 * 0.02
    if w0 < 0:
        assert (out <= 0).all()
    else:
        assert (out >= 0).all()
    # |w0 + sd xi| is folded normal
    assert abs(out.abs().mean().item() - folded_mean(abs(w0), sd)) < 4 * sd / math.sqrt(N)


def test_prog_noise_by_hand_with_fixed_draws(monkeypatch):
    # with the normal draws replaced by known values: w + amax (std/g_max) poly(|w|/amax) xi, sign kept
    import fxanalog.hwa as hwa

    xi = torch.tensor([[[1.0, -2.0, 3.0, -1.0]]])
    monkeypatch.setattr(hwa._rng, "randn", lambda shape, dtype=None, device=None: xi.to(dtype).reshape(shape))
    w = torch.tensor([[0.5, -0.25, -2.0, 0.1]])  # amax = 2
    mod = WeightModifierParameter(type=WeightModifierType.PROG_NOISE, std_dev=5.0, g_max=10.0, coeffs=[0.2, 0.4])
    out = hwa.apply_weight_modifier(w, mod)
    expected = []
    for wi, x in zip(w[0].tolist(), xi.reshape(-1).tolist()):
        noisy = wi + 2.0 * (5.0 / 10.0) * (0.2 + 0.4 * abs(wi) / 2.0) * x
        expected.append(-abs(noisy) if wi < 0 else abs(noisy))
    assert torch.allclose(out, torch.tensor([expected]), atol=1e-6)


def test_layer_trains_through_the_dorefa_weights():
    torch.manual_seed(3)
    cfg = InferenceRPUConfig()
    cfg.forward.is_perfect = True
    cfg.modifier.type = WeightModifierType.DOREFA
    cfg.modifier.res = 0.125
    layer = AnalogLinear(5, 3, rpu_config=cfg)
    x = torch.randn(4, 5)
    w = layer.weight.detach()
    amax = w.abs().max().item()
    wq = torch.tensor([dorefa_by_hand(row, amax, 0.125) for row in w.tolist()])
    layer.train()
    assert torch.allclose(layer(x), x @ wq.T + layer.bias.detach(), atol=1e-5)
    layer.eval()  # not in eval (enable_during_test is False)
    assert torch.allclose(layer(x), x @ w.T + layer.bias.detach(), atol=1e-5)


# --------------------------------------------------------------------------
# The 'pcm-hwa' preset: the hardware-aware training recipe of Joshi et al.,
# Nature Communications 11, 2473 (2020), and aihwkit's HWA tutorial


def test_pcm_hwa_preset_is_the_recipe():
    from fxanalog.config import GlobalDriftCompensation, PCMLikeNoiseModel, WeightClipType, WeightRemapType
    from fxanalog.presets import get_preset

    cfg = get_preset("pcm-hwa")
    # weight noise relative to each tile's max|W|, in training only
    assert cfg.modifier.type == WeightModifierType.ADD_NORMAL and cfg.modifier.std_dev == 0.08
    assert cfg.modifier.rel_to_actual_wmax and not cfg.modifier.enable_during_test and cfg.modifier.pdrop == 0
    # the weights clipped to 2 standard deviations of their tile after every step, not remapped
    assert cfg.clip.type == WeightClipType.LAYER_GAUSSIAN and cfg.clip.sigma == 2.0
    assert cfg.remap.type == WeightRemapType.NONE
    # the noisy forward (output noise) of the evaluation, the PCM model and global drift compensation
    assert not cfg.forward.is_perfect and cfg.forward.out_noise == 0.06
    assert isinstance(cfg.noise_model, PCMLikeNoiseModel)
    assert isinstance(cfg.drift_compensation, GlobalDriftCompensation)
    # 'pcm' plus the modifier and the clipping, nothing else
    pcm = get_preset("pcm")
    pcm.modifier, pcm.clip = cfg.modifier, cfg.clip
    assert pcm == cfg


def clamp_by_hand(values: list[float], sigma: float) -> list[float]:
    """Clamp to +-sigma times the population standard deviation, in plain Python."""
    mean = sum(values) / len(values)
    bound = sigma * math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [min(max(v, -bound), bound) for v in values]


@pytest.mark.parametrize("max_input_size", [512, 3])
def test_pcm_hwa_clips_each_tile_to_two_std_by_hand(max_input_size):
    from fxanalog.inference import post_update_step
    from fxanalog.presets import get_preset

    cfg = get_preset("pcm-hwa")
    cfg.mapping.max_input_size = max_input_size  # 3: two tiles side by side, each with its own std
    layer = AnalogLinear(6, 3, rpu_config=cfg)
    w = torch.tensor([[0.1, -0.2, 0.05, 1.5, -0.3, 0.2],
                      [-0.1, 0.3, -1.2, 0.0, 0.25, -0.15],
                      [0.02, 0.4, -0.05, 0.1, -2.0, 0.3]])
    with torch.no_grad():
        layer.weight.copy_(w)
    post_update_step(layer)
    pieces = [range(6)] if max_input_size >= 6 else [range(3), range(3, 6)]
    expected = torch.empty_like(w)
    for cols in pieces:
        cols = list(cols)
        block = [w[i, j].item() for i in range(3) for j in cols]
        clamped = clamp_by_hand(block, 2.0)
        expected[:, cols] = torch.tensor(clamped).reshape(3, len(cols))
    assert torch.allclose(layer.weight.detach(), expected, atol=1e-6)
    assert not torch.equal(expected, w)  # the outliers were clipped


def test_pcm_hwa_modifier_by_hand_with_fixed_draws(monkeypatch):
    # w + 0.08 max|W_tile| xi, per tile, with the normal draws replaced by known values
    import fxanalog.hwa as hwa
    from fxanalog.presets import get_preset

    w = torch.tensor([[0.5, -1.0, 0.25, 2.0], [0.1, 0.2, -0.4, 0.3]])
    xi = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 0.0, -0.5])
    monkeypatch.setattr(hwa._rng, "randn", lambda shape, dtype=None, device=None: xi.to(dtype).reshape(shape))
    out = hwa.apply_weight_modifier(w, get_preset("pcm-hwa").modifier, in_sizes=[2, 2])
    amax = [1.0, 2.0]  # max|W| of the columns 0-1 and 2-3
    expected = [[w[i, j].item() + 0.08 * amax[j // 2] * xi[4 * i + j].item() for j in range(4)] for i in range(2)]
    assert torch.allclose(out, torch.tensor(expected), atol=1e-6)
