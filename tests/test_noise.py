"""Noise models, conductance converter and drift compensations against the
formulas of docs/physics.md, computed here independently.

Statistical tests draw 10^5 devices per level: the standard error of a
standard deviation is then 1/sqrt(2n) = 0.22 %, of a mean sigma/sqrt(n);
the tolerances (2 % on standard deviations, 1 % on means) are many standard
errors wide, while any wrong constant of the formulas moves the statistic by
far more.
"""

import copy
import dataclasses
import inspect
import json
import math
import pickle

import pytest
import torch

from fxanalog import InferenceRPUConfig
from fxanalog.config import config_from_dict
from fxanalog.config.base import positional_order
from fxanalog.config.noise import (
    CustomDriftPCMLikeNoiseModel,
    DualPairConductanceConverter,
    GlobalDriftCompensation,
    NPairConductanceConverter,
    PCMLikeNoiseModel,
    PerColumnDriftCompensation,
    ReRamWan2022NoiseModel,
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


# --------------------------------------------------------------------------
# aihwkit's call forms

# aihwkit 1.1.0's constructor arguments, in order, typed in from its source
# (aihwkit/inference/converter/conductance.py, noise/pcm.py, noise/custom.py,
# noise/reram.py, compensation/drift.py).
AIHWKIT_ARGUMENTS = [
    (SinglePairConductanceConverter, ["g_max", "g_min"]),
    (NPairConductanceConverter, ["f_lst", "g_max", "g_min"]),
    (DualPairConductanceConverter, ["f_lst", "g_max", "g_min"]),
    (PCMLikeNoiseModel, ["prog_coeff", "g_converter", "g_max", "t_read", "t_0", "prog_noise_scale",
                         "read_noise_scale", "drift_scale", "prog_coeff_g_max_reference"]),
    (CustomDriftPCMLikeNoiseModel, ["custom_drift_model", "prog_coeff", "g_converter", "g_max", "t_read", "t_0",
                                    "prog_noise_scale", "read_noise_scale", "drift_scale",
                                    "prog_coeff_g_max_reference"]),
    (StateIndependentNoiseModel, ["g_converter", "g_max", "prog_coeff", "prog_noise_scale", "drift_nu_mean",
                                  "drift_nu_std", "drift_scale", "t_0", "read_noise_scale", "t_read"]),
    (ReRamWan2022NoiseModel, ["coeff_dic", "g_converter", "g_max", "noise_scale", "coeff_g_max_reference"]),
    (GlobalDriftCompensation, []),
    (PerColumnDriftCompensation, []),
]

TABLE = {"g_lst": [0.0, 10.0, 25.0], "nu_mean_lst": [0.02, 0.06, 0.08], "nu_std_lst": [0.01, 0.02, 0.03]}

# A valid value of each argument, none of them the default.
SAMPLE = {
    "g_max": 40.0, "g_min": 2.0, "f_lst": [1.0, 4.0], "prog_coeff": [0.5, 0.25, -0.125],
    "g_converter": SinglePairConductanceConverter(40.0, 2.0), "t_read": 1e-6, "t_0": 10.0,
    "prog_noise_scale": 0.5, "read_noise_scale": 0.25, "drift_scale": 2.0, "prog_coeff_g_max_reference": 30.0,
    "custom_drift_model": TABLE, "drift_nu_mean": 0.2, "drift_nu_std": 0.01, "noise_scale": 0.5,
    "coeff_dic": {1.0: [0.1, 0.2], 60.0: [0.3, 0.4]}, "coeff_g_max_reference": 30.0,
}


@pytest.mark.parametrize("cls, names", AIHWKIT_ARGUMENTS, ids=lambda x: getattr(x, "__name__", ""))
def test_aihwkits_positional_and_keyword_forms(cls, names):
    assert positional_order(cls)[: len(names)] == tuple(names)
    assert list(inspect.signature(cls).parameters)[: len(names)] == names
    values = [SAMPLE[n] for n in names]
    for obj in (cls(*values), cls(**dict(zip(names, values)))):
        obj.validate()
        for name, value in zip(names, values):
            assert getattr(obj, name) == value, name
    if names:
        with pytest.raises(TypeError, match=rf"{cls.__name__}\(\) got two values for '{names[0]}'"):
            cls(values[0], **{names[0]: values[0]})
    with pytest.raises(TypeError, match=rf"{cls.__name__}\(\) got an unexpected keyword 'nope'"):
        cls(nope=1)
    with pytest.raises(TypeError, match=rf"{cls.__name__}\(\) takes at most"):
        cls(*range(len(dataclasses.fields(cls)) + 1))


def test_custom_drift_model_as_aihwkit_calls_it():
    # the call: the drift table first, the converter by keyword
    model = CustomDriftPCMLikeNoiseModel(TABLE, g_converter=SinglePairConductanceConverter(g_max=20.0))
    model.validate()
    assert model.custom_drift_model is TABLE and model.prog_coeff == [0.26348, 1.9650, -1.1731]
    assert model.g_max == 20.0  # aihwkit takes g_max from the converter
    mu, sd = model.drift_statistics(torch.tensor([0.0, 5.0, 10.0, 17.5, 25.0, 40.0]))
    # by hand: linear between (0, 0.02), (10, 0.06), (25, 0.08); clamped outside
    assert torch.allclose(mu, torch.tensor([0.02, 0.04, 0.06, 0.07, 0.08, 0.08]))
    assert torch.allclose(sd, torch.tensor([0.01, 0.015, 0.02, 0.025, 0.03, 0.03]))
    w = torch.randn(8, 8)
    assert model.apply_noise(w, 3600.0).shape == w.shape


def test_g_max_and_converter_as_aihwkit():
    assert PCMLikeNoiseModel(g_max=40.0).g_converter == SinglePairConductanceConverter(g_max=40.0)
    assert PCMLikeNoiseModel(None, None, 40.0).g_converter.g_max == 40.0
    model = StateIndependentNoiseModel(SinglePairConductanceConverter(g_max=30.0, g_min=3.0))
    assert (model.g_max, model.g_converter.g_min) == (30.0, 3.0)
    assert ReRamWan2022NoiseModel(g_converter=NPairConductanceConverter([1.0, 2.0], g_max=50.0)).g_max == 50.0
    # both given: each as given (nothing the caller wrote is replaced)
    both = PCMLikeNoiseModel(g_converter=SinglePairConductanceConverter(g_max=30.0), g_max=35.0)
    assert (both.g_max, both.g_converter.g_max) == (35.0, 30.0)
    # None is aihwkit's "default" for its Optional arguments
    assert PCMLikeNoiseModel(None, None, None, prog_coeff_g_max_reference=None) == PCMLikeNoiseModel()
    assert SinglePairConductanceConverter(None, None) == SinglePairConductanceConverter()
    assert ReRamWan2022NoiseModel(None, None, None) == ReRamWan2022NoiseModel()


def test_prog_coeff_reference_as_aihwkit():
    # default coefficients: fitted at 25 uS, scaled by g_max / 25
    g = torch.tensor([0.0, 20.0, 40.0])
    m = PCMLikeNoiseModel(g_max=40.0)
    assert m.prog_coeff_g_max_reference == 25.0
    assert torch.allclose(m.programming_sigma(g), torch.tensor([pcm_sigma(v, 40.0) for v in g.tolist()]))
    # own coefficients: taken as fitted at the model's g_max (no rescaling)
    m = PCMLikeNoiseModel(prog_coeff=[1.0, 2.0], g_max=40.0)
    assert m.prog_coeff_g_max_reference == 40.0
    assert torch.allclose(m.programming_sigma(g), torch.tensor([1.0, 2.0, 3.0]))
    m = PCMLikeNoiseModel(prog_coeff=[1.0, 2.0], g_max=40.0, prog_coeff_g_max_reference=20.0)
    assert torch.allclose(m.programming_sigma(g), torch.tensor([2.0, 4.0, 6.0]))


@pytest.mark.parametrize("model", [
    CustomDriftPCMLikeNoiseModel(TABLE, g_converter=DualPairConductanceConverter([1.0, 2.0], 30.0, 1.0)),
    ReRamWan2022NoiseModel(g_max=40.0),
    ReRamWan2022NoiseModel({0.5: [1.0], 7.0: [2.0, 1.0]}, NPairConductanceConverter([1.0, 1.0, 2.0])),
    StateIndependentNoiseModel(g_converter=NPairConductanceConverter([0.5, 2.0], g_max=10.0)),
], ids=lambda m: type(m).__name__)
def test_new_models_round_trip(model):
    model.validate()
    data = json.loads(json.dumps(model.to_dict()))  # number keys of coeff_dic become strings in JSON
    back = config_from_dict(data)
    assert back == model and type(back) is type(model) and type(back.g_converter) is type(model.g_converter)
    back.validate()
    cfg = InferenceRPUConfig(noise_model=model)
    assert InferenceRPUConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model)), dataclasses.replace(model)):
        assert other == model and other is not model
        other.validate()


# --------------------------------------------------------------------------
# Several pairs per weight


def test_dual_pair_converter_by_hand():
    # f = [1, 3], span 25 uS: s = (1 + 3) 25 / max|W| = 100 uS per unit; u = 100 w fills pair 0 up to 25 uS,
    # then pair 1 holds (u - 25) / 3
    w = torch.tensor([1.0, 0.25, -0.5, 0.1, 0.0])
    conv = DualPairConductanceConverter([1.0, 3.0])
    g, params = conv.convert_to_conductances(w)
    assert g.shape == (4, 5)
    assert torch.allclose(g[0], torch.tensor([25.0, 25.0, 0.0, 10.0, 0.0]))
    assert torch.allclose(g[1], torch.tensor([0.0, 0.0, 25.0, 0.0, 0.0]))
    assert torch.allclose(g[2], torch.tensor([25.0, 0.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(g[3], torch.tensor([0.0, 0.0, 25.0 / 3, 0.0, 0.0]))
    assert torch.allclose(params["scale_ratio"], torch.tensor(100.0))
    assert torch.allclose(conv.convert_back_to_weights(g, params), w)
    shifted, _ = DualPairConductanceConverter([1.0, 3.0], g_max=30.0, g_min=5.0).convert_to_conductances(w)
    assert torch.allclose(shifted, g + 5.0)  # same span: every device 5 uS higher


@pytest.mark.parametrize("conv", [NPairConductanceConverter([1.0, 2.0, 3.0], g_max=3.123, g_min=0.789),
                                  NPairConductanceConverter([0.5]), DualPairConductanceConverter([2.0, 1.0])],
                         ids=lambda c: str(c.f_lst))
def test_n_pair_converter_invertible_and_in_range(conv):
    torch.manual_seed(0)
    w = torch.randn(10, 35)
    a, b = w[:, :20].abs().max().item(), w[:, 20:].abs().max().item()
    w_max = torch.tensor([[a] * 20 + [b] * 15])  # two tiles along the columns, each its own max|W|
    for g, params in (conv.convert_to_conductances(w), conv.convert_to_conductances(w, w_max)):
        assert g.shape == (2 * len(conv.f_lst), 10, 35)
        assert g.min() >= conv.g_min - 1e-6 and g.max() <= conv.g_max + 1e-6
        assert torch.allclose(conv.convert_back_to_weights(g, params), w, atol=1e-5)
        # one device of each pair stays at g_min
        assert torch.all(torch.minimum(g[0::2] - conv.g_min, g[1::2] - conv.g_min).abs() < 1e-6)
    # a weight at max|W| fills every pair
    g, _ = conv.convert_to_conductances(torch.tensor([-1.0, 1.0]))
    assert torch.allclose(g[0::2, 1], torch.full((len(conv.f_lst),), conv.g_max))
    assert torch.allclose(g[1::2, 0], torch.full((len(conv.f_lst),), conv.g_max))


def test_n_pair_converter_validation():
    with pytest.raises(ValueError, match=r"^DualPairConductanceConverter\.f_lst = \[1\.0, 2\.0, 3\.0\]: expected "
                                         r"2 significance factors \(one per pair\)$"):
        DualPairConductanceConverter([1.0, 2.0, 3.0]).validate()
    with pytest.raises(ValueError, match=r"^NPairConductanceConverter\.f_lst = \[1\.0, 0\.0\]: expected factors > 0$"):
        NPairConductanceConverter([1.0, 0.0]).validate()
    with pytest.raises(ValueError, match=r"^NPairConductanceConverter\.f_lst = \[1\.0, inf\]: expected a "):
        NPairConductanceConverter([1.0, math.inf]).validate()
    with pytest.raises(ValueError, match=r"^NPairConductanceConverter\.g_max = 1\.0: expected a number > g_min"):
        NPairConductanceConverter([1.0], g_max=1.0, g_min=2.0).validate()
    with pytest.raises(ValueError, match="PCMLikeNoiseModel.g_converter = 3"):
        PCMLikeNoiseModel(g_converter=3).validate()


def test_programming_noise_on_every_device_of_the_pairs():
    # a constant 0.2 uS on each of the 4 devices (g_min = 5 uS keeps the clip at 0 far away): the weight's
    # error is sum_k f_k (e+_k - e-_k) / s, of standard deviation 0.2 sqrt(2 (1^2 + 3^2)) / s, s = 4 * 25 / 1
    torch.manual_seed(1)
    conv = DualPairConductanceConverter([1.0, 3.0], g_max=30.0, g_min=5.0)
    model = StateIndependentNoiseModel(g_converter=conv, prog_coeff=[0.2])
    w = torch.linspace(-1.0, 1.0, N)
    err = model.apply_programming_noise(w) - w
    expected = 0.2 * math.sqrt(2 * (1 + 9)) / 100.0
    assert abs(err.std().item() / expected - 1) < 0.02
    assert abs(err.mean().item()) < 4 * expected / math.sqrt(N)


def test_layer_with_several_pairs_programs_and_drifts():
    from fxanalog.inference import drift_analog_weights, program_analog_weights
    from fxanalog.nn import AnalogLinear

    torch.manual_seed(2)
    conv = NPairConductanceConverter([1.0, 2.0, 4.0])
    cfg = InferenceRPUConfig(noise_model=PCMLikeNoiseModel(g_converter=conv, prog_noise_scale=0.0,
                                                           read_noise_scale=0.0, drift_scale=0.0))
    layer = AnalogLinear(6, 5, rpu_config=cfg).eval()
    program_analog_weights(layer)
    assert layer.tile.programmed_conductances.shape[0] == 6  # three pairs
    # no noise, no drift: the conductances give the weights back
    assert torch.allclose(layer.tile.analog_weight.reshape(5, 6), layer.weight.detach(), atol=1e-6)
    drift_analog_weights(layer, 3600.0)
    assert torch.allclose(layer.tile.analog_weight.reshape(5, 6), layer.weight.detach(), atol=1e-6)


# --------------------------------------------------------------------------
# ReRAM (Wan et al. 2022)


def wan_sigma(g: float, t: float, g_max: float = 25.0, reference: float = 25.0) -> float:
    """aihwkit's fit, highest power first as its source lists it."""
    coeffs = {1.0: [-16.815, 45.393, -43.853, 16.030, 0.348], 86400.0: [-16.458, 47.095, -50.773, 22.086, 0.701],
              172800.0: [-11.934, 37.062, -43.507, 20.274, 0.782]}[t]
    gh = g / g_max
    return sum(c * gh ** (len(coeffs) - 1 - i) for i, c in enumerate(coeffs)) * g_max / reference


@pytest.mark.parametrize("g_level", [12.5, 20.0, 25.0])  # >= 3 sigma above 0: the clip at 0 is negligible
def test_reram_programming_and_later_spread(g_level):
    torch.manual_seed(3)
    model = ReRamWan2022NoiseModel()
    g = torch.full((N,), g_level)
    g_prog = model.apply_programming_noise_to_conductance(g)
    nu = model.generate_drift_coefficients(g)
    assert torch.equal(nu, g)  # the target is the "drift coefficient"
    assert abs((g_prog - g).std().item() / wan_sigma(g_level, 1.0) - 1) < 0.02
    assert abs((g_prog - g).mean().item()) < 4 * wan_sigma(g_level, 1.0) / math.sqrt(N)
    for t in (86400.0, 172800):
        g_t = model.apply_drift_noise_to_conductance(g_prog, nu, t)
        assert abs((g_t - g).std().item() / wan_sigma(g_level, float(t)) - 1) < 0.02
        # drawn around the target, independent of the programming error
        assert abs(torch.corrcoef(torch.stack([g_t - g, g_prog - g]))[0, 1].item()) < 0.02
    assert torch.equal(model.apply_drift_noise_to_conductance(g_prog, nu, 0.0), g_prog)


def test_reram_times_scales_and_clip():
    model = ReRamWan2022NoiseModel()
    g = torch.tensor([20.0])
    with pytest.raises(ValueError, match=r"t_inference = 3600\.0: expected 0 or one of the times of coeff_dic "
                                         r"\(1\.0, 86400\.0, 172800\.0 s\)"):
        model.apply_drift_noise_to_conductance(g, g, 3600.0)
    assert math.isclose(model.sigma(g, 86400.0).item(), wan_sigma(20.0, 86400.0), rel_tol=1e-6)
    m40 = ReRamWan2022NoiseModel(g_max=40.0)
    assert m40.coeff_g_max_reference == 40.0  # as aihwkit 1.1.0: the fit applies at the model's g_max
    assert math.isclose(m40.sigma(g, 1.0).item(), wan_sigma(20.0, 1.0, 40.0, 40.0), rel_tol=1e-6)
    rescaled = ReRamWan2022NoiseModel(g_max=30.0, coeff_g_max_reference=40.0)
    assert math.isclose(rescaled.sigma(g, 1.0).item(), wan_sigma(20.0, 1.0, 30.0, 40.0), rel_tol=1e-6)
    quiet = ReRamWan2022NoiseModel(noise_scale=0.0)
    assert torch.equal(quiet.apply_programming_noise_to_conductance(g), g)
    low = ReRamWan2022NoiseModel(coeff_dic={1.0: [50.0]}).apply_programming_noise_to_conductance(torch.full((1000,), 1.0))
    assert low.min() >= 0.0  # no negative conductance


@pytest.mark.parametrize("model", [PCMLikeNoiseModel(), CustomDriftPCMLikeNoiseModel(), StateIndependentNoiseModel(),
                                   ReRamWan2022NoiseModel()], ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("t", [math.inf, math.nan, -1.0, True])
def test_inference_time_must_be_finite(model, t):
    g = torch.full((4,), 10.0)
    with pytest.raises(ValueError) as err:
        model.apply_drift_noise_to_conductance(g, model.generate_drift_coefficients(g), t)
    assert str(err.value) == (f"{type(model).__name__}: t_inference = {t!r}: expected a finite time in seconds >= 0 "
                              f"(NaN and +-inf are refused)")


def test_drift_analog_weights_refuses_infinite_time():
    from fxanalog.inference import drift_analog_weights, program_analog_weights
    from fxanalog.nn import AnalogLinear

    layer = AnalogLinear(4, 3, rpu_config=InferenceRPUConfig()).eval()
    program_analog_weights(layer)
    before = layer.tile.analog_weight.clone()
    with pytest.raises(ValueError, match=r"t_inference = inf: expected a finite time"):
        drift_analog_weights(layer, math.inf)
    assert torch.equal(layer.tile.analog_weight, before)  # nothing changed
    drift_analog_weights(layer, 3600.0)
    assert torch.isfinite(layer.tile.analog_weight).all()


def test_dict_without_a_field_gets_its_default():
    # a dict saved before prog_coeff_g_max_reference existed: the default coefficients' 25 uS, not g_max
    data = PCMLikeNoiseModel(g_max=40.0).to_dict()
    del data["prog_coeff_g_max_reference"]
    back = config_from_dict(data)
    assert back.prog_coeff_g_max_reference == 25.0 and back.g_max == 40.0
    data = {"class": "PCMLikeNoiseModel", "g_max": 40.0}  # a converter left out is the default one
    assert config_from_dict(data).g_converter == SinglePairConductanceConverter()
