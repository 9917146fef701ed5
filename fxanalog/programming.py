"""Programming, drift, and reading and writing tiles as a chip would: the
algorithms behind ``AnalogTile.program``, ``drift``, ``read_weights`` and
``realistic_write`` (docs/physics.md says what they model).

Every function here is pure: it takes tensors, the tile geometry and a
``Reader`` (how to run the tile's own noisy forward on probe inputs) and
returns tensors. Only ``AnalogTile`` stores the results, so the tile stays
the one owner of its state. All tiles of a layer are processed at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from fxanalog import _rng
from fxanalog.config import BaseDriftCompensation, BaseNoiseModel, IOParameters, NoiseManagementType
from fxanalog.geometry import TileGeometry, layout_tiles, per_output, unlayout_tiles
from fxanalog.ops.io import TileIO
from fxanalog.ops import tile_mvm as tile_mvm_op
from fxanalog.ops.tile_mvm import NO_UPDATE

__all__ = ["Reader", "ProgrammedState", "program", "drift", "compensation", "identity_read", "probe_plan",
           "probe_read", "closed_form_read", "closed_loop_write", "least_squares_read", "register_write_step", "write_step"]


@dataclass(frozen=True)
class Reader:
    """The tile's own forward, for probe inputs: ``mvm(x, tiles)`` runs
    ``fxanalog::tile_mvm`` with the tile's output pieces and periphery on a
    (B', 1, p, N) stack of one-piece tile arrays."""

    geometry: TileGeometry
    forward: IOParameters
    packed_io: tuple  # (forward, backward) packed by TileIO.pack

    def mvm(self, x: Tensor, tiles: Tensor, col_scale: Optional[Tensor] = None) -> Tensor:
        p = tiles.shape[2]
        fwd, bwd = self.packed_io
        return tile_mvm_op.mvm(x, tiles, [p], list(self.geometry.out_sizes), col_scale, None, fwd, bwd,
                                           NO_UPDATE)

    @property
    def amplitude(self) -> float:
        """The largest probe input: 1 with noise management, ``inp_bound`` without."""
        fwd = self.forward
        return fwd.inp_bound if fwd.noise_management == NoiseManagementType.NONE else 1.0


# --------------------------------------------------------------------------
# Programming and drift


@dataclass
class ProgrammedState:
    """What programming draws, per device: the conductance pairs as
    programmed and their drift exponents ``(2, G, N, K)``, the conductance
    per unit weight of each tile ``(G, n_out, n_in)``, the tile weights they
    make ``(G, N, K)`` and the drift-compensation reference ``(G, N)``."""

    conductances: Tensor
    drift_exponents: Tensor
    conductance_scales: Tensor
    weight: Tensor
    drift_reference: Optional[Tensor]


@torch.no_grad()
def program(reader: Reader, noise_model: BaseNoiseModel, comp: Optional[BaseDriftCompensation],
            target: Tensor) -> ProgrammedState:
    """Program (G, N, K) tile weights: each tile maps its own max|W| to the
    converter's range, the noise model draws the programming noise and the
    drift exponent of every device once; the compensation's reference is
    read from the programmed tiles."""
    geo = reader.geometry
    conv = noise_model.converter
    w_max = geo.tile_amax(target.abs())
    scale = conv.scale_ratio(w_max)
    g, _ = conv.convert_to_conductances(target, geo.expand(w_max))
    nu = noise_model.generate_drift_coefficients(g)
    g_prog = noise_model.apply_programming_noise_to_conductance(g)
    weight = conv.convert_back_to_weights(g_prog, {"scale_ratio": geo.expand(scale)})
    reference = None if comp is None else compensation(reader, comp, weight, None)
    return ProgrammedState(g_prog, nu, scale, weight, reference)


@torch.no_grad()
def drift(noise_model: BaseNoiseModel, geometry: TileGeometry, state: ProgrammedState, t_inference: float) -> Tensor:
    """The tile weights ``t_inference`` seconds after programming: drift and
    read noise of the noise model, always from the programmed state."""
    g = noise_model.apply_drift_noise_to_conductance(state.conductances, state.drift_exponents, t_inference)
    return noise_model.converter.convert_back_to_weights(g, {"scale_ratio": geometry.expand(state.conductance_scales)})


def compensation(reader: Reader, comp: BaseDriftCompensation, w: Tensor, reference: Optional[Tensor]) -> Tensor:
    """With ``reference=None``: the readout of each output piece of every
    tile column, (G, N). Else the compensation factor ``reference /
    readout`` now, (G, N).

    The readout (a mean over the tile) is computed in float64 and the result
    rounded to float32: torch splits a float32 sum among threads, so its
    last bits depended on ``torch.get_num_threads()``; in float64 the thread
    count moves only bits far below float32's (docs/tile.md, random numbers)."""
    y = identity_read(reader, w)
    G = y.shape[0]
    parts, start = [], 0
    for size in reader.geometry.out_sizes:
        yb = y[:, :, start : start + size].double()
        r = comp.readout(yb) if reference is None else comp.apply(yb, reference[:, None, start : start + size].double())
        parts.append(torch.broadcast_to(r, (G, 1, size)).reshape(G, size))
        start += size
    return torch.cat(parts, dim=1).float()


def identity_read(reader: Reader, w: Tensor) -> Tensor:
    """Each tile read with the full noisy forward on the identity input.
    Returns (G, K, N): row k is the read of input k (through its own tile)."""
    G, N, K = w.shape
    geo, io = reader.geometry, reader.forward
    if io.inp_noise == 0 and io.ir_drop == 0:
        # A one-hot input meets one row of its tile only (no input noise on
        # the zeros, no IR drop along the row): read every row as a tile of
        # one input, the same draws as the identity at a fraction of the cost.
        rows = w.float().transpose(1, 2).reshape(G * K, 1, 1, N)
        ones = torch.ones(G * K, 1, 1, device=w.device)
        return reader.mvm(ones, rows).reshape(G, K, N)
    n, p = geo.n_in, geo.p_in
    eye = torch.eye(p, device=w.device).expand(G * n, p, p).contiguous()
    y = reader.mvm(eye, geo.stack_pieces(w.float())).reshape(G, n * p, N)
    if n * p != K:
        y = y[:, geo.pad_mask(w.device).reshape(-1)]
    return y


# --------------------------------------------------------------------------
# Realistic write and read


_HADAMARD: dict[tuple, Tensor] = {}


def _hadamard(size: int, device) -> Tensor:
    """Sylvester's Hadamard matrix of a power-of-two size (entries +-1)."""
    key = (size, str(device))
    if key not in _HADAMARD:
        h = torch.ones(1, 1)
        while h.shape[0] < size:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        _HADAMARD[key] = h.to(device)
    return _HADAMARD[key]


def probe_plan(reader: Reader, target: Tensor, tolerance: float) -> tuple[int, int]:
    """Block size k and rounds R of the verify probe of a layer.

    Each probe row drives k inputs of a tile with +-1 (a Hadamard block),
    with k the largest power of two whose output stays in the ADC range
    (4.5 sigma of the target's largest row, so bound management, which would
    add noise, is rarely needed); R rounds of P rows average the read noise
    down to half the tolerance of the smallest tile."""
    geo, fwd = reader.geometry, reader.forward
    P = 1 << (geo.p_in - 1).bit_length()
    if fwd.is_perfect:
        return P, 1
    amp = reader.amplitude
    rms = max(float(t.square().mean(dim=2).max().sqrt()) for t in target.split(list(geo.in_sizes), dim=2))
    k = P
    if fwd.out_bound > 0:
        while k > 1 and 4.5 * math.sqrt(k) * rms * amp > fwd.out_bound:
            k //= 2
    dy = TileIO.unpack(reader.packed_io[0]).dy
    noise = math.sqrt(fwd.out_noise**2 + dy**2 / 12 + fwd.inp_noise**2 * rms**2 * k) / amp
    if geo.single:  # one tile per group: the layer's range
        t_max = max(float(target.abs().amax()), 1e-12)
    else:  # the smallest tile's range
        t_max = max(float(geo.tile_amax(target.abs()).clamp(min=1e-12).min()), 1e-12)
    goal = tolerance * t_max / 2
    R = max(1, min(64, math.ceil((noise / goal) ** 2 / k)))
    return k, R


PROBES = ("auto", "forward")

# The closed-form read is used only while the expected number of saturated
# outputs of one probe read stays below this (docs/physics.md, "The verify
# read in closed form").
_SATURATION_BUDGET = 1e-9


def probe_read(reader: Reader, w: Tensor, k: int, R: int, probe: str = "auto") -> Tensor:
    """Estimate of every tile's (G, N, K) weights ``w`` from one noisy forward
    of each tile on a randomized block-Hadamard probe: R rounds of P =
    2^ceil(log2 p_in) rows, ``X_r = (I (x) H_k) D_r`` (Hadamard blocks of size
    k, random column signs D_r, entries +-a: a = 1, or inp_bound without noise
    management). ``X^T X = R k a^2 I``, so ``W^T = X^T Y / (R k a^2)`` is the
    least-squares estimate, exact for a noise-free tile.

    ``probe="auto"``: where the estimate has a closed form in distribution
    (``closed_form_read``), it is drawn from it; ``"forward"``: always the
    forward of the probe rows.

    A probe row drives only the k inputs of its block; without input noise
    and IR drop (which involve the idle inputs) the tile's forward on it is
    the forward of the k-input sub-tile, which is what is computed then."""
    if probe not in PROBES:
        raise ValueError(f"probe_read: probe = {probe!r}: expected one of {PROBES}")
    if probe == "auto":
        form = closed_form_read(reader, w, k, R)
        if form is not None:
            gain, std = form
            return _rng.randn(w.shape, device=w.device).mul_(std).add_(w.float(), alpha=gain)
    G, N, K = w.shape
    geo, fwd = reader.geometry, reader.forward
    n, p = geo.n_in, geo.p_in
    P = 1 << (p - 1).bit_length()
    amp = reader.amplitude
    h = _hadamard(k, w.device)
    real = torch.zeros(n, P, dtype=torch.bool, device=w.device)
    real[:, :p] = geo.pad_mask(w.device)
    signs = torch.randint(0, 2, (G * n, R, P), device=w.device).mul_(2).sub_(1).float()
    signs.mul_(real.repeat(G, 1).unsqueeze(1) * amp)
    if fwd.inp_noise == 0 and fwd.ir_drop == 0:
        B = G * n * (P // k)  # sub-tiles of k inputs
        tiles = torch.zeros(G * n, P, N, device=w.device)
        tiles[:, :p] = layout_tiles(w.float(), geo.in_sizes).reshape(G * n, p, N)
        tiles = tiles.reshape(B, 1, k, N)
        d = signs.reshape(G * n, R, P // k, k).transpose(1, 2).reshape(B, R, 1, k)
        x = (h * d).reshape(B, R * k, k)
        y = reader.mvm(x, tiles).reshape(B, R, k, N)
        est = (torch.matmul(h, y) * d.transpose(2, 3)).sum(dim=1)  # (B, k, N)
        est = est.reshape(G * n, P, N)[:, :p]
    else:
        x = (torch.block_diag(*([h] * (P // k))) * signs.unsqueeze(2))[..., :p].reshape(G * n, R * P, p)
        y = reader.mvm(x, geo.stack_pieces(w.float())).reshape(G * n, R, P // k, k, N)
        z = torch.matmul(h, y).reshape(G * n, R, P, N)[:, :, :p]  # H_k symmetric: X^T Y by blocks
        est = (z * signs[..., :p].unsqueeze(-1)).sum(dim=1)
    est = est.div_(R * k * amp * amp * fwd.out_scale)  # (G*n, p, N)
    return unlayout_tiles(est.reshape(G, n, p, N), geo.in_sizes)


def closed_form_read(reader: Reader, w: Tensor, k: int, R: int) -> Optional[tuple[float, float]]:
    """``(gain, std)`` such that the probe read of tiles holding ``w``
    (``probe_read`` with the forward) is, in distribution, ``gain * w + std *
    xi`` with ``xi`` N(0, 1) independent per device; None where the tile's
    forward is outside the class where that holds (docs/physics.md, "The
    verify read in closed form").

    The class: a linear forward (no input noise, weight noise, IR drop or
    ADC nonlinearity), deterministic rounding, noise management ``ABS_MAX``,
    ``NONE`` or ``CONSTANT`` (the scale of every probe row is then known),
    output noise at least one ADC step (so the ADC's rounding error has mean
    0 and variance ``dy^2 / 12`` whatever the signal, up to a factor
    ``exp(-2 pi^2) < 3e-9``), and no output that could reach the ADC bound:
    Hoeffding's bound on the Rademacher sums of the probe rows, plus ten
    sigma of output noise, keeps the expected number of saturated outputs of
    the read under ``_SATURATION_BUDGET``. Then every probe output is its
    signal plus independent noise of variance ``out_noise^2 + dy^2 / 12``,
    and ``X^T`` of that noise is, by ``X^T X = R k a^2 I``, uncorrelated
    across devices with the variance returned."""
    io = TileIO.unpack(reader.packed_io[0])
    if io.is_perfect or not io.linear_adc or io.inp_noise > 0 or io.out_noise <= 0:
        return None
    if (io.dx > 0 and io.inp_sto_round) or (io.dy > 0 and io.out_sto_round) or io.out_noise < io.dy:
        return None
    amp = reader.amplitude
    if io.noise_management == NoiseManagementType.ABS_MAX:
        alpha = min(amp, io.nm_thres) if io.nm_thres > 0 else amp
    elif io.noise_management in (NoiseManagementType.NONE, NoiseManagementType.CONSTANT):
        alpha = io.constant_scale
    else:  # MAX: a row whose driven inputs are all -a has a negative scale
        return None
    # The DAC output of a driven input, normalized, as tile_forward computes it in float32.
    u = torch.tensor(amp, dtype=torch.float32) * (1.0 / torch.tensor(alpha, dtype=torch.float32))
    if io.dx > 0:
        u = (u / io.dx).round_()
    c = float(u.clamp_(max=io.inp_bound_steps)) * io.ux
    if io.bounded:
        margin = min(io.out_bound_steps, io.out_sat) * io.uy - 10.0 * io.out_noise
        if margin <= 0:
            return None
        # The largest sum of squares of one output's weights over one block of k inputs.
        geo = reader.geometry
        G, N, K = w.shape
        n, p = geo.n_in, geo.p_in
        P = 1 << (p - 1).bit_length()
        sq = torch.zeros(G * n, P, N, device=w.device)
        sq[:, :p] = layout_tiles(w.float().square(), geo.in_sizes).reshape(G * n, p, N)
        s2 = float(sq.reshape(G * n, P // k, k, N).sum(dim=2).amax()) * c * c
        outputs = G * n * R * P * N
        log_hits = math.log(outputs) + (math.log(2.0) - margin * margin / (2.0 * s2) if s2 > 0 else -math.inf)
        if math.exp(min(log_hits, 0.0)) + outputs * math.erfc(10.0 / math.sqrt(2.0)) > _SATURATION_BUDGET:
            return None
    noise = math.sqrt(io.out_noise**2 + io.dy**2 / 12.0)
    return alpha * c / amp, alpha * noise / (amp * math.sqrt(R * k))


# A write step: (rpu_config, w_new, w_max) -> the weights the devices hold
# after an attempt to write w_new, all (G, N, K) tile units; w_max is each
# device's tile range.
WriteStep = Callable[[object, Tensor, Tensor], Tensor]
_WRITE_STEPS: dict[str, WriteStep] = {}


def register_write_step(tile_kind: str, step: WriteStep) -> None:
    """Register how tiles of a config's ``tile_kind`` are written in the
    closed loop: ``step(rpu_config, w_new, w_max) -> w_written``, all
    (G, N, K) tile units; ``w_max`` is each tile's target range."""
    _WRITE_STEPS[tile_kind] = step


def write_step(rpu_config, where: str) -> WriteStep:
    kind = type(rpu_config).tile_kind
    if kind not in _WRITE_STEPS:
        raise ValueError(
            f"realistic_write: {where} has a {type(rpu_config).__name__} (tile kind {kind!r}); "
            f"closed-loop writing knows the tile kinds {sorted(_WRITE_STEPS)}"
        )
    return _WRITE_STEPS[kind]


def _write_exact(rpu_config, w_new: Tensor, w_max: Tensor) -> Tensor:
    return w_new


def _write_programmed(rpu_config, w_new: Tensor, w_max: Tensor) -> Tensor:
    """Program the corrected targets with the noise model's programming noise."""
    nm = rpu_config.noise_model
    conv = nm.converter
    g, params = conv.convert_to_conductances(w_new, w_max)
    return conv.convert_back_to_weights(nm.apply_programming_noise_to_conductance(g), params)


register_write_step("floating_point", _write_exact)
register_write_step("inference", _write_programmed)


@torch.no_grad()
def closed_loop_write(reader: Reader, step: Callable[[Tensor, Tensor, Tensor], Tensor], target: Tensor,
                      tolerance: float, max_iterations: int, bounds: Optional[tuple[Tensor, Tensor]] = None,
                      probe: str = "auto") -> tuple[Tensor, dict]:
    """Program and verify (G, N, K) ``target`` tile weights, all tiles at once.

    From a random state U(-0.01, 0.01): read the tiles (``probe_read``),
    ``e = read - target``; a tile is done once ``mean|e| / max|target| <
    tolerance``; in the others every device with ``|e| > tolerance *
    max|target|`` is rewritten by ``step(w, w_new, w_max)``: from the
    current ``w`` towards ``w_new = w - e`` there (``w`` elsewhere).
    ``bounds``: each device's (low, high) range, which the random start
    respects; ``probe``: how the verify reads are computed (``probe_read``). Returns the written
    weights and ``{"iterations": writes, "error": max over tiles of the
    relative error measured when the tile was found done (or the last one)}``."""
    geo = reader.geometry
    t_max = geo.tile_amax(target.abs())
    t_max = torch.where(t_max > 0, t_max, torch.ones_like(t_max))
    t_max_e = geo.expand(t_max)
    band = tolerance * t_max_e
    w = torch.empty_like(target).uniform_(-0.01, 0.01)
    if bounds is not None:
        w = torch.minimum(torch.maximum(w, bounds[0]), bounds[1])
    done = torch.zeros_like(t_max, dtype=torch.bool)
    final = torch.zeros_like(t_max)  # each tile's error when it was found done (or the last one)
    verified = torch.zeros_like(target, dtype=torch.bool)
    k, R = probe_plan(reader, target, tolerance)
    iterations = 0
    while True:
        e = probe_read(reader, w, k, R, probe) - target
        err = geo.tile_mean(e.abs()) / t_max
        final = torch.where(done, final, err)
        done |= err < tolerance
        if bool(done.all()) or iterations >= max_iterations:
            break
        # A device read within the band is verified and left alone; the
        # others of the tiles not yet within tolerance are rewritten, aiming
        # at the corrected target.
        verified |= e.abs() <= band
        redo = ~verified & ~geo.expand(done)
        w = torch.where(redo, step(w, torch.where(redo, w - e, w), t_max_e), w)
        iterations += 1
    return w, {"iterations": iterations, "error": float(final.max())}


@torch.no_grad()
def least_squares_read(reader: Reader, w: Tensor, col_scale: Optional[Tensor], chunk_rows: int = 4096) -> Tensor:
    """Estimate the effective (G, N, K) weights of tiles holding ``w`` from
    noisy forward passes: each tile gets X ~ N(0, 1) of shape (10 n_in, n_in)
    through its full forward with the digital column scales ``col_scale``
    (no bias); ``W_hat = lstsq(X, Y)^T``, solved per tile by the normal
    equations in float64."""
    geo = reader.geometry
    G, N, K = w.shape
    n, p = geo.n_in, geo.p_in
    tiles = geo.stack_pieces(w.float())
    if col_scale is not None:  # per output, or (G, n_in, N): per tile
        c = col_scale.float() if col_scale.dim() == 3 else per_output(col_scale.float(), N, "result")
        col_scale = torch.broadcast_to(c, (G, n, N)).reshape(G * n * N)
    mask = geo.pad_mask(w.device).repeat(G, 1).unsqueeze(1).float()  # (G*n, 1, p)
    xtx = torch.zeros(G * n, p, p, dtype=torch.float64, device=w.device)
    xty = torch.zeros(G * n, p, N, dtype=torch.float64, device=w.device)
    rows = 10 * p
    for start in range(0, rows, chunk_rows):
        m = min(chunk_rows, rows - start)
        x = torch.randn(G * n, m, p, device=w.device) * mask
        y = reader.mvm(x, tiles, col_scale)
        xd = x.double()
        xtx.baddbmm_(xd.transpose(1, 2), xd)
        xty.baddbmm_(xd.transpose(1, 2), y.double())
    # Pads carry no input: a unit diagonal there gives them weight 0.
    xtx.diagonal(dim1=1, dim2=2).add_(1.0 - mask[:, 0].double())
    est = torch.linalg.solve(xtx, xty).float()  # (G*n, p, N)
    return unlayout_tiles(est.reshape(G, n, p, N), geo.in_sizes)  # (G, N, K)
