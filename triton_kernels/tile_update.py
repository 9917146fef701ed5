"""The Triton kernel of ``fxanalog::tile_update`` and its launcher.

``launch`` computes the stochastic pulsed update of a tile array with the
semantics of the torch path (``fxanalog.ops.tile_update_torch``;
docs/training.md), in one launch for the whole array; the op layer
(``fxanalog.ops.tile_update``) registers it with ``supports`` and the
dispatch sends CUDA tensors here.

Before the launch, torch computes the update management of every batch row
and tile (``PulsedUpdate.tile_management``: BL, A, B on the device, no host
synchronisation). Then one program per block of cross-points of one tile
(group g, output piece o, input piece p) loads the block's weights and
device parameters once and, for every batch row b in order:

1. draws the trains of the block's input lines (probability min(1, B |x_j|)
   in each of the BL slots) and error lines (min(1, A |d_i|)) from the
   Philox streams ``INPUT_TRAIN`` and ``ERROR_TRAIN`` keyed by (b, tile) with
   the line and the slot as counter, so a line's train is the same in every
   program that holds one of its cross-points;
2. counts the coincidences of every cross-point over the slots (in
   registers);
3. applies the pulses: pulse q of every cross-point that has more than q,
   each with its own normal draw (stream ``PULSE_NOISE``, counter (q,
   cross-point)), the device's step at the current weight and the clip to
   the cross-point's bounds; down where d_i and x_j have the same sign (for
   a positive learning rate).

Then it writes the weights and the mask of the cross-points that got a
pulse. Nothing of size BL x batch x out x in exists; the weights are read
and written once. Given trains (the tests compare with the torch path on
the same trains) replace the draws of step 1.

The other pulse types (NONE, NONE_WITH_DEVICE, MEAN_COUNT,
DETERMINISTIC_IMPLICIT), probability resolutions (``res``), the ideal device
and empty batches are computed by the torch path (``supports``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from fxanalog.devices import CONSTANT_STEP, EXP_STEP, LINEAR_STEP, POW_STEP, ROUTE_DOWN_AS_UP, ROUTE_UP
from fxanalog.triton_kernels.streams import ERROR_TRAIN, INPUT_TRAIN, PULSE_NOISE, call_seed, key_fits, stream_key
from fxanalog.triton_kernels.utils import next_pow2, piece_tables

if TYPE_CHECKING:  # the op layer passes them; no import of fxanalog.ops here
    from fxanalog.devices import DeviceRule
    from fxanalog.ops.tile_update_torch import PulsedUpdate

__all__ = ["launch", "supports", "MAX_GRID_GROUPS"]

_INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_GRID_GROUPS = 65535  # CUDA's limit on the grid axis that carries the groups

_CONSTANT_STEP = tl.constexpr(CONSTANT_STEP)
_LINEAR_STEP = tl.constexpr(LINEAR_STEP)
_EXP_STEP = tl.constexpr(EXP_STEP)
_POW_STEP = tl.constexpr(POW_STEP)
_ROUTE_UP = tl.constexpr(ROUTE_UP)
_ROUTE_DOWN_AS_UP = tl.constexpr(ROUTE_DOWN_AS_UP)
MAX_STACK = 16  # devices of a stack (as the C kernel)


@triton.jit
def _pulse(w_seen, down, xi, bmax, bmin, up_scale, down_scale, up_extra, down_extra, ref, sd, exp_a, exp_b, a_up,
           a_down, g_up, g_down, std_add, std_slope, KIND: tl.constexpr, MULT_NOISE: tl.constexpr,
           COMPLEX_NOISE: tl.constexpr):
    """One pulse at every cross-point (as ``fxanalog.devices.apply_pulses``):
    the step at ``w`` in direction ``down`` with the normal draw ``xi``, then
    the clip to the bounds. ``*_extra``: the slopes (linear step) or the
    exponents (power step) of each direction; ``ref``: the reference of a
    device that has one (the step and the clip act on w + ref), else 0."""
    w = w_seen + ref
    sign = tl.where(down, -1.0, 1.0)
    scale = tl.where(down, down_scale, up_scale)
    if KIND == _CONSTANT_STEP:
        new = w + sign * scale * (1.0 + sd * xi)
    elif KIND == _LINEAR_STEP:
        slope = tl.where(down, down_extra, up_extra)
        if MULT_NOISE:
            new = w + sign * (slope * w + scale) * (1.0 + sd * xi)
        else:
            new = w + sign * (slope * w + scale * (1.0 + sd * xi))
    elif KIND == _EXP_STEP:
        span = bmax - bmin
        z = 2.0 * w / span * exp_a + exp_b
        y = tl.where(down, 1.0 - a_down * tl.exp(-g_down * z), 1.0 - a_up * tl.exp(g_up * z))
        dw = sign * tl.maximum(y, 0.0) * scale
        if COMPLEX_NOISE:
            new = w + dw + sd * (tl.abs(dw) + std_add + std_slope * tl.abs(w)) * xi
        else:
            new = w + dw * (1.0 + sd * xi)
        new = tl.where(span > 0.0, new, w)  # a cross-point without range is never updated
    else:  # _POW_STEP
        span = bmax - bmin
        gamma = tl.where(down, down_extra, up_extra)
        frac = tl.maximum(tl.where(down, (w - bmin) / span, (bmax - w) / span), 0.0)
        power = tl.where(frac > 0.0, tl.exp2(gamma * tl.log2(tl.maximum(frac, 1e-38))), tl.where(gamma == 0.0, 1.0, 0.0))
        new = tl.where(span == 0.0, w, w + sign * scale * power * (1.0 + sd * xi))
    return tl.minimum(tl.maximum(new, bmin), bmax) - ref


@triton.jit
def _update_kernel(
    w_ptr, touched_ptr, x_ptr, d_ptr, bl_ptr, a_ptr, bx_ptr, params_ptr, x_given_ptr, d_given_ptr, seed_ptr,
    in_starts_ptr, in_sizes_ptr, out_starts_ptr, out_sizes_ptr,
    B, N, K, n_in, n_out, p_in, p_out, blocks_i, blocks_j, tiles,
    sd, exp_a, exp_b, a_up, a_down, g_up, g_down, std_add, std_slope, salt,
    KIND: tl.constexpr, NP: tl.constexpr, MULT_NOISE: tl.constexpr, COMPLEX_NOISE: tl.constexpr,
    NOISY: tl.constexpr, FLIP: tl.constexpr, GIVEN: tl.constexpr, ROUTE: tl.constexpr, REF: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """One block of BLOCK_I x BLOCK_J cross-points of one tile, every batch
    row. ``ROUTE``: which pulses this device takes (devices.ROUTE_*); ``salt``
    its index in a stack times the longest train, so that its pulse noise
    is its own."""
    pid_i, pid_j, g = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o, bi = pid_i // blocks_i, pid_i % blocks_i
    p, bj = pid_j // blocks_j, pid_j % blocks_j
    nr, nc = tl.load(out_sizes_ptr + o), tl.load(in_sizes_ptr + p)
    if bi * BLOCK_I < nr and bj * BLOCK_J < nc:  # else: past the end of a smaller piece
        il = bi * BLOCK_I + tl.arange(0, BLOCK_I)  # rows and columns inside the tile
        jl = bj * BLOCK_J + tl.arange(0, BLOCK_J)
        mi, mj = il < nr, jl < nc
        rows = tl.load(out_starts_ptr + o) + il
        cols = tl.load(in_starts_ptr + p) + jl
        mask = mi[:, None] & mj[None, :]
        cell = (g * N + rows)[:, None].to(tl.int64) * K + cols[None, :]
        w = tl.load(w_ptr + cell, mask=mask, other=0.0)
        bmax = tl.load(params_ptr + cell * NP, mask=mask, other=0.0)
        bmin = tl.load(params_ptr + cell * NP + 1, mask=mask, other=0.0)
        up_scale = tl.load(params_ptr + cell * NP + 2, mask=mask, other=0.0)
        down_scale = tl.load(params_ptr + cell * NP + 3, mask=mask, other=0.0)
        if NP > 4:
            up_extra = tl.load(params_ptr + cell * NP + 4, mask=mask, other=0.0)
            down_extra = tl.load(params_ptr + cell * NP + 5, mask=mask, other=0.0)
        else:
            up_extra = bmax
            down_extra = bmax
        if REF > 0:  # the reference of the device (params column REF)
            ref = tl.load(params_ptr + cell * NP + REF, mask=mask, other=0.0)
        else:
            ref = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.float32)
        touched = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.int32)
        tile = (g * n_out + o) * n_in + p
        seed = tl.load(seed_ptr)
        noise_counter = il[:, None] * p_in + jl[None, :]  # pulse q adds q * p_out * p_in, salt more
        for b in range(B):
            k = ((g * B + b) * n_out + o) * n_in + p
            bl = tl.load(bl_ptr + k)
            if bl > 0:
                xv = tl.load(x_ptr + (g * B + b).to(tl.int64) * K + cols, mask=mj, other=0.0).to(tl.float32)
                dv = tl.load(d_ptr + (g * B + b).to(tl.int64) * N + rows, mask=mi, other=0.0).to(tl.float32)
                count = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.int32)
                if GIVEN:
                    xw = tl.load(x_given_ptr + ((g * B + b) * n_out + o).to(tl.int64) * K + cols, mask=mj, other=0)
                    dw = tl.load(d_given_ptr + ((g * B + b) * n_in + p).to(tl.int64) * N + rows, mask=mi, other=0)
                    for t in range(bl):
                        fx = ((xw >> t) & 1) != 0
                        fd = ((dw >> t) & 1) != 0
                        count += (fd[:, None] & fx[None, :]).to(tl.int32)
                else:
                    px = tl.load(bx_ptr + k) * tl.abs(xv)
                    pd = tl.load(a_ptr + k) * tl.abs(dv)
                    kx = stream_key(seed, b, INPUT_TRAIN, tiles, tile)
                    kd = stream_key(seed, b, ERROR_TRAIN, tiles, tile)
                    for t in range(bl):
                        fx = px > tl.rand(kx, t * p_in + jl)
                        fd = pd > tl.rand(kd, t * p_out + il)
                        count += (fd[:, None] & fx[None, :]).to(tl.int32)
                if FLIP:  # a negative learning rate: up where the signs agree
                    down = (dv < 0.0)[:, None] != (xv < 0.0)[None, :]
                else:
                    down = (dv < 0.0)[:, None] == (xv < 0.0)[None, :]
                if ROUTE == _ROUTE_UP:  # only the up pulses
                    count = tl.where(down, 0, count)
                elif ROUTE == _ROUTE_DOWN_AS_UP:  # only the down pulses, as up pulses
                    count = tl.where(down, count, 0)
                    down = count < 0  # all False: applied as up pulses
                most = tl.max(tl.max(count, axis=1), axis=0)
                kn = stream_key(seed, b, PULSE_NOISE, tiles, tile)
                for q in range(most):
                    if NOISY:
                        xi = tl.randn(kn, (salt + q) * p_out * p_in + noise_counter)
                    else:
                        xi = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.float32)
                    new = _pulse(w, down, xi, bmax, bmin, up_scale, down_scale, up_extra, down_extra, ref, sd,
                                 exp_a, exp_b, a_up, a_down, g_up, g_down, std_add, std_slope, KIND, MULT_NOISE,
                                 COMPLEX_NOISE)
                    w = tl.where(count > q, new, w)
                touched = tl.maximum(touched, tl.minimum(count, 1))
        tl.store(w_ptr + cell, w, mask=mask)
        tl.store(touched_ptr + cell, touched.to(tl.int8), mask=mask)


def supports(w: Tensor, x: Tensor, d: Tensor, lr: float, up: "PulsedUpdate", rule: "DeviceRule",
             in_sizes: Sequence[int], out_sizes: Sequence[int]) -> bool:
    """The kernel computes this call (the dispatch sends the others to the
    torch path): a pulsed device or a stack of at most 16 (a unit cell), a
    stochastic pulse type without probability resolution, float32 weights, float32/16/bfloat16 (x, d), a non-empty
    batch and a non-zero learning rate, and keys and counters that fit."""
    rules = rule if isinstance(rule, tuple) else (rule,)
    if w.dim() != (4 if isinstance(rule, tuple) else 3) or len(rules) > MAX_STACK:
        return False
    if not (all(r.pulsed for r in rules) and up.stochastic and up.res == 0 and lr != 0):
        return False
    if w.dtype != torch.float32 or x.dtype not in _INPUT_DTYPES or d.dtype not in _INPUT_DTYPES:
        return False
    if x.dim() != 3 or x.shape[1] == 0:
        return False
    tiles = min(w.shape[0], MAX_GRID_GROUPS) * len(in_sizes) * len(out_sizes)
    counters = len(rules) * up.longest_train(abs(lr)) * max(out_sizes) * max(in_sizes)  # pulse-noise counters
    return key_fits(x.shape[1], tiles) and counters < 2**31


def _words(fire: Tensor) -> Tensor:
    """(..., L) booleans -> int64 words, slot t in bit t."""
    return (fire.to(torch.int64) << torch.arange(fire.shape[-1], device=fire.device)).sum(dim=-1).contiguous()


def launch(w: Tensor, x: Tensor, d: Tensor, lr: float, up: "PulsedUpdate", rule, params: Tensor,
           in_sizes: Sequence[int], out_sizes: Sequence[int], trains: Optional[tuple[Tensor, Tensor]] = None, *,
           block_i: Optional[int] = None, block_j: Optional[int] = None) -> Tensor:
    """The pulsed update of the (G, N, K) float32 tile weights ``w`` (changed
    in place) with the rows of ``x`` (G, B, K) and ``d`` (G, B, N), as the
    module docstring says; ``params`` (G, N, K, P) the device's
    per-cross-point parameters in ``rule.pulse_names`` order. A stack of D
    devices sharing the trains (a unit cell): ``w`` (D, G, N, K), ``rule`` a
    tuple of D rules with their routes, ``params`` (D, G, N, K, P); one
    launch per device with the same seed (the same trains), each device's
    pulse noise its own. ``trains``: given ``(x_fire, d_fire)`` as
    ``tile_update_torch.pulse_trains`` returns them, instead of drawn ones.
    ``block_i``/``block_j`` override the block size (powers of two >= 16).
    Returns the boolean (G, N, K) mask of the cross-points that got a pulse."""
    if isinstance(rule, tuple):
        if w.dim() != 4 or w.shape[0] != len(rule) or params.shape[0] != len(rule):
            raise ValueError(f"tile_update launch: w {tuple(w.shape)}, params {tuple(params.shape)}, {len(rule)} "
                             "rules: expected (D, G, N, K) weights and (D, G, N, K, P) params for D rules")
        if not supports(w, x, d, lr, up, rule, in_sizes, out_sizes):
            raise ValueError("tile_update launch: a stack the kernel does not compute (see supports)")
        seed = call_seed(w.device)
        touched = torch.zeros(w.shape[1:], dtype=torch.bool, device=w.device)
        for k, r in enumerate(rule):
            wk = w[k] if w[k].is_contiguous() else w[k].contiguous()
            touched |= _launch(wk, x, d, lr, up, r, params[k], in_sizes, out_sizes, trains, block_i, block_j,
                               seed, k)
            if wk.data_ptr() != w[k].data_ptr():
                w[k].copy_(wk)
        return touched
    return _launch(w, x, d, lr, up, rule, params, in_sizes, out_sizes, trains, block_i, block_j)


def _launch(w: Tensor, x: Tensor, d: Tensor, lr: float, up: "PulsedUpdate", rule: "DeviceRule", params: Tensor,
            in_sizes: Sequence[int], out_sizes: Sequence[int], trains: Optional[tuple[Tensor, Tensor]],
            block_i: Optional[int], block_j: Optional[int], seed: Optional[Tensor] = None, salt: int = 0) -> Tensor:
    """One device's launch (``launch``); ``seed``: the stack's, ``salt`` the
    device's index in it."""
    in_sizes, out_sizes = [int(s) for s in in_sizes], [int(s) for s in out_sizes]
    if w.dim() != 3 or x.dim() != 3 or d.dim() != 3:
        raise ValueError(f"tile_update launch: w {tuple(w.shape)}, x {tuple(x.shape)}, d {tuple(d.shape)}: "
                         "expected (G, N, K), (G, B, K) and (G, B, N)")
    G, N, K = w.shape
    B = x.shape[1]
    if x.shape != (G, B, K) or d.shape != (G, B, N) or sum(in_sizes) != K or sum(out_sizes) != N:
        raise ValueError(f"tile_update launch: w {tuple(w.shape)}, x {tuple(x.shape)}, d {tuple(d.shape)}, "
                         f"in_sizes {in_sizes}, out_sizes {out_sizes}: expected x (G, B, K), d (G, B, N), "
                         "sum(in_sizes) = K and sum(out_sizes) = N")
    if not supports(w, x, d, lr, up, rule, in_sizes, out_sizes):
        raise ValueError(f"tile_update launch: {up.pulse_type.name} pulses, res {up.res}, device kind {rule.kind}, "
                         f"w {w.dtype}, x {x.dtype}, batch {B}, lr {lr}: not a case the kernel computes (see supports)")
    if (params.shape[:3] != (G, N, K) or params.shape[-1] < len(rule.pulse_names)
            or params.dtype != torch.float32):
        raise ValueError(f"tile_update launch: params {params.dtype} {tuple(params.shape)}: expected float32 "
                         f"(G, N, K, P >= {len(rule.pulse_names)})")
    touched = torch.zeros((G, N, K), dtype=torch.bool, device=w.device)
    if G > MAX_GRID_GROUPS:  # groups are a grid axis: launch in slices of groups
        for g in range(0, G, MAX_GRID_GROUPS):
            s = slice(g, g + MAX_GRID_GROUPS)
            given = None if trains is None else (trains[0][s], trains[1][s])
            # a contiguous copy of a slice of non-contiguous weights is written back below
            ws = w[s] if w[s].is_contiguous() else w[s].contiguous()
            # a stack's seed, offset per slice (the trains of a slice's groups are their own)
            slice_seed = None if seed is None else seed + g // MAX_GRID_GROUPS
            touched[s] = _launch(ws, x[s], d[s], lr, up, rule, params[s], in_sizes, out_sizes, given, block_i,
                                 block_j, slice_seed, salt)
            if ws.data_ptr() != w[s].data_ptr():
                w[s].copy_(ws)
        return touched
    dev = w.device
    work = w if w.is_contiguous() else w.contiguous()
    x_c, d_c = x.contiguous(), d.contiguous()
    BL, A, Bx = up.tile_management(x_c.float(), d_c.float(), abs(lr), in_sizes, out_sizes)
    BL, A, Bx = BL.to(torch.int32).contiguous(), A.contiguous(), Bx.contiguous()
    tab = piece_tables(in_sizes, out_sizes, dev)
    if trains is not None:
        if trains[0].shape[-1] > 63:
            raise ValueError(f"tile_update launch: given trains of {trains[0].shape[-1]} slots: at most 63")
        x_given, d_given = _words(trains[0]), _words(trains[1])  # (G, B, n_out, K), (G, B, n_in, N)
    else:
        x_given = d_given = BL  # unused pointers
    p_in, p_out = max(in_sizes), max(out_sizes)
    bi = block_i or min(32, max(16, next_pow2(p_out)))
    bj = block_j or min(32, max(16, next_pow2(p_in)))
    blocks_i, blocks_j = -(-p_out // bi), -(-p_in // bj)
    n_in, n_out = len(in_sizes), len(out_sizes)
    noisy = rule.dw_min_std != 0
    _update_kernel[(n_out * blocks_i, n_in * blocks_j, G)](
        work, touched.view(torch.int8), x_c, d_c, BL, A, Bx, params.contiguous(), x_given, d_given,
        call_seed(dev) if seed is None else seed,
        tab.in_starts, tab.in_sizes, tab.out_starts, tab.out_sizes,
        B, N, K, n_in, n_out, p_in, p_out, blocks_i, blocks_j, G * n_out * n_in,
        rule.dw_min_std, rule.exp_a, rule.exp_b, rule.exp_A_up, rule.exp_A_down, rule.exp_gamma_up,
        rule.exp_gamma_down, rule.exp_std_add, rule.exp_std_slope, salt * up.longest_train(abs(lr)),
        KIND=rule.kind, NP=params.shape[-1], MULT_NOISE=bool(rule.mult_noise),
        COMPLEX_NOISE=rule.exp_std_add != 0 or rule.exp_std_slope != 0, NOISY=noisy, FLIP=lr < 0,
        GIVEN=trains is not None, ROUTE=rule.route,
        REF=rule.pulse_names.index("reference") if rule.reference else 0, BLOCK_I=bi, BLOCK_J=bj, num_warps=4,
    )
    if work is not w:
        w.copy_(work)
    return touched
