"""Inference physics on the tiles of an analog model.

Deployment (eval mode):

* ``program_analog_weights(model)`` maps every tile's weights to conductance
  pairs, draws the programming noise and the drift exponent of every device
  once, and keeps that programmed state in buffers (so in ``state_dict()``).
* ``drift_analog_weights(model, t)`` sets every tile to its state ``t``
  seconds after programming, always from the programmed state: drift, 1/f
  read noise, then the drift compensation (a digital factor per column).
  Called before programming, it programs first.

Training (hardware-aware training):

* the weight modifier (``rpu_config.modifier``) perturbs the weights used in
  each training forward, not the stored ones (``modified_tile_weight``);
* ``install_weight_clipping(optimizer, model)`` clips (``rpu_config.clip``)
  and remaps (``rpu_config.remap``) the weights after every optimizer step.

Writing and reading as on a chip:

* ``realistic_write(model)``: closed-loop programming (program and verify)
  of every tile, vectorized over all tiles of a layer;
* ``read_weights(layer)``: least-squares estimate of the weights from noisy
  forward passes.

Every function acts on all ``AnalogLayerBase`` submodules of ``model`` (which
may itself be one layer). The noise is drawn from torch's global generator
(``fxanalog.manual_seed``). Formulas: ``shared/reference/analog-semantics.md``
sections 3 and 4; ``docs/physics.md`` for the choices made here.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from fxanalog import _rng
from fxanalog.config import (
    NoiseManagementType,
    WeightClipType,
    WeightModifierParameter,
    WeightModifierType,
    WeightRemapType,
    resolution_step,
)
from fxanalog.config.noise import BaseNoiseModel, PCMLikeNoiseModel
from fxanalog.tile import layout_tiles, pack_io, unlayout_tiles

__all__ = [
    "analog_layers",
    "program_analog_weights",
    "drift_analog_weights",
    "realistic_write",
    "read_weights",
    "register_write_step",
    "apply_weight_modifier",
    "modified_tile_weight",
    "modifier_active",
    "clip_weights",
    "remap_weights",
    "post_update_step",
    "install_weight_clipping",
]


# --------------------------------------------------------------------------
# Layers and tiles


def analog_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every analog layer of ``model`` (``model`` itself
    included); a layer with no name in the model is named by its
    ``analog_name``."""
    from fxanalog.nn.modules import AnalogLayerBase

    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return [(name or m.analog_name, m) for name, m in model.named_modules() if isinstance(m, AnalogLayerBase)]


def _layers(model: nn.Module, what: str, eval_only: bool) -> list[tuple[str, nn.Module]]:
    layers = analog_layers(model)
    if not layers:
        raise ValueError(f"{what}: the model has no analog layers; convert it first (fxanalog.compile)")
    if eval_only:
        for name, layer in layers:
            if layer.training:
                raise ValueError(
                    f"{what}: layer {name!r} is in training mode; programming and drift act on a "
                    "deployed model: call model.eval() first"
                )
    return layers


class _Blocks:
    """The tiles of a layer's (G, N, K) weights: output pieces x input pieces.

    ``reduce`` gives one value per tile, (G, n_out, n_in); ``expand`` spreads
    such values back over the tile's weights."""

    def __init__(self, in_sizes: Sequence[int], out_sizes: Sequence[int], device):
        self.in_sizes = list(in_sizes)
        self.out_sizes = list(out_sizes)
        self._in = torch.tensor(self.in_sizes, device=device)
        self._out = torch.tensor(self.out_sizes, device=device)
        self.single = len(self.in_sizes) == 1 and len(self.out_sizes) == 1

    def reduce(self, x: Tensor, op: Callable[[Tensor, tuple], Tensor]) -> Tensor:
        if self.single:
            return op(x, (1, 2)).reshape(x.shape[0], 1, 1)
        rows = []
        for xr in x.split(self.out_sizes, dim=1):
            rows.append(torch.stack([op(xb, (1, 2)) for xb in xr.split(self.in_sizes, dim=2)], dim=-1))
        return torch.stack(rows, dim=1)

    def amax(self, x: Tensor) -> Tensor:
        return self.reduce(x, lambda t, d: t.amax(dim=d))

    def mean(self, x: Tensor) -> Tensor:
        return self.reduce(x, lambda t, d: t.mean(dim=d))

    def expand(self, v: Tensor) -> Tensor:
        if self.single:
            return v
        return v.repeat_interleave(self._out, dim=1).repeat_interleave(self._in, dim=2)


def _blocks(layer) -> _Blocks:
    return _Blocks(layer.in_sizes, layer.out_sizes, layer.weight.device)


def _noise_model(layer) -> Optional[BaseNoiseModel]:
    return getattr(layer.rpu_config, "noise_model", None)


def _io(layer) -> tuple[list[float], list[float]]:
    cfg = layer.rpu_config
    cfg.check_tile_config(f"{layer.analog_name}.rpu_config")
    return pack_io(cfg.forward), pack_io(cfg.backward)


def _tile_stack(layer, w: Tensor) -> Tensor:
    """(G, N, K) weights to (G*n_in, 1, p_in, N): every input piece a tile array of its own."""
    G, N, _ = w.shape
    p = max(layer.in_sizes)
    return layout_tiles(w.float(), layer.in_sizes).reshape(G * len(layer.in_sizes), 1, p, N)


def _pad_mask(layer, device) -> Tensor:
    """(n_in, p_in) True on each input piece's real inputs."""
    p = max(layer.in_sizes)
    return torch.arange(p, device=device)[None, :] < torch.tensor(layer.in_sizes, device=device)[:, None]


def _tile_mvm(layer, x: Tensor, tiles: Tensor, col_scale: Optional[Tensor] = None) -> Tensor:
    fwd, bwd = _io(layer)
    p = tiles.shape[2]
    return torch.ops.fxanalog.tile_mvm(x, tiles, [p], list(layer.out_sizes), col_scale, None, fwd, bwd)


def _identity_read(layer, w: Tensor) -> Tensor:
    """Each tile read with the full noisy forward on the identity input.
    Returns (G, K, N): row k is the read of input k (through its own tile)."""
    G, N, K = w.shape
    io = layer.rpu_config.forward
    if io.inp_noise == 0 and io.ir_drop == 0:
        # A one-hot input meets one row of its tile only (no input noise on
        # the zeros, no IR drop along the row): read every row as a tile of
        # one input, the same draws as the identity at a fraction of the cost.
        rows = w.float().transpose(1, 2).reshape(G * K, 1, 1, N)
        ones = torch.ones(G * K, 1, 1, device=w.device)
        return _tile_mvm(layer, ones, rows).reshape(G, K, N)
    n, p = len(layer.in_sizes), max(layer.in_sizes)
    eye = torch.eye(p, device=w.device).expand(G * n, p, p).contiguous()
    y = _tile_mvm(layer, eye, _tile_stack(layer, w)).reshape(G, n * p, N)
    if n * p != K:
        y = y[:, _pad_mask(layer, w.device).reshape(-1)]
    return y


# --------------------------------------------------------------------------
# Programming and drift


def _compensation(layer, w: Tensor, reference: Optional[Tensor]) -> Tensor:
    """With ``reference=None``: the readout of each column block, (G, N).
    Else the compensation factor ``reference / readout`` now, (G, N)."""
    comp = layer.rpu_config.drift_compensation
    y = _identity_read(layer, w)
    G = y.shape[0]
    parts, start = [], 0
    for size in layer.out_sizes:
        yb = y[:, :, start : start + size]
        if reference is None:
            r = comp.readout(yb)
        else:
            r = comp.apply(yb, reference[:, None, start : start + size])
        parts.append(torch.broadcast_to(r, (G, 1, size)).reshape(G, size))
        start += size
    return torch.cat(parts, dim=1).float()


@torch.no_grad()
def _program_layer(layer, model: BaseNoiseModel) -> None:
    target = layer.target_tile_weight().detach().float()
    blocks = _blocks(layer)
    conv = model.converter
    w_max = blocks.amax(target.abs())  # each tile maps its own max|W| to g_max
    scale = conv.scale_ratio(w_max)
    g, _ = conv.convert_to_conductances(target, blocks.expand(w_max))
    nu = model.generate_drift_coefficients(g)
    g_prog = model.apply_programming_noise_to_conductance(g)
    layer.programmed_conductances = g_prog
    layer.drift_exponents = nu
    layer.conductance_scales = scale
    layer.analog_weight = conv.convert_back_to_weights(g_prog, {"scale_ratio": blocks.expand(scale)})
    layer.drift_scales = None
    comp = getattr(layer.rpu_config, "drift_compensation", None)
    layer.drift_reference = None if comp is None else _compensation(layer, layer.analog_weight, None)
    layer._tiles_cache = None


def program_analog_weights(model: nn.Module) -> None:
    """Program every tile of ``model`` (eval mode): draw the programming noise
    and drift exponents of all devices once (vectorized per layer) and keep
    them, with the drift-compensation reference, in the layers' buffers.

    Layers without a noise model (``FloatingPointRPUConfig``) are left as
    they are. Raises ``ValueError`` in training mode."""
    for _, layer in _layers(model, "program_analog_weights", eval_only=True):
        nm = _noise_model(layer)
        if nm is not None:
            layer.rpu_config.check_tile_config(f"{layer.analog_name}.rpu_config")
            _program_layer(layer, nm)


@torch.no_grad()
def drift_analog_weights(model: nn.Module, t_inference: float = 0.0) -> None:
    """Set every tile to its state ``t_inference`` seconds after programming
    (eval mode): drift and 1/f read noise of the noise model, recomputed from
    the programmed state (not cumulative), then the drift compensation.

    A layer not yet programmed is programmed first. Raises ``ValueError`` in
    training mode or for a negative or non-numeric time."""
    if isinstance(t_inference, bool) or not isinstance(t_inference, (int, float)) or not t_inference >= 0:
        raise ValueError(f"drift_analog_weights: t_inference = {t_inference!r}: expected seconds >= 0")
    for _, layer in _layers(model, "drift_analog_weights", eval_only=True):
        nm = _noise_model(layer)
        if nm is None:
            continue
        layer.rpu_config.check_tile_config(f"{layer.analog_name}.rpu_config")
        if layer.programmed_conductances is None:
            _program_layer(layer, nm)
        g = nm.apply_drift_noise_to_conductance(layer.programmed_conductances, layer.drift_exponents,
                                                float(t_inference))
        scale = _blocks(layer).expand(layer.conductance_scales)
        layer.analog_weight = nm.converter.convert_back_to_weights(g, {"scale_ratio": scale})
        comp = getattr(layer.rpu_config, "drift_compensation", None)
        if comp is not None and layer.drift_reference is not None:
            layer.drift_scales = _compensation(layer, layer.analog_weight, layer.drift_reference).reshape(-1)
        else:
            layer.drift_scales = None
        layer._tiles_cache = None


# --------------------------------------------------------------------------
# Realistic read and write


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


def _probe_plan(layer, target: Tensor, tolerance: float) -> tuple[int, int]:
    """Block size k and rounds R of the verify probe of a layer.

    Each probe row drives k inputs of a tile with +-1 (a Hadamard block),
    with k the largest power of two whose output stays in the ADC range
    (4.5 sigma of the target's largest row, so bound management, which would
    add noise, is rarely needed); R rounds of P rows average the read noise
    down to half the tolerance of the smallest tile."""
    p = max(layer.in_sizes)
    P = 1 << (p - 1).bit_length()
    fwd = layer.rpu_config.forward
    if fwd.is_perfect:
        return P, 1
    amp = fwd.inp_bound if fwd.noise_management == NoiseManagementType.NONE else 1.0
    rms = max(float(t.square().mean(dim=2).max().sqrt()) for t in target.split(layer.in_sizes, dim=2))
    k = P
    if fwd.out_bound > 0:
        while k > 1 and 4.5 * math.sqrt(k) * rms * amp > fwd.out_bound:
            k //= 2
    dy = resolution_step(fwd.out_res) * 2 * fwd.out_bound if fwd.out_bound > 0 else 0.0
    noise = math.sqrt(fwd.out_noise**2 + dy**2 / 12 + fwd.inp_noise**2 * rms**2 * k) / amp
    t_max = max(float(target.abs().amax()), 1e-12) if _blocks(layer).single else max(
        float(_blocks(layer).amax(target.abs()).clamp(min=1e-12).min()), 1e-12)
    goal = tolerance * t_max / 2
    R = max(1, min(64, math.ceil((noise / goal) ** 2 / k)))
    return k, R


def _probe_read(layer, w: Tensor, k: int, R: int) -> Tensor:
    """Estimate of every tile's (G, N, K) weights ``w`` from one noisy forward
    of each tile on a randomized block-Hadamard probe: R rounds of P =
    2^ceil(log2 p_in) rows, ``X_r = (I (x) H_k) D_r`` (Hadamard blocks of size
    k, random column signs D_r, entries +-a: a = 1, or inp_bound without noise
    management). ``X^T X = R k a^2 I``, so ``W^T = X^T Y / (R k a^2)`` is the
    least-squares estimate, exact for a noise-free tile.

    A probe row drives only the k inputs of its block; without input noise
    and IR drop (which involve the idle inputs) the tile's forward on it is
    the forward of the k-input sub-tile, which is what is computed then."""
    G, N, K = w.shape
    n, p = len(layer.in_sizes), max(layer.in_sizes)
    P = 1 << (p - 1).bit_length()
    fwd = layer.rpu_config.forward
    amp = fwd.inp_bound if fwd.noise_management == NoiseManagementType.NONE else 1.0
    h = _hadamard(k, w.device)
    real = torch.zeros(n, P, dtype=torch.bool, device=w.device)
    real[:, :p] = _pad_mask(layer, w.device)
    signs = torch.randint(0, 2, (G * n, R, P), device=w.device).mul_(2).sub_(1).float()
    signs.mul_(real.repeat(G, 1).unsqueeze(1) * amp)
    if fwd.inp_noise == 0 and fwd.ir_drop == 0:
        B = G * n * (P // k)  # sub-tiles of k inputs
        tiles = torch.zeros(G * n, P, N, device=w.device)
        tiles[:, :p] = layout_tiles(w.float(), layer.in_sizes).reshape(G * n, p, N)
        tiles = tiles.reshape(B, 1, k, N)
        d = signs.reshape(G * n, R, P // k, k).transpose(1, 2).reshape(B, R, 1, k)
        x = (h * d).reshape(B, R * k, k)
        y = _tile_mvm(layer, x, tiles).reshape(B, R, k, N)
        est = (torch.matmul(h, y) * d.transpose(2, 3)).sum(dim=1)  # (B, k, N)
        est = est.reshape(G * n, P, N)[:, :p]
    else:
        x = (torch.block_diag(*([h] * (P // k))) * signs.unsqueeze(2))[..., :p].reshape(G * n, R * P, p)
        y = _tile_mvm(layer, x, _tile_stack(layer, w)).reshape(G * n, R, P // k, k, N)
        z = torch.matmul(h, y).reshape(G * n, R, P, N)[:, :, :p]  # H_k symmetric: X^T Y by blocks
        est = (z * signs[..., :p].unsqueeze(-1)).sum(dim=1)
    est = est.div_(R * k * amp * amp * fwd.out_scale)  # (G*n, p, N)
    return unlayout_tiles(est.reshape(G, n, p, N), layer.in_sizes)


WriteStep = Callable[[nn.Module, Tensor, Tensor], Tensor]
_WRITE_STEPS: dict[str, WriteStep] = {}


def register_write_step(tile_kind: str, step: WriteStep) -> None:
    """Register how tiles of a config's ``tile_kind`` are written in the
    closed loop: ``step(layer, w_new, w_max) -> w_written``, all (G, N, K)
    tile units; ``w_max`` is each tile's target range."""
    _WRITE_STEPS[tile_kind] = step


def _write_exact(layer, w_new: Tensor, w_max: Tensor) -> Tensor:
    return w_new


def _write_programmed(layer, w_new: Tensor, w_max: Tensor) -> Tensor:
    """Program the corrected targets with the noise model's programming noise."""
    nm = _noise_model(layer)
    conv = nm.converter
    g, params = conv.convert_to_conductances(w_new, w_max)
    return conv.convert_back_to_weights(nm.apply_programming_noise_to_conductance(g), params)


register_write_step("floating_point", _write_exact)
register_write_step("inference", _write_programmed)


@torch.no_grad()
def _write_layer(layer, tolerance: float, max_iterations: int) -> dict:
    kind = type(layer.rpu_config).tile_kind
    if kind not in _WRITE_STEPS:
        raise ValueError(
            f"realistic_write: layer {layer.analog_name!r} has a {type(layer.rpu_config).__name__} "
            f"(tile kind {kind!r}); closed-loop writing knows the tile kinds {sorted(_WRITE_STEPS)}"
        )
    step = _WRITE_STEPS[kind]
    target = layer.target_tile_weight().detach().float()
    blocks = _blocks(layer)
    t_max = blocks.amax(target.abs())
    t_max = torch.where(t_max > 0, t_max, torch.ones_like(t_max))
    t_max_e = blocks.expand(t_max)
    band = tolerance * t_max_e
    w = torch.empty_like(target).uniform_(-0.01, 0.01)
    done = torch.zeros_like(t_max, dtype=torch.bool)
    final = torch.zeros_like(t_max)  # each tile's error when it was found done (or the last one)
    verified = torch.zeros_like(target, dtype=torch.bool)
    k, R = _probe_plan(layer, target, tolerance)
    iterations = 0
    while True:
        e = _probe_read(layer, w, k, R) - target
        err = blocks.mean(e.abs()) / t_max
        final = torch.where(done, final, err)
        done |= err < tolerance
        if bool(done.all()) or iterations >= max_iterations:
            break
        # Program and verify: a device read within the band is verified and
        # left alone; the others of the tiles not yet within tolerance are
        # rewritten, aiming at the corrected target.
        verified |= e.abs() <= band
        redo = ~verified & ~blocks.expand(done)
        w = torch.where(redo, step(layer, w - e, t_max_e), w)
        iterations += 1
    layer.clear_analog_state()
    layer.set_tile_weight(w)
    return {"iterations": iterations, "error": float(final.max())}


def realistic_write(model: nn.Module, tolerance: float = 0.01, max_iterations: int = 100) -> dict[str, dict]:
    """Write every layer's weights by closed-loop programming (section 4).

    From a random state U(-0.01, 0.01), repeat for all tiles of a layer at
    once: read the tiles with the noisy forward, ``e = read - target``; a
    tile is done once ``mean|e| / max|target| < tolerance``; in the others
    every device with ``|e| > tolerance * max|target|`` is rewritten to
    ``w - e``, carrying the noise model's programming noise (inference
    configs) or exactly (floating-point configs). The written weights replace
    the layer's digital weights (the programmed state is cleared).

    Returns ``{layer name: {"iterations": writes, "error": max over tiles of
    the measured relative error when the tile was found done (or the last
    one)}}`` and stores each on the layer as
    ``layer.programming_report``.
    """
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"realistic_write: tolerance = {tolerance!r}: expected a number > 0")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"realistic_write: max_iterations = {max_iterations!r}: expected a whole number >= 1")
    reports = {}
    for name, layer in _layers(model, "realistic_write", eval_only=False):
        report = _write_layer(layer, float(tolerance), max_iterations)
        layer.programming_report = report
        reports[name] = report
    return reports


@torch.no_grad()
def read_weights(layer, chunk_rows: int = 4096) -> tuple[Tensor, Optional[Tensor]]:
    """Estimate a layer's effective weights from noisy forward passes
    (section 4): each tile gets X ~ N(0, 1) of shape (10 n_in, n_in) through
    its full forward (digital scales, drift compensation and output scaling
    included, no bias); ``W_hat = lstsq(X, Y)^T``, solved per tile by the
    normal equations in float64. Returns the weights in the layer's weight
    shape and a copy of the bias."""
    from fxanalog.nn.modules import AnalogLayerBase

    if not isinstance(layer, AnalogLayerBase):
        raise TypeError(f"read_weights: expected an analog layer, got {type(layer).__name__}")
    G, N, K = layer.groups, *layer.tile_shape
    n, p = len(layer.in_sizes), max(layer.in_sizes)
    was_training = layer.training
    layer.eval()
    try:
        w = layer.tile_weight().detach().float()
        tiles = _tile_stack(layer, w)
        col = layer.digital_col_scale()
        if col is not None:
            col = torch.broadcast_to(col.float().reshape(-1, 1, N) if col.numel() > 1 else col.float(),
                                     (G, n, N)).reshape(G * n * N)
        mask = _pad_mask(layer, w.device).repeat(G, 1).unsqueeze(1).float()  # (G*n, 1, p)
        xtx = torch.zeros(G * n, p, p, dtype=torch.float64, device=w.device)
        xty = torch.zeros(G * n, p, N, dtype=torch.float64, device=w.device)
        rows = 10 * p
        for start in range(0, rows, chunk_rows):
            m = min(chunk_rows, rows - start)
            x = torch.randn(G * n, m, p, device=w.device) * mask
            y = _tile_mvm(layer, x, tiles, col)
            xd = x.double()
            xtx.baddbmm_(xd.transpose(1, 2), xd)
            xty.baddbmm_(xd.transpose(1, 2), y.double())
        # Pads carry no input: a unit diagonal there gives them weight 0.
        xtx.diagonal(dim1=1, dim2=2).add_(1.0 - mask[:, 0].double())
        est = torch.linalg.solve(xtx, xty).float()  # (G*n, p, N)
        est = unlayout_tiles(est.reshape(G, n, p, N), layer.in_sizes)  # (G, N, K)
        if layer.out_scaling_alpha is not None:
            a = layer.out_scaling_alpha.detach().float()
            est = est * (a.reshape(G, -1, 1) if a.numel() > 1 else a)
    finally:
        layer.train(was_training)
    b = None if layer.bias is None else layer.bias.detach().clone()
    return layer.matrix_to_weight(est).to(layer.weight.dtype), b


# --------------------------------------------------------------------------
# Weight modifier (training forwards)


def modifier_active(modifier: WeightModifierParameter) -> bool:
    """Whether the modifier changes the weights at all."""
    return modifier.type not in (WeightModifierType.NONE, WeightModifierType.COPY) or modifier.pdrop > 0


@torch.no_grad()
def apply_weight_modifier(
    weights: Tensor,
    modifier: WeightModifierParameter,
    in_sizes: Optional[Sequence[int]] = None,
    out_sizes: Optional[Sequence[int]] = None,
    noise_model: Optional[BaseNoiseModel] = None,
) -> Tensor:
    """The modified copy of ``weights`` ((N, K) one tile, or (G, N, K) with
    the tile split ``in_sizes`` / ``out_sizes``); ``amax`` is each tile's
    max|w| (``rel_to_actual_wmax``) or ``assumed_wmax``:

    DISCRETIZE ``amax rint(w/amax/res) res``; ADD_NORMAL ``w + std amax xi``;
    MULT_NORMAL ``w + w std amax xi``; DISCRETIZE_ADD_NORMAL both;
    POLY ``w + amax std sum_k c_k (|w|/amax)^k xi``; PCM_NOISE the PCM
    programming noise of ``noise_model`` (or ``PCMLikeNoiseModel()``) with
    ``prog_noise_scale = std_dev`` on the tile's conductance pairs;
    DROP_CONNECT and any ``pdrop > 0``: each weight set to 0 with probability
    ``pdrop``.
    """
    modifier.validate("WeightModifierParameter")
    w = weights.float()
    squeeze = w.dim() == 2
    if squeeze:
        w = w.unsqueeze(0)
    if w.dim() != 3:
        raise ValueError(f"apply_weight_modifier: weights of shape {tuple(weights.shape)}: expected (N, K) or (G, N, K)")
    blocks = _Blocks(in_sizes or [w.shape[2]], out_sizes or [w.shape[1]], w.device)
    if modifier.rel_to_actual_wmax:
        amax = blocks.amax(w.abs())
        amax = blocks.expand(torch.where(amax > 0, amax, torch.ones_like(amax)))
    else:
        amax = torch.full_like(w[:1, :1, :1], float(modifier.assumed_wmax))
    t, std = modifier.type, float(modifier.std_dev)
    out = w.clone()
    if t in (WeightModifierType.DISCRETIZE, WeightModifierType.DISCRETIZE_ADD_NORMAL):
        res = resolution_step(modifier.res)
        if res > 0:
            q = w / amax / res
            if modifier.sto_round:
                q = q + torch.rand_like(q) - 0.5
            out = amax * torch.round(q) * res
    if t in (WeightModifierType.ADD_NORMAL, WeightModifierType.DISCRETIZE_ADD_NORMAL) and std > 0:
        out = out + std * amax * _rng.randn(w.shape, dtype=w.dtype, device=w.device)
    elif t == WeightModifierType.MULT_NORMAL and std > 0:
        out = w + w * std * amax * _rng.randn(w.shape, dtype=w.dtype, device=w.device)
    elif t == WeightModifierType.POLY and std > 0 and modifier.coeffs:
        a = w.abs() / amax
        sig = torch.zeros_like(w)
        for k, c in enumerate(modifier.coeffs):
            sig = sig + float(c) * a.pow(k)
        out = w + amax * std * sig * _rng.randn(w.shape, dtype=w.dtype, device=w.device)
    elif t == WeightModifierType.PCM_NOISE and std > 0:
        base = noise_model if isinstance(noise_model, PCMLikeNoiseModel) else PCMLikeNoiseModel()
        pcm = PCMLikeNoiseModel(prog_coeff=list(base.prog_coeff), g_converter=base.g_converter,
                                g_max=base.g_max, prog_noise_scale=std)
        g, params = pcm.converter.convert_to_conductances(w, amax)
        out = pcm.converter.convert_back_to_weights(pcm.apply_programming_noise_to_conductance(g), params)
    if modifier.pdrop > 0:
        out = out.masked_fill(torch.rand_like(out) < modifier.pdrop, 0.0)
    return out[0] if squeeze else out


def modified_tile_weight(layer, draws: int = 1) -> Tensor:
    """The layer's tile weights with its weight modifier applied, for one
    forward pass; the gradient passes straight through to the stored weights.
    ``draws > 1`` (``per_batch_sample``): that many independent perturbations,
    ``(draws * G, N, K)``, copy-major."""
    w = layer.tile_weight()
    if draws > 1:
        w = w.repeat(draws, 1, 1)
    mod = apply_weight_modifier(w.detach(), layer.rpu_config.modifier, layer.in_sizes, layer.out_sizes,
                                _noise_model(layer))
    return w + (mod.to(w.dtype) - w).detach()


# --------------------------------------------------------------------------
# Clipping and remapping (after optimizer steps)


def _clip_bound(w: Tensor, clip, blocks: _Blocks) -> Optional[Tensor]:
    if clip.type == WeightClipType.FIXED_VALUE:
        return torch.full_like(w[:1, :1, :1], float(clip.fixed_value))
    if clip.type == WeightClipType.LAYER_GAUSSIAN:
        std = blocks.reduce(w, lambda t, d: t.std(dim=d, correction=0))
        return blocks.expand(clip.sigma * std)
    if clip.type == WeightClipType.AVERAGE_CHANNEL_MAX:
        # mean over the tile's rows of each row's max|w| within the tile
        return blocks.expand(blocks.reduce(w.abs(), lambda t, d: t.amax(dim=2).mean(dim=1)))
    return None


@torch.no_grad()
def clip_weights(model: nn.Module) -> None:
    """Clip the tile weights of every layer whose config asks for it
    (``rpu_config.clip``), per tile: FIXED_VALUE to +-fixed_value,
    LAYER_GAUSSIAN to +-sigma std(w) (population std), AVERAGE_CHANNEL_MAX to
    +- the mean over rows of max|w_row|."""
    for _, layer in analog_layers(model):
        clip = getattr(layer.rpu_config, "clip", None)
        if clip is None or clip.type == WeightClipType.NONE:
            continue
        clip.validate(f"{layer.analog_name}.rpu_config.clip")
        w = layer.target_tile_weight().detach().float()
        bound = _clip_bound(w, clip, _blocks(layer))
        layer.set_tile_weight(torch.maximum(torch.minimum(w, bound), -bound))


@torch.no_grad()
def remap_weights(model: nn.Module) -> None:
    """Remap the tile weights of every layer whose config asks for it
    (``rpu_config.remap``): LAYERWISE_SYMMETRIC divides the layer's tile
    weights by ``s = max|w| / remapped_wmax``, CHANNELWISE_SYMMETRIC each
    output row by its own ``s``; ``s`` goes into the digital mapping scales,
    so the effective weights do not change."""
    for _, layer in analog_layers(model):
        remap = getattr(layer.rpu_config, "remap", None)
        if remap is None or remap.type == WeightRemapType.NONE:
            continue
        where = f"{layer.analog_name}.rpu_config.remap"
        remap.validate(where)
        if remap.max_scale_range != 0 or remap.max_scale_ref != 0:
            raise ValueError(
                f"{where}: max_scale_range = {remap.max_scale_range!r}, max_scale_ref = "
                f"{remap.max_scale_ref!r}: limits on the remapping scales are not supported; expected 0.0"
            )
        w = layer.target_tile_weight().detach().float()
        if remap.type == WeightRemapType.LAYERWISE_SYMMETRIC:
            m = w.abs().amax().reshape(1)
        else:
            m = w.abs().amax(dim=-1).reshape(-1)
        s = m / remap.remapped_wmax
        s = torch.where(s > 0, s, torch.ones_like(s))
        old = layer.mapping_scales
        layer.mapping_scales = s if old is None else old.float() * s
        layer._tiles_cache = None


def post_update_step(model: nn.Module) -> None:
    """What follows an optimizer step: clipping, then remapping."""
    clip_weights(model)
    remap_weights(model)


def install_weight_clipping(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Run ``post_update_step(model)`` (clipping and remapping) after every
    ``optimizer.step()``, for any torch optimizer. Returns the hook's handle
    (``handle.remove()`` uninstalls it)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"install_weight_clipping: expected a torch optimizer, got {type(optimizer).__name__}")
    analog_layers(model)  # type check
    return optimizer.register_step_post_hook(lambda opt, args, kwargs: post_update_step(model))
