"""Inference noise models (programming noise, drift, read noise) and drift compensation.

The formulas are those of ``docs/physics.md``
(aihwkit's facts, our own code). Everything here works on tensors of any
shape, elementwise, so one call covers every tile of a layer:

* a *conductance converter* maps weights to conductances in micro-siemens
  and back: one pair ``(g+, g-)`` per weight, or several pairs of different
  significance (``NPairConductanceConverter``);
* a *noise model* draws the programming noise of target conductances, the
  drift exponent of each device, and the drifted, read-noisy conductance at
  an inference time;
* a *drift compensation* turns a read of the tile on the identity input
  into a digital output factor.

How these act on the tiles of a model (``program_analog_weights``,
``drift_analog_weights``) is in ``fxanalog.inference``.

The classes are called as aihwkit's classes of the same names: the same
positional order and keywords, ``None`` for aihwkit's ``Optional`` arguments
meaning the default, and a noise model's ``g_max`` taken from its converter
(or the converter built with the given ``g_max``) when only one of them is
given (``BaseNoiseModel.init_arguments``).

Own models: subclass ``BaseNoiseModel`` as a dataclass decorated with
``@register_config_class`` (so configs holding it still round-trip through
``to_dict`` / ``from_dict``), declare its fields with ``param`` (a meaning and
a check each, see ``fxanalog.config.base``), give it a ``g_converter`` field
and override the three conductance methods (the defaults are those of a
noise-free device).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor

from fxanalog.config.base import (
    ConfigBase,
    Dict,
    InstanceOf,
    ListTable,
    Number,
    NumberList,
    is_number,
    param,
    register_config_class,
)

__all__ = [
    "BaseConductanceConverter",
    "SinglePairConductanceConverter",
    "NPairConductanceConverter",
    "DualPairConductanceConverter",
    "BaseNoiseModel",
    "PCMLikeNoiseModel",
    "CustomDriftPCMLikeNoiseModel",
    "StateIndependentNoiseModel",
    "ReRamWan2022NoiseModel",
    "BaseDriftCompensation",
    "GlobalDriftCompensation",
    "PerColumnDriftCompensation",
]

_ZERO_CLIP = 1e-7  # smallest relative conductance in the drift-exponent formulas
_READOUT_MIN = 1e-4  # smallest readout of a drift compensation (no division by 0)


# --------------------------------------------------------------------------
# Conductances


class BaseConductanceConverter(ConfigBase):
    """Base class of a noise model's ``g_converter``: weights to conductances
    in micro-siemens and back, elementwise, with one scale per tile.

    Subclasses define ``scale_ratio(w_max)`` (conductance per unit weight for
    a tile whose largest |w| is ``w_max``), ``convert_to_conductances(weights,
    w_max=None) -> (g, {"scale_ratio": s})`` with ``g`` of shape ``(D,
    *weights.shape)`` (D devices per weight, each an independent device for
    the noise model), and ``convert_back_to_weights(g, {"scale_ratio": s})``.
    """

    @classmethod
    def init_arguments(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """aihwkit's ``g_max=None`` / ``g_min=None`` mean the defaults."""
        return {k: v for k, v in kwargs.items() if not (v is None and k in ("g_max", "g_min"))}

    def scale_ratio(self, w_max: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__}: a conductance converter must define scale_ratio(w_max)")

    def convert_to_conductances(self, weights: Tensor, w_max: Optional[Tensor] = None) -> tuple[Tensor, dict]:
        raise TypeError(f"{type(self).__name__}: a conductance converter must define convert_to_conductances")

    def convert_back_to_weights(self, conductances: Tensor, params: dict) -> Tensor:
        raise TypeError(f"{type(self).__name__}: a conductance converter must define convert_back_to_weights")

    def _scale(self, weights: Tensor, w_max: Optional[Tensor]) -> Tensor:
        if w_max is None:
            w_max = weights.detach().abs().amax()
        return self.scale_ratio(torch.as_tensor(w_max, dtype=weights.dtype, device=weights.device))


def _zero_to_one(w_max: Tensor) -> Tensor:
    """An all-zero tile counts as ``max|W| = 1`` (it maps to ``g_min``)."""
    return torch.where(w_max > 0, w_max, torch.ones_like(w_max))


@register_config_class
@dataclass(repr=False)
class SinglePairConductanceConverter(BaseConductanceConverter):
    """Weights to a pair of conductances (g+, g-) in micro-siemens, and back.

    With ``s = (g_max - g_min) / w_max`` (``w_max = max|W|`` unless given):
    ``g+ = clip(s W, 0, g_max - g_min) + g_min``,
    ``g- = clip(-s W, 0, g_max - g_min) + g_min``, and ``W = (g+ - g-) / s``.
    """

    g_max: float = param(
        25.0, check=Number(gt=0),
        doc="Conductance in uS of the largest weight magnitude: g = w * g_max / max|W| on g+ (positive w) "
            "or g- (negative w).")
    g_min: float = param(
        0.0, check=Number(ge=0), doc="Conductance in uS added to both devices of the pair (the zero weight).")

    def check_consistency(self, where: str) -> None:
        if self.g_max <= self.g_min:
            raise ValueError(f"{where}.g_max = {self.g_max!r}: expected a number > g_min = {self.g_min!r}")

    def scale_ratio(self, w_max: Tensor) -> Tensor:
        """Conductance per unit weight, ``(g_max - g_min) / w_max``; a zero
        ``w_max`` counts as 1 (an all-zero tile maps to ``g_min``)."""
        return (self.g_max - self.g_min) / _zero_to_one(w_max)

    def convert_to_conductances(self, weights: Tensor, w_max: Optional[Tensor] = None) -> tuple[Tensor, dict]:
        """``weights`` to a ``(2, *weights.shape)`` tensor ``[g+, g-]`` and the
        parameters needed to convert back (``{"scale_ratio": s}``).

        ``w_max`` (broadcastable to ``weights``) gives one range per tile;
        by default the whole tensor is one tile.
        """
        s = self._scale(weights, w_max)
        span = self.g_max - self.g_min
        g = torch.empty((2, *weights.shape), dtype=weights.dtype, device=weights.device)
        torch.mul(weights, s, out=g[0])
        torch.neg(g[0], out=g[1])
        g.clamp_(0.0, span)
        if self.g_min:
            g.add_(self.g_min)
        return g, {"scale_ratio": s}

    def convert_back_to_weights(self, conductances: Tensor, params: dict) -> Tensor:
        """``(g+ - g-) / s``: the inverse of ``convert_to_conductances``."""
        return torch.sub(conductances[0], conductances[1]).div_(params["scale_ratio"])


@register_config_class
@dataclass(repr=False)
class NPairConductanceConverter(BaseConductanceConverter):
    """N pairs of devices per weight, of significance ``f_lst`` (aihwkit's
    converter of that name; ``NPairConductanceConverter(f_lst, g_max, g_min)``).

    With ``span = g_max - g_min`` and ``s = sum(f_lst) span / w_max``, the
    weight in micro-siemens ``u = s W`` fills the pairs in order, the first
    (least significant) first: pair k holds
    ``g+_k = clip((max(u, 0) - L_k) / f_k, 0, span) + g_min`` and
    ``g-_k = clip((max(-u, 0) - L_k) / f_k, 0, span) + g_min`` with
    ``L_k = span (f_0 + ... + f_{k-1})``; back,
    ``W = sum_k f_k (g+_k - g-_k) / s``. A pair is used only when the
    ones before it are full, so small weights see the noise of the first pair
    alone. The conductances are ``(2N, *W.shape)``: ``[g+_0, g-_0, g+_1, ...]``.
    """

    f_lst: list = param(
        default_factory=lambda: [1.0, 2.0, 3.0], check=NumberList(min_len=1),
        doc="Significance F of each pair, from the first (filled first) to the last; each > 0. aihwkit has "
            "no default (its example's [1, 2, 3] here).")
    g_max: float = param(
        25.0, check=Number(gt=0), doc="Largest conductance of a device in uS (a full pair).")
    g_min: float = param(
        0.0, check=Number(ge=0), doc="Conductance in uS of both devices of an unused pair (the zero weight).")

    #: The number of pairs the class requires (``None``: any).
    n_pairs: ClassVar[Optional[int]] = None

    def check_consistency(self, where: str) -> None:
        if self.n_pairs is not None and len(self.f_lst) != self.n_pairs:
            raise ValueError(f"{where}.f_lst = {self.f_lst!r}: expected {self.n_pairs} significance factors "
                             f"(one per pair)")
        if any(f <= 0 for f in self.f_lst):
            raise ValueError(f"{where}.f_lst = {self.f_lst!r}: expected factors > 0")
        if self.g_max <= self.g_min:
            raise ValueError(f"{where}.g_max = {self.g_max!r}: expected a number > g_min = {self.g_min!r}")

    def scale_ratio(self, w_max: Tensor) -> Tensor:
        """Conductance per unit weight, ``sum(f_lst) (g_max - g_min) / w_max``
        (a zero ``w_max`` counts as 1)."""
        return sum(float(f) for f in self.f_lst) * (self.g_max - self.g_min) / _zero_to_one(w_max)

    def convert_to_conductances(self, weights: Tensor, w_max: Optional[Tensor] = None) -> tuple[Tensor, dict]:
        """``weights`` to ``(2N, *weights.shape)`` conductances and ``{"scale_ratio": s}``
        (``w_max`` as in ``SinglePairConductanceConverter``)."""
        s = self._scale(weights, w_max)
        span = self.g_max - self.g_min
        u = weights * s
        pos, neg = u.clamp(min=0.0), (-u).clamp(min=0.0)
        g = torch.empty((2 * len(self.f_lst), *weights.shape), dtype=weights.dtype, device=weights.device)
        lower = 0.0
        for k, f in enumerate(self.f_lst):
            torch.sub(pos, lower, out=g[2 * k]).div_(float(f))
            torch.sub(neg, lower, out=g[2 * k + 1]).div_(float(f))
            lower += float(f) * span
        g.clamp_(0.0, span)
        if self.g_min:
            g.add_(self.g_min)
        return g, {"scale_ratio": s}

    def convert_back_to_weights(self, conductances: Tensor, params: dict) -> Tensor:
        """``sum_k f_k (g+_k - g-_k) / s``."""
        if conductances.shape[0] != 2 * len(self.f_lst):
            raise ValueError(f"{type(self).__name__}.convert_back_to_weights: {conductances.shape[0]} conductances "
                             f"per weight; expected {2 * len(self.f_lst)} (two per factor of f_lst = {self.f_lst!r})")
        w = torch.zeros_like(conductances[0])
        for k, f in enumerate(self.f_lst):
            w.add_(torch.sub(conductances[2 * k], conductances[2 * k + 1]), alpha=float(f))
        return w.div_(params["scale_ratio"])


@register_config_class
@dataclass(repr=False)
class DualPairConductanceConverter(NPairConductanceConverter):
    """``NPairConductanceConverter`` with exactly two pairs (aihwkit's
    converter of that name; ``DualPairConductanceConverter(f_lst, g_max, g_min)``)."""

    f_lst: list = param(
        default_factory=lambda: [1.0, 3.0], check=NumberList(min_len=2),
        doc="Significance F of the two pairs, the first filled first; each > 0. aihwkit has no default "
            "(its example's [1, 3] here).")

    n_pairs = 2


# --------------------------------------------------------------------------
# Noise models


class BaseNoiseModel(ConfigBase):
    """Base class of ``InferenceRPUConfig.noise_model``; its default methods
    are those of a noise-free device.

    Subclasses override (all elementwise, conductances in micro-siemens):

    * ``apply_programming_noise_to_conductance(g_target) -> g_prog``
    * ``generate_drift_coefficients(g_target) -> nu``
    * ``apply_drift_noise_to_conductance(g_prog, nu, t_inference) -> g``

    and have a ``g_converter`` field (a ``BaseConductanceConverter``).

    Constructed as aihwkit constructs its models (``init_arguments``): an
    argument given as ``None`` is left to its default; given ``g_converter``
    and no ``g_max``, ``g_max`` is the converter's; given ``g_max`` and no
    converter, the converter is a ``SinglePairConductanceConverter(g_max)``;
    given both, each is used as given (the converter maps, ``g_max`` scales
    the noise). A class with a polynomial fitted at some ``g_max`` names its
    coefficients field and their reference ``g_max`` field in
    ``coeff_reference``; the reference, when not given, is the model's
    ``g_max`` if the coefficients are given (they are taken as fitted for the
    device at hand) or if ``reference_follows_g_max``.
    """

    #: ``(coefficients field, reference g_max field)`` of a fitted polynomial.
    coeff_reference: ClassVar[Optional[tuple[str, str]]] = None
    #: The reference is the model's ``g_max`` also for the default coefficients.
    reference_follows_g_max: ClassVar[bool] = False

    @classmethod
    def init_arguments(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The keywords to build with, from those the caller gave (see the class doc)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        out = {k: v for k, v in kwargs.items() if not (v is None and k in cls.optional_arguments)}
        if "g_converter" in fields and "g_max" in fields:
            conv, g_max = out.get("g_converter"), out.get("g_max")
            if conv is None and is_number(g_max) and math.isfinite(g_max) and g_max > 0:
                out["g_converter"] = SinglePairConductanceConverter(g_max=g_max)
            elif conv is not None and "g_max" not in out and is_number(getattr(conv, "g_max", None)):
                out["g_max"] = conv.g_max
        if cls.coeff_reference is not None:
            coeffs, reference = cls.coeff_reference
            if reference not in out and (coeffs in out or cls.reference_follows_g_max):
                out[reference] = out.get("g_max", fields["g_max"].default)
        return out

    #: aihwkit's ``Optional`` arguments: ``None`` means the default.
    optional_arguments: ClassVar[tuple[str, ...]] = ("g_converter", "g_max", "prog_coeff", "prog_coeff_g_max_reference",
                                           "coeff_dic", "coeff_g_max_reference")

    @property
    def converter(self) -> BaseConductanceConverter:
        return getattr(self, "g_converter", None) or SinglePairConductanceConverter()

    def apply_programming_noise_to_conductance(self, g_target: Tensor) -> Tensor:
        return g_target.clone()

    def generate_drift_coefficients(self, g_target: Tensor) -> Tensor:
        return torch.zeros_like(g_target)

    def apply_drift_noise_to_conductance(self, g_prog: Tensor, nu: Tensor, t_inference: float) -> Tensor:
        self.check_inference_time(t_inference)
        return g_prog.clone()

    def check_inference_time(self, t_inference: Any) -> None:
        """Refuse a time that is not a finite number of seconds >= 0 (a bool,
        NaN, +inf: the drift formulas would give NaN weights)."""
        if not (is_number(t_inference) and 0 <= t_inference < math.inf):
            raise ValueError(f"{type(self).__name__}: t_inference = {t_inference!r}: expected a finite time in "
                             f"seconds >= 0 (NaN and +-inf are refused)")

    # -- on weights (one matrix is one tile) ----------------------------------

    @torch.no_grad()
    def apply_programming_noise(self, weights: Tensor) -> Tensor:
        """Weights as programmed (map to conductances, add programming noise, map back)."""
        g, params = self.converter.convert_to_conductances(weights)
        return self.converter.convert_back_to_weights(self.apply_programming_noise_to_conductance(g), params)

    @torch.no_grad()
    def apply_noise(self, weights: Tensor, t_inference: float) -> Tensor:
        """Weights programmed, then drifted and read ``t_inference`` seconds later."""
        g, params = self.converter.convert_to_conductances(weights)
        nu = self.generate_drift_coefficients(g)
        g_prog = self.apply_programming_noise_to_conductance(g)
        g_now = self.apply_drift_noise_to_conductance(g_prog, nu, t_inference)
        return self.converter.convert_back_to_weights(g_now, params)


def _poly_sigma(coeffs, g: Tensor, g_max: float) -> Tensor:
    """``c0 + c1 (g/g_max) + c2 (g/g_max)^2 + ...`` (Horner's scheme)."""
    gh = g / g_max
    sigma = torch.full_like(g, float(coeffs[-1]))
    for c in reversed(coeffs[:-1]):
        sigma.mul_(gh).add_(float(c))
    return sigma


def _drift(g_prog: Tensor, nu: Tensor, t_inference: float, t_0: float) -> Tensor:
    """``g_prog (t/t_0)^-nu`` with ``t = t_inference + t_0`` (no drift at t <= t_0)."""
    t = t_inference + t_0
    if t > t_0:
        return torch.mul(nu, -math.log(t / t_0)).exp_().mul_(g_prog)
    return g_prog.clone()



def _g_converter() -> Any:
    """The ``g_converter`` field of the noise models."""
    return param(default_factory=SinglePairConductanceConverter, check=InstanceOf(BaseConductanceConverter),
                 doc="Mapping of a weight to conductances (a pair (g+, g-), or several pairs). Given alone, `g_max` "
                     "is its `g_max`, as in aihwkit.")

@register_config_class
@dataclass(repr=False)
class PCMLikeNoiseModel(BaseNoiseModel):
    """PCM statistical model of Nandakumar et al., ICECS 2019.

    Per device (g in micro-siemens, xi standard normal, fresh per draw):

    * programming: ``sigma_p = (c0 + c1 g/g_max + c2 (g/g_max)^2) g_max/g_ref``
      (``g_ref = prog_coeff_g_max_reference``, 25 uS for the default coefficients),
      ``g_p = max(0, g + prog_noise_scale sigma_p xi)``;
    * drift exponent: ``gr = max(|g/g_max|, 1e-7)``,
      ``mu = clip(-0.0155 ln gr + 0.0244, 0.049, 0.1)``,
      ``sd = clip(-0.0125 ln gr - 0.0059, 0.008, 0.045)``,
      ``nu = |mu + sd xi| drift_scale``;
    * at ``t = t_inference + t_0``: ``g_d = g_p (t/t_0)^-nu``,
      ``Q = min(0.0088 / max((|g_p|/g_max)^0.65, 1e-3), 0.2)``,
      ``g = max(0, g_d + |g_d| read_noise_scale Q sqrt(ln((t + t_read)/(2 t_read))) xi)``.
    """

    prog_coeff: list = param(
        default_factory=lambda: [0.26348, 1.9650, -1.1731], check=NumberList(min_len=1),
        doc="Polynomial c0 + c1 gh + c2 gh^2 (gh = g/g_max) of the programming-noise standard deviation in uS, "
            "fitted at g_max = `prog_coeff_g_max_reference` (the default: Nandakumar et al., ICECS 2019, at "
            "25 uS).")
    g_converter: BaseConductanceConverter = _g_converter()
    g_max: float = param(
        25.0, check=Number(gt=0),
        doc="Largest conductance in uS; scales the programming noise (sigma * g_max / "
            "`prog_coeff_g_max_reference`). Given alone, the converter is a single pair with this `g_max`, as "
            "in aihwkit.")
    t_read: float = param(
        250.0e-9, check=Number(gt=0), doc="Duration of one read in seconds (read noise, 1/f).")
    t_0: float = param(
        20.0, check=Number(gt=0),
        doc="Time in seconds between programming and the first read; drift is relative to it "
            "(t = t_inference + t_0).")
    prog_noise_scale: float = param(
        1.0, check=Number(ge=0), doc="Factor on the programming noise (0 turns it off).")
    read_noise_scale: float = param(
        1.0, check=Number(ge=0), doc="Factor on the read (1/f) noise (0 turns it off).")
    drift_scale: float = param(
        1.0, check=Number(ge=0), doc="Factor on the drift exponents nu (0 turns drift off).")
    prog_coeff_g_max_reference: float = param(
        25.0, check=Number(gt=0),
        doc="g_max in uS at which `prog_coeff` was fitted: 25 for the default coefficients; when "
            "`prog_coeff` is given and this is not, the model's `g_max` (no rescaling), as in aihwkit.")

    coeff_reference = ("prog_coeff", "prog_coeff_g_max_reference")

    def programming_sigma(self, g_target: Tensor) -> Tensor:
        """Standard deviation of the programming noise (before prog_noise_scale)."""
        return _poly_sigma(self.prog_coeff, g_target, self.g_max) * (self.g_max / self.prog_coeff_g_max_reference)

    def apply_programming_noise_to_conductance(self, g_target: Tensor) -> Tensor:
        sigma = self.programming_sigma(g_target).mul_(self.prog_noise_scale)
        return torch.randn_like(g_target).mul_(sigma).add_(g_target).clamp_(min=0.0)

    def drift_statistics(self, g_target: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, sd) of the drift exponent before folding and drift_scale."""
        gr = torch.abs(g_target).div_(self.g_max).clamp_(min=_ZERO_CLIP).log_()
        mu = torch.mul(gr, -0.0155).add_(0.0244).clamp_(0.049, 0.1)
        sd = gr.mul_(-0.0125).sub_(0.0059).clamp_(0.008, 0.045)
        return mu, sd

    def generate_drift_coefficients(self, g_target: Tensor) -> Tensor:
        mu, sd = self.drift_statistics(g_target)
        nu = torch.randn_like(mu).mul_(sd).add_(mu).abs_()
        return nu.mul_(self.drift_scale) if self.drift_scale != 1 else nu

    def read_sigma(self, g_prog: Tensor, t_inference: float) -> Tensor:
        """Relative 1/f read noise ``Q sqrt(ln((t + t_read)/(2 t_read)))`` (before read_noise_scale)."""
        t = t_inference + self.t_0
        q = torch.abs(g_prog).div_(self.g_max).pow_(0.65).clamp_(min=1e-3).reciprocal_().mul_(0.0088).clamp_(max=0.2)
        return q.mul_(math.sqrt(math.log((t + self.t_read) / (2 * self.t_read))))

    def apply_drift_noise_to_conductance(self, g_prog: Tensor, nu: Tensor, t_inference: float) -> Tensor:
        self.check_inference_time(t_inference)
        g_d = _drift(g_prog, nu, t_inference, self.t_0)
        if self.read_noise_scale > 0:
            # g_d (1 + sigma xi) has the law of g_d + |g_d| sigma xi (xi is symmetric)
            sigma = self.read_sigma(g_prog, t_inference).mul_(self.read_noise_scale)
            g_d.mul_(torch.randn_like(g_d).mul_(sigma).add_(1.0))
        return g_d.clamp_(min=0.0)


@register_config_class
@dataclass(repr=False)
class CustomDriftPCMLikeNoiseModel(PCMLikeNoiseModel):
    """``PCMLikeNoiseModel`` with a measured drift model: the mean and the
    spread of the drift exponent are interpolated linearly in the target
    conductance from ``custom_drift_model = {"g_lst": [...] (uS, ascending),
    "nu_mean_lst": [...], "nu_std_lst": [...]}``, clamped at the ends of
    ``g_lst``; ``nu = |mean + std xi| drift_scale``.

    Called as aihwkit's: ``CustomDriftPCMLikeNoiseModel(custom_drift_model,
    prog_coeff, g_converter, g_max, ...)`` (the drift table first)."""

    positional_fields = ("custom_drift_model",)

    custom_drift_model: dict = param(
        default_factory=lambda: {"g_lst": [0.0, 25.0], "nu_mean_lst": [0.05, 0.05], "nu_std_lst": [0.01, 0.01]},
        check=Dict(),
        doc="Measured drift statistics: `g_lst` (target conductances in uS, ascending), `nu_mean_lst` and "
            "`nu_std_lst` (mean and spread of the drift exponent at each); interpolated linearly in the "
            "conductance, clamped at the ends.")

    def check_consistency(self, where: str) -> None:
        super().check_consistency(where)
        m = self.custom_drift_model
        keys = ("g_lst", "nu_mean_lst", "nu_std_lst")
        if set(m) != set(keys):
            raise ValueError(f"{where}.custom_drift_model = {m!r}: expected a dict with exactly the keys {keys}")
        for k in keys:
            NumberList(min_len=2)(m[k], f"{where}.custom_drift_model[{k!r}]")
        if len({len(m[k]) for k in keys}) != 1:
            raise ValueError(f"{where}.custom_drift_model: expected three lists of the same length >= 2, got {m!r}")
        g = [float(v) for v in m["g_lst"]]
        if any(b <= a for a, b in zip(g, g[1:])):
            raise ValueError(f"{where}.custom_drift_model['g_lst'] = {m['g_lst']!r}: expected ascending values")
        if any(float(v) < 0 for v in m["nu_std_lst"]):
            raise ValueError(f"{where}.custom_drift_model['nu_std_lst'] = {m['nu_std_lst']!r}: expected values >= 0")

    def drift_statistics(self, g_target: Tensor) -> tuple[Tensor, Tensor]:
        m = self.custom_drift_model
        g_lst = torch.tensor(m["g_lst"], dtype=g_target.dtype, device=g_target.device)
        g = g_target.clamp(float(g_lst[0]), float(g_lst[-1]))
        # Linear interpolation: segment k holds g_lst[k] <= g <= g_lst[k+1].
        k = torch.searchsorted(g_lst, g.contiguous(), right=True).clamp_(1, len(g_lst) - 1) - 1
        frac = (g - g_lst[k]) / (g_lst[k + 1] - g_lst[k])

        def interp(values) -> Tensor:
            v = torch.tensor(values, dtype=g_target.dtype, device=g_target.device)
            return v[k] + frac * (v[k + 1] - v[k])

        return interp(m["nu_mean_lst"]), interp(m["nu_std_lst"])


@register_config_class
@dataclass(repr=False)
class StateIndependentNoiseModel(BaseNoiseModel):
    """Noise independent of the programmed state (aihwkit's model of that name).

    * programming: ``sigma_p = c0 + c1 g/g_max + c2 (g/g_max)^2`` (default
      constant 0.2 uS), ``g_p = max(0, g + prog_noise_scale sigma_p xi)``;
    * drift exponent: ``nu = |drift_nu_mean + drift_nu_std xi| drift_scale``;
    * at ``t = t_inference + t_0``: ``g_d = g_p (t/t_0)^-nu``,
      ``g = max(0, g_d + read_noise_scale |g_d/g_max| sqrt(ln((t + t_read)/(2 t_read))) xi)``.
    """

    g_converter: BaseConductanceConverter = _g_converter()
    g_max: float = param(
        25.0, check=Number(gt=0),
        doc="Largest conductance in uS; the read noise is relative to it. Given alone, the converter is a single "
            "pair with this `g_max`, as in aihwkit.")
    prog_coeff: list = param(
        default_factory=lambda: [0.2, 0.0, 0.0], check=NumberList(min_len=1),
        doc="Polynomial c0 + c1 g/g_max + c2 (g/g_max)^2 of the programming-noise standard deviation in uS "
            "(default: a constant 0.2 uS).")
    prog_noise_scale: float = param(
        1.0, check=Number(ge=0), doc="Factor on the programming noise (0 turns it off).")
    drift_nu_mean: float = param(
        0.1, check=Number(), doc="Mean of the drift exponent nu, the same for every conductance.")
    drift_nu_std: float = param(
        0.05, check=Number(ge=0),
        doc="Device-to-device spread of nu: nu = |drift_nu_mean + drift_nu_std xi|.")
    drift_scale: float = param(
        1.0, check=Number(ge=0), doc="Factor on the drift exponents (0 turns drift off).")
    t_0: float = param(
        20.0, check=Number(gt=0),
        doc="Time in seconds between programming and the first read; drift is relative to it.")
    read_noise_scale: float = param(
        1.0, check=Number(ge=0),
        doc="Factor on the read noise, |g/g_max| sqrt(ln((t + t_read)/(2 t_read))) (0 turns it off).")
    t_read: float = param(250.0e-9, check=Number(gt=0), doc="Duration of one read in seconds (read noise).")

    def apply_programming_noise_to_conductance(self, g_target: Tensor) -> Tensor:
        sigma = _poly_sigma(self.prog_coeff, g_target, self.g_max) * self.prog_noise_scale
        return (g_target + sigma * torch.randn_like(g_target)).clamp_(min=0.0)

    def generate_drift_coefficients(self, g_target: Tensor) -> Tensor:
        nu = self.drift_nu_mean + self.drift_nu_std * torch.randn_like(g_target)
        return nu.abs_() * self.drift_scale

    def apply_drift_noise_to_conductance(self, g_prog: Tensor, nu: Tensor, t_inference: float) -> Tensor:
        self.check_inference_time(t_inference)
        g_d = _drift(g_prog, nu, t_inference, self.t_0)
        if self.read_noise_scale > 0:
            t = t_inference + self.t_0
            sigma = self.read_noise_scale * math.sqrt(math.log((t + self.t_read) / (2 * self.t_read)))
            g_d = g_d + (g_d / self.g_max).abs() * sigma * torch.randn_like(g_d)
        return g_d.clamp_(min=0.0)


@register_config_class
@dataclass(repr=False)
class ReRamWan2022NoiseModel(BaseNoiseModel):
    """ReRAM model fitted to the measurements of Wan et al., Nature 608, 504
    (2022) (aihwkit's model of that name; ``ReRamWan2022NoiseModel(coeff_dic,
    g_converter, g_max, noise_scale, coeff_g_max_reference)``).

    The spread of a device around its target after a time t is a polynomial
    in the target, one per measured time (the keys of ``coeff_dic``, seconds):
    ``sigma_t(g) = (c0 + c1 gh + ... + c4 gh^4) g_max / coeff_g_max_reference``
    with ``gh = g/g_max``. ReRAM does not drift as PCM does; instead:

    * programming: ``g_p = max(0, g + noise_scale sigma_t0(g) xi)`` with
      ``t0`` the smallest key (1 s by default);
    * the "drift coefficient" of a device is its target ``g``;
    * at an inference time t that is a key: ``g = max(0, g + noise_scale
      sigma_t(g) xi)``, drawn afresh around the target; at t = 0 (not a key):
      the programmed ``g_p``; any other t is refused, as in aihwkit.

    No separate read (1/f) noise: aihwkit suggests ``forward.w_noise`` of
    about 0.01 (``WeightNoiseType.ADDITIVE_CONSTANT``) for it.
    """

    coeff_dic: dict = param(
        default_factory=lambda: {
            1.0: [0.348, 16.030, -43.853, 45.393, -16.815],
            86400.0: [0.701, 22.086, -50.773, 47.095, -16.458],
            172800.0: [0.782, 20.274, -43.507, 37.062, -11.934],
        },
        check=ListTable(Number(ge=0), "inference times in seconds"),
        doc="Polynomial coefficients c0, c1, ... (uS) of the spread around the target after each time t "
            "(seconds, the keys): sigma_t = sum_i c_i (g/g_max)^i; the smallest time is the programming noise. "
            "Default: aihwkit's fit of Wan et al. 2022 at 1 s, 1 day and 2 days.")
    g_converter: BaseConductanceConverter = _g_converter()
    g_max: float = param(
        25.0, check=Number(gt=0),
        doc="Largest conductance in uS (gh = g/g_max in the polynomials). Given alone, the converter is a "
            "single pair with this `g_max`, as in aihwkit.")
    noise_scale: float = param(1.0, check=Number(ge=0), doc="Factor on every spread (0 turns the noise off).")
    coeff_g_max_reference: float = param(
        25.0, check=Number(gt=0),
        doc="g_max in uS at which the coefficients apply unscaled (sigma * g_max / this); when not given, the "
            "model's `g_max`, as aihwkit 1.1.0 computes (also for its default fit, made at 40 uS: give 40.0 to "
            "rescale it).")

    coeff_reference = ("coeff_dic", "coeff_g_max_reference")
    reference_follows_g_max = True

    def sigma(self, g_target: Tensor, t: float) -> Tensor:
        """The spread ``sigma_t`` (uS, before ``noise_scale``) of the fit at time ``t`` (a key)."""
        return _poly_sigma(self.coeff_dic[t], g_target, self.g_max).mul_(self.g_max / self.coeff_g_max_reference)

    def _draw(self, g_target: Tensor, t: float) -> Tensor:
        sigma = self.sigma(g_target, t).mul_(self.noise_scale)
        return torch.randn_like(g_target).mul_(sigma).add_(g_target).clamp_(min=0.0)

    def apply_programming_noise_to_conductance(self, g_target: Tensor) -> Tensor:
        return self._draw(g_target, min(self.coeff_dic))

    def generate_drift_coefficients(self, g_target: Tensor) -> Tensor:
        return g_target.clone()

    def apply_drift_noise_to_conductance(self, g_prog: Tensor, nu: Tensor, t_inference: float) -> Tensor:
        self.check_inference_time(t_inference)
        if t_inference in self.coeff_dic:
            return self._draw(nu, t_inference)
        if t_inference == 0:
            return g_prog.clone()
        times = ", ".join(repr(t) for t in sorted(self.coeff_dic))
        raise ValueError(f"{type(self).__name__}: t_inference = {t_inference!r}: expected 0 or one of the times "
                         f"of coeff_dic ({times} s), the times the model was fitted at")


# --------------------------------------------------------------------------
# Drift compensation


class BaseDriftCompensation(ConfigBase):
    """Base class of ``InferenceRPUConfig.drift_compensation``.

    At programming time the tile is read with its full noisy forward on the
    identity input and ``readout`` of that read is kept as the reference; after
    drift, the tile output is multiplied (in digital) by ``apply(read, reference)``.
    A read is ``(..., rows, columns)``: one row per identity input. Subclasses
    override ``readout``; its result broadcasts over the read's columns.
    """

    def readout(self, y: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__}: a drift compensation must define readout(y)")

    def apply(self, y: Tensor, reference: Tensor) -> Tensor:
        """The digital factor ``reference / readout(y)``."""
        return reference / self.readout(y)


@register_config_class
@dataclass(repr=False)
class GlobalDriftCompensation(BaseDriftCompensation):
    """One digital factor per tile: mean|F(I)| at programming over mean|F(I)| now."""

    def readout(self, y: Tensor) -> Tensor:
        return y.abs().mean(dim=(-2, -1), keepdim=True).clamp(min=_READOUT_MIN)


@register_config_class
@dataclass(repr=False)
class PerColumnDriftCompensation(BaseDriftCompensation):
    """One digital factor per output column: the column's mean|F(I)| at
    programming over its mean|F(I)| now."""

    def readout(self, y: Tensor) -> Tensor:
        return y.abs().mean(dim=-2, keepdim=True).clamp(min=_READOUT_MIN)
