"""``TileIO``: the periphery settings of one tile MVM, resolved for computation.

``IOParameters`` (a config, aihwkit's fields) becomes a ``TileIO`` once, in
one place: step sizes, bounds in steps, the clip rule, the bound-management
rounds, what is random. The torch path of ``fxanalog::tile_mvm`` and the
Triton launcher both read these quantities from here and derive nothing of
their own, so the two paths cannot drift apart. The semantics are those of
docs/tile.md ("One tile, one input vector").

The op's schema carries IO settings as a flat list of floats (custom ops
take no dataclasses): ``TileIO.pack(params)`` makes that list from an
``IOParameters`` and ``TileIO.unpack(packed)`` reads it back (cached).
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass
from typing import Sequence

from fxanalog.config import (
    BoundManagementType,
    IOParameters,
    NoiseManagementType,
    WeightNoiseType,
    resolution_step,
)

__all__ = ["TileIO"]

# The packed layout: these IOParameters fields, in this order, as floats
# (enums by their position in the enum).
_FIELDS = (
    "is_perfect",
    "inp_bound",
    "inp_res",
    "inp_sto_round",
    "inp_noise",
    "out_bound",
    "out_res",
    "out_sto_round",
    "out_noise",
    "out_scale",
    "w_noise",
    "w_noise_type",
    "noise_management",
    "nm_thres",
    "bound_management",
    "max_bm_factor",
    "max_bm_res",
    "ir_drop",
    "ir_drop_g_ratio",
    "out_nonlinearity",
)
_ENUMS = {
    "w_noise_type": list(WeightNoiseType),
    "noise_management": list(NoiseManagementType),
    "bound_management": list(BoundManagementType),
}
_BOOLS = ("is_perfect", "inp_sto_round", "out_sto_round")


@dataclass(frozen=True)
class TileIO:
    """The periphery of one tile MVM, in the units the computation uses.

    A perfect tile (``is_perfect``) is unpacked with every periphery field
    off (no steps, no noise, no management, unbounded); only ``out_scale``
    stays. Inputs are handled in DAC steps and outputs in ADC steps: ``dx`` and
    ``dy`` are the step sizes (0: that side is not quantized), ``ux`` and
    ``uy`` the normalized value of one unit of computation (the step, or 1
    when not quantized).

    ``out_sat`` is the saturation test of bound management, as aihwkit's
    tiles compute it in float32: an output of ``y`` units of ``uy`` is
    saturated when ``|y| > out_sat`` (docs/tile.md, step 7).
    """

    is_perfect: bool
    inp_bound: float
    dx: float  # DAC step; 0: no input quantization
    inp_sto_round: bool
    inp_noise: float
    out_bound: float  # <= 0: unbounded
    dy: float  # ADC step; 0: no output quantization
    out_sto_round: bool
    out_noise: float
    out_scale: float
    w_noise: float
    w_noise_type: WeightNoiseType
    noise_management: NoiseManagementType
    nm_thres: float
    bound_management: BoundManagementType
    max_bm_factor: float
    max_bm_res: float
    ir_drop: float
    ir_drop_g_ratio: float
    out_nonlinearity: float
    out_sat: float  # saturated when |y| > out_sat (y in units of uy); inf when unbounded

    # -- conversion ------------------------------------------------------------

    @staticmethod
    def pack(params: IOParameters, validate: bool = True) -> list[float]:
        """``IOParameters`` (validated here unless ``validate=False``) to the
        op's flat float list."""
        if validate:
            params.validate("IOParameters")
        out = []
        for name in _FIELDS:
            value = getattr(params, name)
            out.append(float(_ENUMS[name].index(value) if name in _ENUMS else value))
        return out

    @staticmethod
    def unpack(packed: Sequence[float]) -> "TileIO":
        """The op's flat float list back to a ``TileIO`` (cached per list)."""
        return _unpack(tuple(packed))

    # -- derived quantities -------------------------------------------------------

    @property
    def ux(self) -> float:
        """Normalized input per unit of the DAC output (the step, or 1)."""
        return self.dx if self.dx > 0 else 1.0

    @property
    def uy(self) -> float:
        """Normalized output per unit of the ADC output (the step, or 1)."""
        return self.dy if self.dy > 0 else 1.0

    @property
    def inp_bound_steps(self) -> float:
        """The DAC clip in units of ``ux``."""
        return self.inp_bound / self.ux

    @property
    def bounded(self) -> bool:
        """The ADC clips its output (``out_bound > 0``)."""
        return self.out_bound > 0

    @property
    def out_bound_steps(self) -> float:
        """The ADC clip in units of ``uy`` (infinite when unbounded)."""
        return self.out_bound / self.uy if self.bounded else math.inf

    @property
    def per_row_scale(self) -> bool:
        """Noise management computes a scale alpha per input vector (and
        input piece) from the data: ``ABS_MAX`` or ``MAX``."""
        return self.noise_management in (NoiseManagementType.ABS_MAX, NoiseManagementType.MAX)

    @property
    def constant_scale(self) -> float:
        """alpha when it does not depend on the data: ``nm_thres`` for
        ``CONSTANT`` (1 when not > 0, as aihwkit), 1 for ``NONE``."""
        if self.noise_management == NoiseManagementType.CONSTANT and self.nm_thres > 0:
            return float(self.nm_thres)
        return 1.0

    @property
    def clip_input(self) -> bool:
        """The DAC clips its (quantized) output to ``inp_bound``: always but
        for a perfect tile. Even with ``ABS_MAX`` scaling the clip is needed:
        with an odd number of levels (``inp_res = 127``: 63.5 steps to the
        bound) the largest input rounds to 64 steps, beyond the bound."""
        return not self.is_perfect

    @property
    def gate_zero_pieces(self) -> bool:
        """An input piece that is zero for the whole batch gives zero output
        (aihwkit skips such a tile): with a per-row scale and no input noise."""
        return self.per_row_scale and self.inp_noise == 0

    @property
    def iterative_bound_management(self) -> bool:
        """Saturated outputs are redone with smaller inputs (at least one more round)."""
        return (self.bounded and self.bound_management == BoundManagementType.ITERATIVE
                and self.last_round_factor >= 1)

    @property
    def last_round_factor(self) -> float:
        """Bound management stops after the round whose factor exceeds this:
        ``max_bm_factor``, or ``max_bm_res / dx`` when smaller."""
        limit = float(self.max_bm_factor)
        if self.dx > 0:
            limit = min(limit, self.max_bm_res / self.dx)
        return limit

    @property
    def bound_management_rounds(self) -> int:
        """Rounds after the first: r = 2, 4, ..., the first r > last_round_factor included."""
        if not self.iterative_bound_management:
            return 0
        k = 1
        while 2.0**k <= self.last_round_factor:
            k += 1
        return k

    @property
    def weight_noise_kind(self) -> int:
        """0: none, 1: ``ADDITIVE_CONSTANT``, 2: ``PCM_READ``."""
        if self.w_noise <= 0:
            return 0
        return {WeightNoiseType.ADDITIVE_CONSTANT: 1, WeightNoiseType.PCM_READ: 2}.get(self.w_noise_type, 0)

    @property
    def random(self) -> bool:
        """Some part of the MVM draws random numbers."""
        return (self.inp_noise > 0 or self.out_noise > 0 or self.weight_noise_kind != 0
                or (self.dx > 0 and self.inp_sto_round) or (self.dy > 0 and self.out_sto_round))

    @property
    def linear_adc(self) -> bool:
        """No weight noise, IR drop or ADC nonlinearity: the output is the
        scaled product plus independent output noise."""
        return self.weight_noise_kind == 0 and self.ir_drop == 0 and self.out_nonlinearity == 0


def _f32(v: float) -> float:
    """``v`` rounded to float32 (round to nearest even), as a Python float."""
    return struct.unpack("f", struct.pack("f", v))[0]


def _step_f32(res: float, bound: float) -> float:
    """The quantization step as aihwkit's tile computes it, in float32: the
    resolution read as float32 (``> 1``: a number of steps, inverted in
    float32), times the full range ``2 * bound``. 0: not quantized."""
    r = _f32(res)
    if r <= 0:
        return 0.0
    if r > 1:
        r = _f32(1.0 / r)
    return _f32(r * _f32(2.0 * _f32(bound)))


def _saturation_level(out_res: float, out_bound: float) -> float:
    """The strict saturation test of bound management in the units of ``uy``.

    aihwkit's tiles compute an output level ``k`` as the float32 value
    ``k * dy`` and call it saturated when it is greater than ``out_bound``
    (strictly). With the ADC quantized, the outputs are whole numbers of
    steps: the first saturated level is the smallest ``k`` whose float32
    value exceeds the bound (at the defaults 255, whose value 255 * 24/510 is
    12.000001 in float32), and the threshold returned is ``k - 1/2``. Without
    quantization the threshold is ``out_bound`` itself (no float32 level
    arithmetic is involved)."""
    if out_bound <= 0 or not math.isfinite(out_bound):
        return math.inf
    dy = _step_f32(out_res, out_bound)
    if dy <= 0 or not math.isfinite(dy):
        return float(out_bound)
    bound = _f32(out_bound)
    k = max(math.floor(bound / dy) - 2, 0)
    while _f32(k * dy) <= bound:
        k += 1
    return k - 0.5


@functools.lru_cache(maxsize=256)
def _unpack(packed: tuple) -> TileIO:
    if len(packed) != len(_FIELDS):
        raise ValueError(f"TileIO.unpack: {len(packed)} values: expected {len(_FIELDS)} (the fields {_FIELDS})")
    v = dict(zip(_FIELDS, packed))
    for name, members in _ENUMS.items():
        v[name] = members[int(v[name])]
    for name in _BOOLS:
        v[name] = bool(v[name])
    inp_bound, out_bound = v["inp_bound"], v["out_bound"]
    inp_res, out_res = v.pop("inp_res"), v.pop("out_res")
    dx = resolution_step(inp_res) * 2 * inp_bound
    dy = resolution_step(out_res) * 2 * out_bound if out_bound > 0 else 0.0
    out_sat = _saturation_level(out_res, out_bound)
    if v["is_perfect"]:  # an exact MVM: no periphery at all (only out_scale stays)
        dx = dy = 0.0
        out_sat = math.inf
        v.update(inp_sto_round=False, inp_noise=0.0, out_bound=0.0, out_sto_round=False, out_noise=0.0,
                 w_noise=0.0, w_noise_type=WeightNoiseType.NONE, noise_management=NoiseManagementType.NONE,
                 nm_thres=0.0, bound_management=BoundManagementType.NONE, ir_drop=0.0, out_nonlinearity=0.0)
    return TileIO(dx=dx, dy=dy, out_sat=out_sat, **v)
