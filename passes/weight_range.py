"""How much of its tile's weight range a layer uses, and the warning when
little (docs/compiler.md, "Small weights on the tiles").

The periphery of a tile is specified in normalized units: the DAC's inputs
are in [-1, 1] (noise management scales every input vector to that range),
and ``forward.out_noise``, ``out_bound`` and the ADC step
(``out_res``) are output units where a weight of 1 times an input of 1
gives 1. A weight of magnitude 1 in tile units is the full-scale weight of
that periphery; the conductances themselves always use their whole range,
since the noise model's converter maps each tile's ``max|W_t|`` to
``g_max`` (docs/physics.md, "Weights as conductances").

With ``mapping.weight_scaling_omega = 0`` (aihwkit's default) the weights
go on the tile as they are, so a layer whose largest weight is ``f < 1``
gives outputs ``f`` times smaller against the same output noise and ADC
step: its output-referred error is ``1/f`` times that of the same layer
mapped with ``omega = 1``. ``compile``, ``explain`` and ``analog_summary``
warn once per layer when ``f < SMALL_FRACTION`` (the error at least
doubled), naming the setting that fixes it.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch

__all__ = ["SMALL_FRACTION", "TILE_WEIGHT_RANGE", "SmallWeightRangeWarning", "weight_range_of_layer",
           "weight_range_of_weight", "small_weight_message", "is_small", "warn_small_weights"]

TILE_WEIGHT_RANGE = 1.0  # the full-scale tile weight of the normalized periphery
SMALL_FRACTION = 0.5  # below: the periphery's error is more than 2x that of a full-range mapping


class SmallWeightRangeWarning(UserWarning):
    """A layer's weights use a small fraction of its tiles' weight range."""


def _checked(rpu_config) -> bool:
    """Configs whose forward pass has a periphery (not FloatingPointRPUConfig,
    not ``forward.is_perfect``)."""
    fwd = getattr(rpu_config, "forward", None)
    return fwd is not None and not getattr(fwd, "is_perfect", True)


def _finite_amax(t: torch.Tensor) -> float:
    a = t.detach().float().abs()
    a = a[torch.isfinite(a)]
    return float(a.max()) if a.numel() else 0.0


def weight_range_of_weight(weight, rpu_config) -> Optional[float]:
    """The fraction of the tile range that the digital weight ``weight``
    will use under ``rpu_config`` (a dry run: the layer is not built):
    ``max|W|`` with ``omega = 0``, ``omega`` itself with ``omega > 0``
    (every tile, or row when columnwise, is scaled to it); None for an
    unchecked config, an unknown weight or an all-zero one."""
    if not _checked(rpu_config) or not isinstance(weight, torch.Tensor) or weight.is_meta \
            or isinstance(weight, torch.nn.parameter.UninitializedParameter):
        return None
    omega = float(rpu_config.mapping.weight_scaling_omega)
    amax = _finite_amax(weight)
    if amax == 0.0:
        return None
    return (omega if omega > 0 else amax) / TILE_WEIGHT_RANGE


def weight_range_of_layer(layer) -> Optional[float]:
    """The fraction of the tile range used by a built analog layer: the
    largest magnitude of its digital weights in tile units (the mapping
    scales applied, not the programmed state, which drift lowers)."""
    if not _checked(layer.rpu_config) or layer.weight.is_meta:
        return None
    with torch.no_grad():
        amax = _finite_amax(layer.tile.to_tile_units(layer.weight_matrix()))
    return amax / TILE_WEIGHT_RANGE if amax > 0 else None


def small_weight_message(name: str, fraction: float, rpu_config) -> str:
    """The warning for layer ``name`` using ``fraction`` of its tile range."""
    omega = float(rpu_config.mapping.weight_scaling_omega)
    fix = ("set rpu_config.mapping.weight_scaling_omega = 1.0 (the tiles then hold W / alpha, alpha = "
           "max|W_tile| / omega, and alpha is applied in digital)" if omega <= 0 else
           f"raise rpu_config.mapping.weight_scaling_omega from {omega:g} to 1.0")
    return (f"layer {name}: max|W| = {fraction * TILE_WEIGHT_RANGE:.3g} in tile units uses "
            f"{100 * fraction:.0f}% of the tile's weight range (full scale |w| = {TILE_WEIGHT_RANGE:g}, "
            f"the unit of forward.out_noise and the ADC range), so its output noise and ADC step are "
            f"{1 / fraction:.1f}x larger relative to the signal than with the full range; {fix}")


def is_small(fraction: Optional[float]) -> bool:
    """A fraction below ``SMALL_FRACTION`` (None: not checked)."""
    return fraction is not None and math.isfinite(fraction) and fraction < SMALL_FRACTION


def warn_small_weights(records, stacklevel: int = 3) -> None:
    """One ``SmallWeightRangeWarning`` per analog layer record whose
    ``weight_range`` is below ``SMALL_FRACTION``."""
    for rec in records:
        if rec.analog and is_small(rec.weight_range) and rec.rpu_config is not None:
            warnings.warn(small_weight_message(rec.name, rec.weight_range, rec.rpu_config),
                          SmallWeightRangeWarning, stacklevel=stacklevel + 1)
