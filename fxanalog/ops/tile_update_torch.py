"""The torch implementation of ``fxanalog::tile_update``: the pulsed update
of a tile array, in plain torch, on any device (docs/training.md states the
semantics; this is the reference the fast paths are tested against).

For every tile (group g, output piece o, input piece i) and every batch row
b, in order:

1. *Update management* (``management``): from the row's largest |x| over
   the tile's inputs and largest |d| over its outputs, the length BL of the
   pulse trains and the probability factors A (error lines) and B (input
   lines).
2. *Pulse trains* (``pulse_trains``): in each of the BL slots every input
   line j fires with probability min(1, B |x_j|) and every error line i with
   min(1, A |d_i|), one uniform draw per line and slot, so a line's train is
   shared by every cross-point on it.
3. *Coincidences*: cross-point (i, j) gets one pulse per slot where both of
   its lines fired, down when sign(d_i x_j) > 0 (the direction of
   ``-lr d x^T``), and each pulse moves the weight by the device's rule
   (``fxanalog.devices``): its own cycle-to-cycle draw, the step at the
   weight the previous pulse left, the clip to the cross-point's bounds.

Row b+1 starts from the weights row b left. For float32 CPU weights, when
the extension is built, all three steps run in C (``fxanalog._pulsed``:
management, input trains per (row, output piece), then each weight row with
its error trains and pulses, on torch's OpenMP threads, every row and train
with its own random stream); else the trains are drawn here in torch and the
pulses applied by the Python loop below (which the tests compare the C
kernel with, pulse for pulse, on the same trains). With ``pulse_type`` NONE
the
update is the exact ``w -= lr d^T x`` (also for ``IdealDevice``);
NONE_WITH_DEVICE clips that to the bounds; MEAN_COUNT and
DETERMINISTIC_IMPLICIT replace the random trains by aihwkit's deterministic
counts.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from dataclasses import dataclass, fields
from typing import Optional, Sequence

import torch
from torch import Tensor

try:  # the coincidences and pulses in C (fxanalog/_pulsed.c); optional at install
    from fxanalog import _pulsed as native
except ImportError:  # pragma: no cover - only without a C compiler at install
    native = None

from fxanalog.config import PulseType, UpdateParameters, resolution_step
from fxanalog.devices import ROUTE_BOTH, ROUTE_UP, DeviceRule, apply_pulses, route_pulses
from fxanalog.geometry import piece_index

__all__ = ["PulsedUpdate", "management", "pulse_trains", "tile_update", "pack_update", "unpack_update", "pack_rule",
           "unpack_rule"]


@dataclass(frozen=True)
class PulsedUpdate:
    """``UpdateParameters`` resolved for the update, with the device's weight
    granularity ``dw``."""

    desired_bl: int
    fixed_bl: bool
    bl_management: bool
    update_management: bool
    um_grad_scale: float
    res: float  # probability resolution (0: none)
    sto_round: bool
    pulse_type: PulseType
    x_res_implicit: float
    d_res_implicit: float
    dw: float

    @staticmethod
    def of(params: UpdateParameters, dw: float) -> "PulsedUpdate":
        return PulsedUpdate(int(params.desired_bl), bool(params.fixed_bl), bool(params.update_bl_management),
                            bool(params.update_management), float(params.um_grad_scale),
                            resolution_step(params.res), bool(params.sto_round), params.pulse_type,
                            resolution_step(params.x_res_implicit), resolution_step(params.d_res_implicit), float(dw))

    def longest_train(self, lr: float) -> int:
        """The largest BL the management can give a row at learning rate
        ``lr`` > 0 (``management``'s first case)."""
        if self.fixed_bl or self.bl_management or self.dw * self.desired_bl >= lr:
            return max(self.desired_bl, 1)
        return max(math.ceil(lr / self.dw), 1)

    @property
    def stochastic(self) -> bool:
        """Random pulse trains (the other pulse types are exact or deterministic)."""
        return self.pulse_type in (PulseType.STOCHASTIC_COMPRESSED, PulseType.STOCHASTIC)

    def tile_management(self, x: Tensor, d: Tensor, lr: float, in_sizes: Sequence[int],
                        out_sizes: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """(BL, A, B) of every row and tile, each (G, B, n_out, n_in), from
        (G, B, K) ``x`` and (G, B, N) ``d`` (``management`` of the rows'
        largest |x| over each input piece and |d| over each output piece)."""
        return management(_row_maxima(x, in_sizes)[:, :, None, :], _row_maxima(d, out_sizes)[:, :, :, None], lr,
                          self)


def _discretize(p: Tensor, res: float, sto_round: bool) -> Tensor:
    if res <= 0:
        return p
    q = p / res
    if sto_round:
        q = q + torch.rand_like(q) - 0.5
    return torch.round(q) * res


def management(x_max: Tensor, d_max: Tensor, lr: float, up: PulsedUpdate) -> tuple[Tensor, Tensor, Tensor]:
    """(BL, A, B) of every row and tile from the rows' largest |x| and |d|
    over the tile's lines (any broadcastable shapes): BL an integer tensor
    (0: no pulses), A the factor of the error lines, B of the input lines.
    Computed in float32 in aihwkit's order of operations, so that BL =
    ceil(k) lands on the same side of a whole number as aihwkit's."""
    shape = torch.broadcast_shapes(x_max.shape, d_max.shape)
    f32 = torch.float32
    x_max, d_max = x_max.expand(shape).to(f32), d_max.expand(shape).to(f32)
    lr_t = torch.tensor(lr, dtype=f32)
    g = torch.tensor(up.dw, dtype=f32)
    max_bl = up.desired_bl
    # calculateBlAB: without management, or as its starting point
    if up.fixed_bl or up.bl_management or float(g * max_bl) >= lr:
        bl0 = torch.tensor(float(max_bl), dtype=f32)
        a0 = torch.sqrt(lr_t / (g * bl0))
    else:
        bl0 = torch.clamp(torch.ceil(lr_t / g), min=1)
        a0 = torch.tensor(1.0, dtype=f32)
    BL = torch.full(shape, float(bl0), dtype=f32, device=x_max.device)
    A = torch.full(shape, float(a0), dtype=f32, device=x_max.device)
    B = A.clone()
    if up.bl_management or up.update_management:
        zero = (x_max == 0) | (d_max == 0)
        d_val = up.um_grad_scale * d_max
        k = lr_t * x_max * d_val / g
        if up.bl_management:
            BL = torch.clamp(torch.ceil(k), max=max_bl)
            A = torch.sqrt(lr_t / (g * BL.clamp(min=1)))
            B = A.clone()
        if up.update_management:
            d_val = torch.where(k > max_bl, d_val * (max_bl / torch.where(k > 0, k, torch.ones_like(k))), d_val)
            safe_d = torch.where(zero, torch.ones_like(d_val), d_val)
            safe_x = torch.where(zero, torch.ones_like(x_max), x_max)
            A = A * torch.sqrt(safe_x / safe_d)
            B = B * torch.sqrt(safe_d / safe_x)
        BL = torch.where(zero, torch.zeros_like(BL), BL)
    return BL.to(torch.int64), A, B


def _row_maxima(v: Tensor, sizes: Sequence[int]) -> Tensor:
    """(G, B, L) -> (G, B, n_pieces): max |v| over each piece's lines."""
    return torch.stack([p.abs().amax(dim=-1) for p in v.split(list(sizes), dim=-1)], dim=-1)


def pulse_trains(x: Tensor, d: Tensor, lr: float, up: PulsedUpdate, in_sizes: Sequence[int],
                 out_sizes: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """The pulse trains of every row and tile (stochastic pulse types).

    Returns ``x_fire`` (G, B, n_out, K, L) and ``d_fire`` (G, B, n_in, N, L)
    booleans, L the longest train: whether input line j (for the tiles of
    output piece o) and error line i (for the tiles of input piece i) fire
    in slot t; slots at or past a tile's BL are False. And BL (G, B, n_out,
    n_in)."""
    G, B, K = x.shape
    N = d.shape[-1]
    BL, A, Bx = up.tile_management(x, d, lr, in_sizes, out_sizes)  # (G, B, n_out, n_in)
    L = int(BL.max()) if BL.numel() else 0
    pin, pout = piece_index(in_sizes, x.device), piece_index(out_sizes, x.device)
    # probability and train length of each line, for each tile that holds it
    px = _discretize(Bx.index_select(3, pin) * x.abs().float()[:, :, None, :], up.res, up.sto_round)  # (G,B,n_out,K)
    pd = _discretize(A.index_select(2, pout).transpose(2, 3) * d.abs().float()[:, :, None, :], up.res,
                     up.sto_round)  # (G, B, n_in, N)
    bl_x = BL.index_select(3, pin)  # (G, B, n_out, K)
    bl_d = BL.index_select(2, pout).transpose(2, 3)  # (G, B, n_in, N)
    slots = torch.arange(max(L, 1), device=x.device)
    x_fire = (px[..., None] > torch.rand(*px.shape, max(L, 1), device=x.device)) & (slots < bl_x[..., None])
    d_fire = (pd[..., None] > torch.rand(*pd.shape, max(L, 1), device=x.device)) & (slots < bl_d[..., None])
    return x_fire[..., :L], d_fire[..., :L], BL


def _deterministic_counts(x: Tensor, d: Tensor, lr: float, up: PulsedUpdate, in_sizes, out_sizes) -> Tensor:
    """Signed coincidence counts (G, N, K) of one row (``x`` (G, K), ``d``
    (G, N)), positive meaning down, for MEAN_COUNT and DETERMINISTIC_IMPLICIT
    (aihwkit's dense bit lines)."""
    x, d = x[:, None], d[:, None]  # one row: (G, 1, K), (G, 1, N)
    BL, A, Bx = up.tile_management(x, d, lr, in_sizes, out_sizes)
    pin, pout = piece_index(in_sizes, x.device), piece_index(out_sizes, x.device)
    bl = BL.index_select(3, pin).index_select(2, pout).double()[:, 0]  # (G, N, K)
    px = (Bx.index_select(3, pin).index_select(2, pout) * x.abs().double()[:, :, None, :])[:, 0]
    pd = (A.index_select(3, pin).index_select(2, pout) * d.abs().double()[:, :, :, None])[:, 0]
    sign = torch.sign(d[:, 0]).double()[:, :, None] * torch.sign(x[:, 0]).double()[:, None, :]
    if up.pulse_type == PulseType.MEAN_COUNT:
        cx = torch.clamp(torch.round(bl * _discretize(px, up.res, up.sto_round)), min=0)
        cx = torch.minimum(cx, bl)
        cd = torch.minimum(torch.clamp(torch.round(bl * _discretize(pd, up.res, up.sto_round)), min=0), bl)
        counts = torch.round(cd / torch.where(bl > 0, bl, torch.ones_like(bl)) * cx)
    else:
        vx = _discretize(px, up.x_res_implicit, up.sto_round).clamp(0, 1)
        vd = _discretize(pd, up.d_res_implicit, up.sto_round).clamp(0, 1)
        counts = torch.round(bl * vd * vx)
    return (counts * sign).to(torch.int64)


@torch.no_grad()
def tile_update(w: Tensor, x: Tensor, d: Tensor, lr: float, up: PulsedUpdate, rule, params,
                in_sizes: Sequence[int], out_sizes: Sequence[int],
                trains: Optional[tuple[Tensor, Tensor]] = None, use_native: Optional[bool] = None) -> Tensor:
    """The pulsed update of the (G, N, K) tile weights ``w`` (tile units,
    changed in place and returned) with the rows of ``x`` (G, B, K) and ``d``
    (G, B, N), as the module docstring says. ``params``: the device's
    per-cross-point parameters, (G, N, K, P) in ``rule.pulse_names`` order
    (or a dict of (G, N, K) tensors by name). A stack of D devices that share
    the trains (a unit cell): ``w`` (D, G, N, K), ``rule`` a tuple of D
    ``DeviceRule`` (each with its ``route``), ``params`` (D, G, N, K, P).
    ``trains``: given pulse trains
    (``pulse_trains``'s first two results) instead of drawn ones.
    ``use_native``: the C kernel (True) or the Python loop (False); None:
    the C kernel where it applies. Returns the boolean (G, N, K) mask of the
    cross-points that got a pulse."""
    stacked = w.dim() == 4
    rules = tuple(rule) if stacked else (rule,)
    if isinstance(params, dict):
        params = torch.stack([params[n] for n in rule.pulse_names], dim=-1) if rule.pulse_names else None
    ws = w if stacked else w[None]
    ps = params if (stacked or params is None) else params[None]
    G, N, K = ws.shape[1:]
    if lr == 0 or x.shape[1] == 0:
        return torch.zeros((G, N, K), dtype=torch.bool, device=w.device)
    if up.stochastic and rules[0].pulsed:
        if use_native is None:
            use_native = (native is not None and w.device.type == "cpu" and w.dtype == torch.float32
                          and len(rules) <= NATIVE_MAX_DEVICES)
        if use_native:
            touched = torch.empty((G, N, K), dtype=torch.bool)  # cleared row by row by the kernel
            _native_update(ws, touched, x.float(), d.float(), lr, up, rules, ps.contiguous(), in_sizes, out_sizes,
                           trains)
            return touched
    touched = torch.zeros((G, N, K), dtype=torch.bool, device=w.device)
    states = [{n: ps[k][..., i] for i, n in enumerate(r.pulse_names)} for k, r in enumerate(rules)]
    if not rules[0].pulsed or up.pulse_type in (PulseType.NONE, PulseType.NONE_WITH_DEVICE):
        dw = -lr * torch.matmul(d.transpose(1, 2).to(w.dtype), x.to(w.dtype))
        if any(r.route != ROUTE_BOTH for r in rules):  # each row's increases and decreases apart
            rows = -lr * d.to(w.dtype)[:, :, :, None] * x.to(w.dtype)[:, :, None, :]  # (G, B, N, K)
            ups, downs = rows.clamp(min=0).sum(dim=1), (-rows).clamp(min=0).sum(dim=1)
        for wk, r, st in zip(ws, rules, states):
            # one-sided devices take the increases (ROUTE_UP) or the decreases as increases
            wk.add_(dw if r.route == ROUTE_BOTH else (ups if r.route == ROUTE_UP else downs))
            if r.pulsed and up.pulse_type == PulseType.NONE_WITH_DEVICE:
                wk.copy_(torch.minimum(torch.maximum(wk, st["b_min"]), st["b_max"]))
        touched[:] = True
        return touched
    xs, ds = x.float(), d.float()
    sign_down = lr > 0
    if up.pulse_type in (PulseType.MEAN_COUNT, PulseType.DETERMINISTIC_IMPLICIT):
        for b in range(x.shape[1]):
            c = _deterministic_counts(xs[:, b], ds[:, b], abs(lr), up, in_sizes, out_sizes)  # (G, N, K)
            active = c != 0
            if bool(active.any()):
                for wk, r, st in zip(ws, rules, states):
                    down, count = route_pulses(r, (c > 0) == sign_down, c.abs())
                    _apply(wk, r, st, count > 0, down, count)
                touched |= active
        return touched
    x_fire, d_fire = pulse_trains(xs, ds, abs(lr), up, in_sizes, out_sizes)[:2] if trains is None else trains
    in_starts = [sum(in_sizes[:i]) for i in range(len(in_sizes))]
    out_starts = [sum(out_sizes[:o]) for o in range(len(out_sizes))]
    x_pos, d_pos = x > 0, d > 0
    for g in range(G):
        for b in range(x.shape[1]):
            for o, (r0, nr) in enumerate(zip(out_starts, out_sizes)):
                for i, (c0, nc) in enumerate(zip(in_starts, in_sizes)):
                    xf = x_fire[g, b, o, c0:c0 + nc]  # (k, L)
                    df = d_fire[g, b, i, r0:r0 + nr]  # (n, L)
                    rows = df.any(dim=-1).nonzero().flatten()
                    cols = xf.any(dim=-1).nonzero().flatten()
                    if rows.numel() == 0 or cols.numel() == 0:
                        continue
                    counts = torch.matmul(df[rows].double(), xf[cols].double().T).round().to(torch.int64)
                    # down where sign(d_i) sign(x_j) > 0 (for lr > 0)
                    down = (d_pos[g, b, r0 + rows][:, None] == x_pos[g, b, c0 + cols][None, :]) == sign_down
                    ri, ci = (r0 + rows)[:, None], (c0 + cols)[None, :]
                    for wk, r, st in zip(ws, rules, states):  # every device of a stack, the same coincidences
                        down_k, count_k = route_pulses(r, down, counts)
                        sub = {k: v[g][ri, ci] for k, v in st.items()}
                        wk[g][ri, ci] = apply_pulses(r, wk[g][ri, ci], down_k, count_k, sub)
                        touched[g][ri, ci] |= count_k > 0
    return touched


def _words(fire: Tensor) -> Tensor:
    """(..., L) booleans to int64 words, slot t in bit t."""
    return (fire.to(torch.int64) << torch.arange(fire.shape[-1], device=fire.device)).sum(dim=-1)


@functools.lru_cache(maxsize=256)
def _starts(sizes: tuple) -> Tensor:
    """(n + 1,) int32: the first line of each piece, then the count."""
    return torch.tensor([0, *itertools.accumulate(sizes)], dtype=torch.int32)


_WORKSPACES = threading.local()
_WORKSPACE_KEEP = 1 << 20  # bytes


def _workspace(G: int, B: int, n_out: int, n_in: int, K: int, words: int) -> tuple[tuple, tuple]:
    """The C kernel's scratch tensors, which it writes before it reads them:
    the management of every row and tile (BL, A, B) and the listed input
    lines (columns, trains, offsets). Small ones (at most
    ``_WORKSPACE_KEEP`` bytes, where allocating costs as much as the work)
    are kept per thread for the last few shapes: a training loop asks for
    the same ones at every step."""
    key = (G, B, n_out, n_in, K, words)
    kept = getattr(_WORKSPACES, "kept", None)
    if kept is None:
        kept = _WORKSPACES.kept = {}
    if key in kept:
        return kept[key]
    tiles = (G, B, n_out, n_in)
    managed = (torch.empty(tiles, dtype=torch.int32), torch.empty(tiles), torch.empty(tiles))
    listed = (torch.empty((G, B, n_out, K), dtype=torch.int32), torch.empty((G, B, n_out, K, words), dtype=torch.int64),
              torch.empty((G, B, n_out, n_in + 1), dtype=torch.int32))
    if sum(t.numel() * t.element_size() for t in managed + listed) <= _WORKSPACE_KEEP:
        if len(kept) >= 4:
            kept.pop(next(iter(kept)))
        kept[key] = (managed, listed)
    return managed, listed


NATIVE_MAX_DEVICES = 16  # the C kernel's stack of devices (MAX_DEVICES in _pulsed.c)
NATIVE_MAX_WORDS = 8  # its trains: 63 slots a word (MAX_WORDS)


def _native_update(w: Tensor, touched: Tensor, x: Tensor, d: Tensor, lr: float, up: PulsedUpdate,
                   rules: tuple[DeviceRule, ...], params: Tensor, in_sizes, out_sizes, trains=None) -> None:
    """The pulse trains, coincidences and pulses in C (``fxanalog/_pulsed.c``),
    on torch's thread count, for the (D, G, N, K) weights of a stack of D
    devices; ``trains``: given ones instead of drawn ones."""
    _, G, N, K = w.shape
    B = x.shape[1]
    n_out, n_in = len(out_sizes), len(in_sizes)
    words = -(-up.longest_train(abs(lr)) // 63)  # 63 slots a word
    if words > NATIVE_MAX_WORDS:
        raise ValueError(f"UpdateParameters.desired_bl = {up.desired_bl} (learning rate {lr}, weight granularity "
                         f"{up.dw}): pulse trains of at most {63 * NATIVE_MAX_WORDS} slots are supported")
    x_given = d_given = None
    if trains is not None:
        if trains[0].shape[-1] > 63:
            raise ValueError(f"given pulse trains of {trains[0].shape[-1]} slots: at most 63")
        words = 1
        x_given = _words(trains[0]).contiguous()  # (G, B, n_out, K)
        d_given = _words(trains[1]).contiguous()  # (G, B, n_in, N)
    starts = (_starts(tuple(in_sizes)), _starts(tuple(out_sizes)))
    managed, listed = _workspace(G, B, n_out, n_in, K, words)
    tensors = [x.contiguous(), d.contiguous(), *managed, *starts, x_given, d_given, params, *listed, w,
               touched.view(torch.uint8),
               # many rows (the one-hot rows of mixed precision's transfer): each weight row reads its error
               # lines in a run, not one per cache line; a small batch reads them from d as they are
               d.transpose(1, 2).contiguous() if B >= 256 else None]
    assert w.is_contiguous() and touched.is_contiguous()
    devices = tuple((r.kind, params.shape[-1], int(r.mult_noise), int(r.exp_std_add != 0 or r.exp_std_slope != 0),
                     r.route, r.pulse_names.index("reference") if r.reference else 0, r.dw_min_std, r.exp_a, r.exp_b, r.exp_A_up, r.exp_A_down, r.exp_gamma_up,
                     r.exp_gamma_down, r.exp_std_add, r.exp_std_slope) for r in rules)
    seed = int(torch.randint(0, 2**62, (1,)).item())  # from torch's generator: manual_seed fixes every draw
    # a thread per ~100 000 weights: below that, starting threads costs more than it gains
    threads = max(1, min(torch.get_num_threads(), len(rules) * G * N * K // 100_000))
    native.update(tuple(None if v is None else v.data_ptr() for v in tensors), (G, N, K, B, n_out, n_in, words), devices,
                  native_management(abs(lr), up), seed, int(lr < 0), float(up.res), int(up.sto_round), threads)


def native_management(lr: float, up: PulsedUpdate) -> tuple:
    """``management``'s parameters as the C kernel takes them."""
    return (float(lr), float(up.dw), int(up.desired_bl), bool(up.fixed_bl), bool(up.bl_management),
            bool(up.update_management), float(up.um_grad_scale))


def _apply(w: Tensor, rule: DeviceRule, state: dict, active: Tensor, down: Tensor, count: Tensor) -> None:
    idx = active.nonzero(as_tuple=True)
    sub = {k: v[idx] for k, v in state.items()}
    w[idx] = apply_pulses(rule, w[idx], down[idx], count[idx], sub)


# --------------------------------------------------------------------------
# The op's flat arguments (custom ops take no dataclasses)

_PULSE_TYPES = list(PulseType)


def pack_update(up: PulsedUpdate) -> list[float]:
    return [float(up.desired_bl), float(up.fixed_bl), float(up.bl_management), float(up.update_management),
            up.um_grad_scale, up.res, float(up.sto_round), float(_PULSE_TYPES.index(up.pulse_type)),
            up.x_res_implicit, up.d_res_implicit, up.dw]


def unpack_update(v: Sequence[float]) -> PulsedUpdate:
    """``pack_update``'s inverse (cached per list: an optimizer step unpacks the same one every time)."""
    return _unpack_update(tuple(v))


@functools.lru_cache(maxsize=256)
def _unpack_update(v: tuple) -> PulsedUpdate:
    return PulsedUpdate(int(v[0]), bool(v[1]), bool(v[2]), bool(v[3]), float(v[4]), float(v[5]), bool(v[6]),
                        _PULSE_TYPES[int(v[7])], float(v[8]), float(v[9]), float(v[10]))


def pack_rule(rule) -> list[float]:
    """A ``DeviceRule``, or a tuple of them (a stack of devices), as floats
    (a new list each call; the packing is cached per rule, which is frozen)."""
    return list(_pack_rule(rule))


@functools.lru_cache(maxsize=256)
def _pack_rule(rule) -> tuple:
    if isinstance(rule, tuple):
        return tuple(v for r in rule for v in _pack_rule(r))
    return tuple(float(getattr(rule, f.name)) for f in fields(DeviceRule))


_RULE_LEN = len(fields(DeviceRule))
_INT_FIELDS = ("kind", "route")  # the rest: bool or float by their annotation


def unpack_rule(v: Sequence[float]):
    """``pack_rule``'s inverse: one ``DeviceRule``, or a tuple for a stack (cached per list)."""
    return _unpack_rule(tuple(v))


@functools.lru_cache(maxsize=256)
def _unpack_rule(v: tuple):
    if len(v) > _RULE_LEN:
        return tuple(_unpack_rule(v[k:k + _RULE_LEN]) for k in range(0, len(v), _RULE_LEN))
    kw = {}
    for f, value in zip(fields(DeviceRule), v):
        kw[f.name] = int(value) if f.name in _INT_FIELDS else (bool(value) if f.type in ("bool", bool) else float(value))
    return DeviceRule(**kw)
