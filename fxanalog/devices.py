"""Pulsed devices: what one cross-point does, as pure functions on tensors
(docs/training.md states the rules).

* ``draw_state(device, shape)``: the device-to-device parameters of every
  cross-point, drawn once when a tile is made (bounds, step sizes, slopes
  or exponents, decay, diffusion, reset bias);
* ``granularity(device)``: the weight change of one typical pulse, which
  sets the pulse trains' probabilities (update management);
* ``apply_pulses(rule, w, down, count, state)``: ``count`` pulses in one
  direction at each cross-point, each with its own cycle-to-cycle draw, the
  step at the weight the previous pulse left, then clipping to the
  cross-point's own bounds;
* ``decay_``, ``diffuse_``, ``reset_``: the steps after an update.

``AnalogTile`` keeps the state (buffers) and calls these; the update op's
torch path (``fxanalog.ops.tile_update_torch``) applies the pulses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import Tensor

from fxanalog import _rng
from fxanalog.config import (
    ConstantStepDevice,
    ExpStepDevice,
    IdealDevice,
    LinearStepDevice,
    PowStepDevice,
    PulsedDevice,
    SoftBoundsDevice,
    SoftBoundsReferenceDevice,
)

__all__ = ["DeviceRule", "rule_of", "granularity", "draw_state", "apply_pulses", "route_pulses", "decay_", "diffuse_",
           "reset_", "PULSE_NAMES", "ROUTE_BOTH", "ROUTE_UP", "ROUTE_DOWN_AS_UP"]

# Kinds of pulse response (the update op's device_kind).
IDEAL, CONSTANT_STEP, LINEAR_STEP, EXP_STEP, POW_STEP = 0, 1, 2, 3, 4
# Which pulses a device of a unit cell takes (docs/training.md, "Several devices per weight"):
# all, in their direction; only the up pulses; only the down pulses, applied as up pulses
# (the minus device of a one-sided pair, whose conductance grows when the weight goes down).
ROUTE_BOTH, ROUTE_UP, ROUTE_DOWN_AS_UP = 0, 1, 2


@dataclass(frozen=True)
class DeviceRule:
    """A device config resolved for the update: the kind of step and the
    scalar parameters the per-pulse rule needs."""

    kind: int
    dw_min_std: float = 0.0
    mult_noise: bool = True  # LINEAR_STEP: the noise multiplies the whole step (else only the constant part)
    write_noise: float = 0.0  # std of the write noise (write_noise_std * dw_min); 0: no hidden weight
    exp_a: float = 0.0
    exp_b: float = 0.0
    exp_A_up: float = 0.0
    exp_A_down: float = 0.0
    exp_gamma_up: float = 0.0
    exp_gamma_down: float = 0.0
    exp_std_add: float = 0.0
    exp_std_slope: float = 0.0
    route: int = ROUTE_BOTH  # in a stack of devices sharing the trains: which pulses this one takes
    reference: bool = False  # a pulse steps g = w + reference, clips g, and leaves w = g - reference

    @property
    def pulsed(self) -> bool:
        return self.kind != IDEAL

    @property
    def pulse_names(self) -> tuple[str, ...]:
        """The per-cross-point parameters a pulse reads, in the order the
        update op packs them (the last axis of its ``params`` tensor)."""
        return PULSE_NAMES[self.kind] + (("reference",) if self.reference else ())


_BOUNDS_STEPS = ("b_max", "b_min", "scale_up", "scale_down")
PULSE_NAMES: dict[int, tuple[str, ...]] = {
    IDEAL: (),
    CONSTANT_STEP: _BOUNDS_STEPS,
    LINEAR_STEP: _BOUNDS_STEPS + ("slope_up", "slope_down"),
    EXP_STEP: _BOUNDS_STEPS,
    POW_STEP: _BOUNDS_STEPS + ("gamma_up", "gamma_down"),
}


def rule_of(device) -> DeviceRule:
    """The ``DeviceRule`` of a device config."""
    if isinstance(device, IdealDevice):
        return DeviceRule(IDEAL)
    if not isinstance(device, PulsedDevice):
        raise TypeError(f"expected a device config (fxanalog.IdealDevice or a PulsedDevice), got "
                        f"{type(device).__name__}")
    write_noise = float(getattr(device, "write_noise_std", 0.0)) * device.dw_min
    common = dict(dw_min_std=float(device.dw_min_std), write_noise=write_noise)
    if isinstance(device, (LinearStepDevice, SoftBoundsDevice, SoftBoundsReferenceDevice)):
        return DeviceRule(LINEAR_STEP, mult_noise=bool(device.mult_noise),
                          reference=isinstance(device, SoftBoundsReferenceDevice), **common)
    if isinstance(device, ExpStepDevice):
        return DeviceRule(EXP_STEP, exp_a=device.a, exp_b=device.b, exp_A_up=device.A_up, exp_A_down=device.A_down,
                          exp_gamma_up=device.gamma_up, exp_gamma_down=device.gamma_down,
                          exp_std_add=device.dw_min_std_add, exp_std_slope=device.dw_min_std_slope, **common)
    if isinstance(device, PowStepDevice):
        return DeviceRule(POW_STEP, **common)
    if isinstance(device, ConstantStepDevice) or type(device) is PulsedDevice:
        return DeviceRule(CONSTANT_STEP, **common)
    raise TypeError(f"device {type(device).__name__}: no pulse rule for this device class")


def _biases(up_down: float) -> tuple[float, float]:
    """The systematic up and down offsets of the step sizes: a negative
    ``up_down`` weakens up steps, a positive one weakens down steps."""
    return (up_down if up_down < 0 else 0.0), (-up_down if up_down > 0 else 0.0)


def granularity(device) -> float:
    """The weight change of one typical pulse (aihwkit's weight granularity):
    ``dw_min`` (constant, linear, soft-bounds steps); ``dw_min 0.5**pow_gamma``
    (power steps); the mean down step at w = 0 for exponential steps (dw_min
    when that is not positive)."""
    if isinstance(device, IdealDevice):
        return 1.0
    if isinstance(device, PowStepDevice):
        return device.dw_min * 0.5 ** device.pow_gamma
    if isinstance(device, ExpStepDevice):
        _, down_bias = _biases(device.up_down)
        z = device.b  # w = 0
        dw = (down_bias + 1.0) * device.dw_min * max(1.0 - device.A_down * math.exp(-device.gamma_down * z), 0.0)
        return dw if dw > 0 else device.dw_min
    return device.dw_min


def _gauss(shape, generator: Optional[torch.Generator], device) -> Tensor:
    return torch.randn(shape, generator=generator, device=device)


@torch.no_grad()
def draw_state(device, shape: tuple, target_device=None) -> dict[str, Tensor]:
    """The device-to-device parameters of ``shape`` cross-points, drawn once
    (from torch's default generator, or from ``construction_seed`` when not
    0). See the device classes for the formulas. ``decay_scale``,
    ``diffusion_rate`` and ``reset_bias`` are there only when the device
    has decay (``lifetime > 0``), diffusion, or a reset bias."""
    rule = rule_of(device)
    gen = None
    if getattr(device, "construction_seed", 0):
        gen = torch.Generator().manual_seed(int(device.construction_seed))
    draw = (lambda: _gauss(shape, gen, "cpu")) if gen is not None else (lambda: torch.randn(shape))
    state: dict[str, Tensor] = {}
    if rule.kind == IDEAL:
        lifetime = float(device.lifetime)
        if lifetime > 0:
            state["decay_scale"] = torch.full(shape, 1.0 - 1.0 / lifetime if lifetime > 1 else 1.0)
        if device.diffusion > 0:
            state["diffusion_rate"] = torch.full(shape, float(device.diffusion))
        return {k: v.to(target_device) for k, v in state.items()}
    b_max = device.w_max * (1 + device.w_max_dtod * draw())
    b_min = device.w_min * (1 + device.w_min_dtod * draw())
    g = draw()
    gain = torch.exp(device.dw_min_dtod * g) if device.dw_min_dtod_log_normal else 1 + device.dw_min_dtod * g
    r = device.up_down_dtod * draw()
    up_bias, down_bias = _biases(device.up_down)
    scale_up = (up_bias + gain + r) * device.dw_min
    scale_down = (down_bias + gain - r) * device.dw_min
    if device.enforce_consistency:
        scale_up, scale_down = scale_up.abs(), scale_down.abs()
        lo, hi = torch.minimum(b_min, b_max), torch.maximum(b_min, b_max)
        b_max, b_min = hi.abs(), -lo.abs()
    else:  # a cross-point whose bounds cross is turned off at their midpoint
        mid = (b_max + b_min) / 2
        crossed = b_min > b_max
        b_max, b_min = torch.where(crossed, mid, b_max), torch.where(crossed, mid, b_min)
    if device.corrupt_devices_prob > 0:
        stuck = torch.rand(shape, generator=gen) < device.corrupt_devices_prob
        rng = abs(device.corrupt_devices_range)
        lo = torch.clamp(torch.minimum(b_max, b_min), min=-rng)
        hi = torch.clamp(torch.maximum(b_max, b_min), max=rng)
        value = lo + (hi - lo) * torch.rand(shape, generator=gen)
        b_max, b_min = torch.where(stuck, value, b_max), torch.where(stuck, value, b_min)
        scale_up, scale_down = scale_up.masked_fill(stuck, 0.0), scale_down.masked_fill(stuck, 0.0)
    state.update(b_max=b_max, b_min=b_min, scale_up=scale_up, scale_down=scale_down)
    if device.diffusion > 0:
        state["diffusion_rate"] = (device.diffusion * (1 + device.diffusion_dtod * draw())).abs()
    if device.reset != 0 or device.reset_dtod > 0:
        state["reset_bias"] = device.reset + device.reset_dtod * draw()
    if device.lifetime > 0:
        t = device.lifetime * (1 + device.lifetime_dtod * draw())
        state["decay_scale"] = torch.where(t > 1, 1 - 1 / t, torch.zeros_like(t))
    if rule.reference:  # slopes with their own spread (the bounds follow them), the reference
        b_max, b_min, reference, sp = _reference_draws(device, b_max, b_min, scale_up, scale_down, draw)
        state.update(b_max=b_max, b_min=b_min, reference=reference)
        if device.subtract_symmetry_point:
            state["reset_bias"] = state.get("reset_bias", 0.0) + sp
    if rule.kind == LINEAR_STEP:
        soft = isinstance(device, (SoftBoundsDevice, SoftBoundsReferenceDevice))
        g_up = 1.0 if soft else device.gamma_up + device.gamma_up_dtod * draw()
        g_down = 1.0 if soft else device.gamma_down + device.gamma_down_dtod * draw()
        if not soft and not device.allow_increasing:
            g_up, g_down = torch.as_tensor(g_up).abs(), torch.as_tensor(g_down).abs()
        mean_ref = (not soft) and device.mean_bound_reference
        off = getattr(device, "reverse_offset", 0.0)
        if mean_ref:
            ref_up = torch.full(shape, (device.w_min - off) if device.reverse_up else device.w_max)
            ref_down = torch.full(shape, (device.w_max + off) if device.reverse_down else device.w_min)
        else:
            ref_up = (b_min - off) if getattr(device, "reverse_up", False) else b_max
            ref_down = (b_max + off) if getattr(device, "reverse_down", False) else b_min
        state["slope_up"] = torch.where(ref_up != 0, -g_up * scale_up / ref_up, torch.zeros_like(scale_up))
        state["slope_down"] = torch.where(ref_down != 0, -g_down * scale_down / ref_down, torch.zeros_like(scale_down))
    if rule.kind == POW_STEP:
        gain = 1 + device.pow_gamma_dtod * draw()
        r = device.pow_up_down_dtod * draw()
        up_bias, down_bias = _biases(device.pow_up_down)
        g_up = (up_bias + gain + r) * device.pow_gamma
        g_down = (down_bias + gain - r) * device.pow_gamma
        if device.enforce_consistency:
            g_up, g_down = g_up.abs(), g_down.abs()
        state.update(gamma_up=g_up, gamma_down=g_down)
    return {k: torch.as_tensor(v, dtype=torch.float32).expand(shape).contiguous().to(target_device)
            for k, v in state.items()}


def _reference_draws(device, b_max: Tensor, b_min: Tensor, scale_up: Tensor, scale_down: Tensor, draw):
    """``SoftBoundsReferenceDevice``'s draws: where b_max > 0 > b_min, the
    slopes scale_up / b_max and scale_down / |b_min| each scaled by |1 +
    slope_*_dtod xi| and the bounds moved to match; the reference
    reference_mean + reference_std xi, plus the symmetry point with
    ``subtract_symmetry_point``. Returns (b_max, b_min, reference, symmetry point)."""
    both = (b_max > 0) & (b_min < 0)
    safe_max = torch.where(both, b_max, torch.ones_like(b_max))
    safe_min = torch.where(both, b_min, -torch.ones_like(b_min))
    slope_down = -scale_down / safe_min * (1 + device.slope_down_dtod * draw()).abs()
    slope_up = scale_up / safe_max * (1 + device.slope_up_dtod * draw()).abs()
    b_max = torch.where(both, scale_up / slope_up, b_max)
    b_min = torch.where(both, -scale_down / slope_down, b_min)
    reference = device.reference_mean + device.reference_std * draw()
    sp = torch.zeros_like(reference)
    if device.subtract_symmetry_point:
        sp = torch.where(both, (scale_up - scale_down) / (scale_up / safe_max - scale_down / safe_min), sp)
        reference = reference + sp
    return b_max, b_min, reference, sp


def apply_pulses(rule: DeviceRule, w: Tensor, down: Tensor, count: Tensor, state: dict[str, Tensor]) -> Tensor:
    """``count`` pulses (a whole-number tensor) at each of the cross-points
    ``w`` (any shape, tile units), down where ``down`` is True, up else.
    ``state`` holds each cross-point's parameters (same shape). Pulse by
    pulse: a fresh standard normal per pulse, the step at the current
    weight, then the clip to [b_min, b_max]. Returns the new weights."""
    w = w.clone()
    n = int(count.max()) if count.numel() else 0
    for p in range(n):
        m = count > p
        if not bool(m.any()):
            break
        idx = m.nonzero(as_tuple=True)
        sub = {k: v[idx] for k, v in state.items()}
        w[idx] = one_pulse(rule, w[idx], down[idx], sub, _rng.randn(w[idx].shape, dtype=w.dtype, device=w.device))
    return w


def route_pulses(rule: DeviceRule, down: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """The (direction, count) of the pulses a device takes, by its ``route``,
    from the coincidences ``down``/``count`` of its cell."""
    if rule.route == ROUTE_BOTH:
        return down, count
    if rule.route == ROUTE_UP:
        return down, torch.where(down, torch.zeros_like(count), count)
    return torch.zeros_like(down), torch.where(down, count, torch.zeros_like(count))


def one_pulse(rule: DeviceRule, w: Tensor, down: Tensor, st: dict[str, Tensor], xi: Tensor) -> Tensor:
    """One pulse at each cross-point (1-D tensors): the device's step with
    the cycle-to-cycle noise ``xi`` (standard normals), then the clip."""
    sd = rule.dw_min_std
    sign = torch.where(down, -1.0, 1.0).to(w.dtype)
    scale = torch.where(down, st["scale_down"], st["scale_up"])
    b_max, b_min = st["b_max"], st["b_min"]
    if rule.reference:  # the step and the clip act on g = w + reference
        return one_pulse(replace(rule, reference=False), w + st["reference"], down, st, xi) - st["reference"]
    if rule.kind == CONSTANT_STEP:
        w = w + sign * scale * (1 + sd * xi)
    elif rule.kind == LINEAR_STEP:
        slope = torch.where(down, st["slope_down"], st["slope_up"])
        if rule.mult_noise:
            w = w + sign * (slope * w + scale) * (1 + sd * xi)
        else:
            w = w + sign * (slope * w + scale * (1 + sd * xi))
    elif rule.kind == EXP_STEP:
        span = b_max - b_min
        z = 2 * w / torch.where(span > 0, span, torch.ones_like(span)) * rule.exp_a + rule.exp_b
        y_up = torch.clamp(1 - rule.exp_A_up * torch.exp(rule.exp_gamma_up * z), min=0)
        y_down = torch.clamp(1 - rule.exp_A_down * torch.exp(-rule.exp_gamma_down * z), min=0)
        dw = sign * torch.where(down, y_down, y_up) * scale
        if rule.exp_std_add != 0 or rule.exp_std_slope != 0:
            new = w + dw + sd * (dw.abs() + rule.exp_std_add + rule.exp_std_slope * w.abs()) * xi
        else:
            new = w + dw * (1 + sd * xi)
        w = torch.where(span > 0, new, w)  # a cross-point without range is never updated
    elif rule.kind == POW_STEP:
        span = b_max - b_min
        safe = torch.where(span != 0, span, torch.ones_like(span))
        gamma = torch.where(down, st["gamma_down"], st["gamma_up"])
        frac = torch.where(down, (w - b_min) / safe, (b_max - w) / safe)
        new = w + sign * scale * frac.clamp(min=0).pow(gamma) * (1 + sd * xi)
        w = torch.where(span != 0, new, w)
    else:
        raise ValueError(f"apply_pulses: device kind {rule.kind} has no pulses")
    return torch.minimum(torch.maximum(w, b_min), b_max)


# --------------------------------------------------------------------------
# After an update


@torch.no_grad()
def decay_(w: Tensor, state: dict[str, Tensor], alpha: float = 1.0) -> None:
    """``w <- (w - reset_bias) (1 + alpha (decay_scale - 1)) + reset_bias``,
    clipped to the bounds (aihwkit's lifetime decay, once per update)."""
    s = 1 + alpha * (state["decay_scale"] - 1)
    bias = state.get("reset_bias")
    if bias is None:
        w.mul_(s)
        return
    w.sub_(bias).mul_(s).add_(bias)
    w.copy_(torch.minimum(torch.maximum(w, state["b_min"]), state["b_max"]))


@torch.no_grad()
def diffuse_(w: Tensor, state: dict[str, Tensor]) -> None:
    """``w <- w + diffusion_rate xi``, clipped to the bounds."""
    w.add_(state["diffusion_rate"] * _rng.randn(w.shape, dtype=w.dtype, device=w.device))
    if "b_max" in state:
        w.copy_(torch.minimum(torch.maximum(w, state["b_min"]), state["b_max"]))


@torch.no_grad()
def reset_(w: Tensor, state: dict[str, Tensor], reset_std: float, mask: Optional[Tensor] = None) -> None:
    """Reset (where ``mask``, else everywhere): ``w <- reset_bias +
    reset_std xi``, clipped to the bounds."""
    bias = state.get("reset_bias", torch.zeros_like(w))
    new = bias + reset_std * _rng.randn(w.shape, dtype=w.dtype, device=w.device) if reset_std > 0 else bias.clone()
    if "b_max" in state:
        new = torch.minimum(torch.maximum(new, state["b_min"]), state["b_max"])
    w.copy_(new if mask is None else torch.where(mask, new, w))
