"""Noise models, conductance converter and drift compensations against the
formulas of docs/physics.md, computed here independently.

Statistical tests draw 10^5 devices per level: the standard error of a
standard deviation is then 1/sqrt(2n) = 0.22 %, of a mean sigma/sqrt(n);
the tolerances (2 % on standard deviations, 1 % on means) are many standard
errors wide, while any wrong constant of the formulas moves the statistic by
far more.
"""

import math

import pytest
import torch

from fxanalog import InferenceRPUConfig
from fxanalog.config.noise import (
    CustomDriftPCMLikeNoiseModel,
    GlobalDriftCompensation,
    PCMLikeNoiseModel,
    PerColumnDriftCompensation,
    SinglePairConductanceConverter,
    StateIndependentNoiseModel,
)

N = 100_000


def folded_normal(mu: float, sd: float) -> tuple[float, float]:
    """Mean and standard deviation of |mu + sd xi|."""
    mean = sd * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * sd * sd)) + mu * math.erf(mu / (sd * math.sqrt(2)))
    return mean, math.sqrt(mu * mu + sd * sd - mean * mean)


def pcm_sigma(g: float, g_max: float = 25.0) -> float:
    gh = g / g_max
    return (0.26348 + 1.9650 * gh - 1.1731 * gh * gh) * g_max / 25.0


# --------------------------------------------------------------------------
# Conductance converter


def test_single_pair_converter_by_hand():
    w = torch.tensor([[0.5, -1.0], [0.25, 0.0]])
    g, params = SinglePairConductanceConverter().convert_to_conductances(w)
    assert torch.equal(g[0], torch.tensor([[12.5, 0.0], [6.25, 0.0]]))
    assert torch.equal(g[1], torch.tensor([[0.0, 25.0], [0.0, 0.0]]))
    conv = SinglePairConductanceConverter(g_max=25.0, g_min=5.0)  # s = 20 uS per unit
    g, params = conv.convert_to_conductances(w)
    assert torch.equal(g[0], torch.tensor([[15.0, 5.0], [10.0, 5.0]]))
    assert torch.equal(g[1], torch.tensor([[5.0, 25.0], [5.0, 5.0]]))
    assert torch.allclose(conv.convert_back_to_weights(g, params), w)


def test_converter_per_tile_range():
    w = torch.tensor([[0.5, 2.0], [-0.5, 1.0]])
    w_max = torch.tensor([[1.0, 2.0]])  # column 0 one tile (max 1), column 1 another (max 2)
    g, params = SinglePairConductanceConverter().convert_to_conductances(w, w_max)
    assert torch.equal(g[0], torch.tensor([[12.5, 25.0], [0.0, 12.5]]))
    assert torch.equal(g[1], torch.tensor([[0.0, 0.0], [12.5, 0.0]]))
    assert torch.allclose(SinglePairConductanceConverter().convert_back_to_weights(g, params), w)


def test_converter_validation():
    with pytest.raises(ValueError, match="g_max"):
        SinglePairConductanceConverter(g_max=1.0, g_min=2.0).validate()


# --------------------------------------------------------------------------
# PCM model


@pytest.mark.parametrize("g_max", [25.0, 50.0])
def test_pcm_programming_noise_std(g_max):
    torch.manual_seed(0)
    model = PCMLikeNoiseModel(g_max=g_max)
    for frac in (0.1, 0.5, 0.9):
        g = torch.full((N,), frac * g_max)
        d = model.apply_programming_noise_to_conductance(g) - g
        sigma = pcm_sigma(frac * g_max, g_max)
        assert abs(d.std().item() / sigma - 1) < 0.02
        assert abs(d.mean().item()) < 5 * sigma / math.sqrt(N)
    # prog_noise_scale scales it
    model = PCMLikeNoiseModel(prog_noise_scale=2.0)
    g = torch.full((N,), 12.5)
    assert abs((model.apply_programming_noise_to_conductance(g) - g).std().item() / (2 * pcm_sigma(12.5)) - 1) < 0.02


def test_pcm_programming_never_negative():
    torch.manual_seed(1)
    g = torch.zeros(N)
    g_p = PCMLikeNoiseModel().apply_programming_noise_to_conductance(g)
    assert (g_p >= 0).all()
    # max(0, 0.26348 xi): mean sigma/sqrt(2 pi)
    assert abs(g_p.mean().item() / (0.26348 / math.sqrt(2 * math.pi)) - 1) < 0.02


@pytest.mark.parametrize("gr", [1e-3, 0.1, 0.5, 1.0])
def test_pcm_drift_exponent_statistics(gr):
    torch.manual_seed(2)
    mu = min(max(-0.0155 * math.log(gr) + 0.0244, 0.049), 0.1)
    sd = min(max(-0.0125 * math.log(gr) - 0.0059, 0.008), 0.045)
    mean, std = folded_normal(mu, sd)
    nu = PCMLikeNoiseModel().generate_drift_coefficients(torch.full((N,), gr * 25.0))
    assert abs(nu.mean().item() / mean - 1) < 0.01
    assert abs(nu.std().item() / std - 1) < 0.02
    nu2 = PCMLikeNoiseModel(drift_scale=2.0).generate_drift_coefficients(torch.full((N,), gr * 25.0))
    assert abs(nu2.mean().item() / (2 * mean) - 1) < 0.01


def test_pcm_drift_exact_without_read_noise():
    torch.manual_seed(3)
    model = PCMLikeNoiseModel(read_noise_scale=0.0)
    g_p = torch.rand(1000) * 25
    nu = torch.rand(1000) * 0.1
    for t in (0.0, 1.0, 3600.0, 3.15e7):
        g = model.apply_drift_noise_to_conductance(g_p, nu, t)
        expected = g_p * ((t + 20.0) / 20.0) ** (-nu)
        assert torch.allclose(g, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("g_level", [5.0, 10.0, 20.0])
def test_pcm_read_noise_std(g_level):
    torch.manual_seed(4)
    model = PCMLikeNoiseModel()
    t = 1e4
    g_p = torch.full((N,), g_level)
    nu = torch.full((N,), 0.05)
    g = model.apply_drift_noise_to_conductance(g_p, nu, t)
    g_d = g_level * ((t + 20) / 20) ** -0.05
    q = min(0.0088 / max((g_level / 25) ** 0.65, 1e-3), 0.2)
    sigma = g_d * q * math.sqrt(math.log((t + 20 + 250e-9) / (2 * 250e-9)))
    assert abs((g - g_d).std().item() / sigma - 1) < 0.02
    assert abs((g - g_d).mean().item()) < 5 * sigma / math.sqrt(N)


# --------------------------------------------------------------------------
# State-independent and custom-drift models


def test_state_independent_model():
    torch.manual_seed(5)
    model = StateIndependentNoiseModel()
    for level in (5.0, 20.0):
        g = torch.full((N,), level)
        assert abs((model.apply_programming_noise_to_conductance(g) - g).std().item() / 0.2 - 1) < 0.02
    mean, std = folded_normal(0.1, 0.05)
    nu = model.generate_drift_coefficients(torch.full((N,), 3.0))
    assert abs(nu.mean().item() / mean - 1) < 0.01
    assert abs(nu.std().item() / std - 1) < 0.02
    t = 100.0
    g = model.apply_drift_noise_to_conductance(torch.full((N,), 20.0), torch.full((N,), 0.1), t)
    g_d = 20.0 * ((t + 20) / 20) ** -0.1
    sigma = g_d / 25.0 * math.sqrt(math.log((t + 20 + 250e-9) / (2 * 250e-9)))
    assert abs((g - g_d).std().item() / sigma - 1) < 0.02


def test_custom_drift_model_interpolates():
    torch.manual_seed(6)
    table = {"g_lst": [0.0, 10.0, 25.0], "nu_mean_lst": [0.1, 0.05, 0.02], "nu_std_lst": [0.02, 0.01, 0.004]}
    model = CustomDriftPCMLikeNoiseModel(custom_drift_model=table)
    model.validate()
    for g, mu, sd in ((5.0, 0.075, 0.015), (17.5, 0.035, 0.007), (30.0, 0.02, 0.004)):
        nu = model.generate_drift_coefficients(torch.full((N,), g))
        mean, std = folded_normal(mu, sd)
        assert abs(nu.mean().item() / mean - 1) < 0.01
        assert abs(nu.std().item() / std - 1) < 0.02
    # programming noise is the PCM one
    g = torch.full((N,), 12.5)
    assert abs((model.apply_programming_noise_to_conductance(g) - g).std().item() / pcm_sigma(12.5) - 1) < 0.02


def test_custom_drift_model_validation():
    bad = CustomDriftPCMLikeNoiseModel(custom_drift_model={"g_lst": [10.0, 0.0], "nu_mean_lst": [0.1, 0.1],
                                                            "nu_std_lst": [0.0, 0.0]})
    with pytest.raises(ValueError, match="ascending"):
        bad.validate()
    with pytest.raises(ValueError, match="keys"):
        CustomDriftPCMLikeNoiseModel(custom_drift_model={"g_lst": [0.0, 1.0]}).validate()


def test_noise_model_validation_names_the_field():
    cfg = InferenceRPUConfig()
    cfg.noise_model.t_0 = -1.0
    with pytest.raises(ValueError, match="noise_model.t_0"):
        cfg.validate()


@pytest.mark.parametrize(
    "model, message",
    [
        (PCMLikeNoiseModel(g_max=math.nan), "PCMLikeNoiseModel.g_max = nan: expected a finite number > 0"),
        (PCMLikeNoiseModel(t_0=math.inf), "PCMLikeNoiseModel.t_0 = inf: expected a finite number > 0"),
        (PCMLikeNoiseModel(t_read=math.nan), "PCMLikeNoiseModel.t_read = nan: expected a finite number > 0"),
        (PCMLikeNoiseModel(prog_noise_scale=math.nan),
         "PCMLikeNoiseModel.prog_noise_scale = nan: expected a finite number >= 0"),
        (StateIndependentNoiseModel(read_noise_scale=math.inf),
         "StateIndependentNoiseModel.read_noise_scale = inf: expected a finite number >= 0"),
        (StateIndependentNoiseModel(drift_nu_mean=-math.inf),
         "StateIndependentNoiseModel.drift_nu_mean = -inf: expected a finite number"),
        (PCMLikeNoiseModel(prog_coeff=[0.26, math.nan, -1.17]),
         "PCMLikeNoiseModel.prog_coeff = [0.26, nan, -1.17]: expected a non-empty list of numbers, all finite"),
        (PCMLikeNoiseModel(drift_scale=True), "PCMLikeNoiseModel.drift_scale = True: expected a number >= 0"),
        (SinglePairConductanceConverter(g_max=math.inf),
         "SinglePairConductanceConverter.g_max = inf: expected a finite number > 0"),
        (SinglePairConductanceConverter(g_max=1.0, g_min=2.0),
         "SinglePairConductanceConverter.g_max = 1.0: expected a number > g_min = 2.0"),
        (CustomDriftPCMLikeNoiseModel(custom_drift_model={"g_lst": [0.0, 25.0], "nu_mean_lst": [0.05, math.nan],
                                                          "nu_std_lst": [0.01, 0.01]}),
         "CustomDriftPCMLikeNoiseModel.custom_drift_model['nu_mean_lst'] = [0.05, nan]: expected a list of at "
         "least 2 numbers, all finite"),
        (CustomDriftPCMLikeNoiseModel(custom_drift_model=[0.0, 1.0]),
         "CustomDriftPCMLikeNoiseModel.custom_drift_model = [0.0, 1.0]: expected a dict"),
    ],
)
def test_noise_model_fields_refuse_non_finite_values(model, message):
    with pytest.raises(ValueError) as err:
        model.validate()
    assert str(err.value).startswith(message)


def test_noise_model_refuses_unknown_attributes():
    model = PCMLikeNoiseModel()
    with pytest.raises(AttributeError, match=r"PCMLikeNoiseModel has no field 'prog_noise' \(did you mean "
                                             r"'prog_noise_scale'\?\); its fields: prog_coeff, g_converter"):
        model.prog_noise = 0.5
    assert model.converter is model.g_converter


# --------------------------------------------------------------------------
# Compensation and dicts


def test_drift_compensation_readouts_by_hand():
    y = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert GlobalDriftCompensation().readout(y).item() == 1.5
    assert torch.equal(PerColumnDriftCompensation().readout(y), torch.tensor([[2.0, 1.0]]))
    factor = GlobalDriftCompensation().apply(y / 2, torch.tensor(1.5))
    assert factor.item() == 2.0
    factor = PerColumnDriftCompensation().apply(y / 4, torch.tensor([[2.0, 1.0]]))
    assert torch.equal(factor, torch.tensor([[4.0, 4.0]]))


@pytest.mark.parametrize("model", [PCMLikeNoiseModel(prog_noise_scale=0.5),
                                   StateIndependentNoiseModel(drift_nu_mean=0.2),
                                   CustomDriftPCMLikeNoiseModel(g_max=30.0)])
@pytest.mark.parametrize("comp", [None, GlobalDriftCompensation(), PerColumnDriftCompensation()])
def test_configs_round_trip(model, comp):
    cfg = InferenceRPUConfig(noise_model=model, drift_compensation=comp)
    back = InferenceRPUConfig.from_dict(cfg.to_dict())
    assert back == cfg and type(back.noise_model) is type(model)
