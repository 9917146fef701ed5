"""An independent, deliberately simple implementation of one tile's forward
(docs/tile.md, "One tile, one input vector"), one input vector at a
time, in float64, without noise. Tests compare fxanalog against it; it shares
no code with fxanalog."""

from __future__ import annotations

import math

import numpy as np
import torch


def _step(res: float, bound: float) -> float:
    if res <= 0:
        return 0.0
    if res > 1:
        res = 1.0 / res
    return res * 2 * bound


def _f32(v: float) -> np.float32:
    return np.float32(v)


def _step32(res: float, bound: float) -> np.float32:
    """The step as aihwkit's C++ tile holds it: float32 resolution (inverted
    in float32 when > 1) times the float32 range 2 * bound."""
    r = _f32(res)
    if r > 1:
        r = np.float32(1) / r
    return r * (np.float32(2) * _f32(bound))


def _saturated(y: torch.Tensor, dy: float, io) -> bool:
    """aihwkit's bound test on the quantized output: the value held in
    float32 (level times the float32 step when quantized) strictly greater
    than the float32 bound."""
    if dy > 0:
        levels = torch.round(y / dy).numpy().astype(np.float32)
        value = levels * _step32(io.out_res, io.out_bound)
    else:
        value = y.numpy().astype(np.float32)
    return bool((np.abs(value) > _f32(io.out_bound)).any())


def reference_tile(x: torch.Tensor, w: torch.Tensor, io) -> torch.Tensor:
    """x: (B, K), w: (N, K) -> (B, N), noise-free (noise fields must be 0)."""
    assert io.inp_noise == 0 and io.out_noise == 0 and io.w_noise == 0
    x = x.double()
    w = w.double()
    if io.is_perfect:
        return x @ w.T * io.out_scale
    nm = io.noise_management.name
    dx = _step(io.inp_res, io.inp_bound)
    dy = _step(io.out_res, io.out_bound) if io.out_bound > 0 else 0.0
    limit = io.max_bm_factor if dx == 0 else min(io.max_bm_factor, io.max_bm_res / dx)
    alphas = []
    for row in x:
        if nm == "ABS_MAX":
            a = row.abs().max().item()
            a = min(a, io.nm_thres) if io.nm_thres > 0 else a
        elif nm == "MAX":
            a = row.max().item()
            a = min(a, io.nm_thres) if io.nm_thres > 0 else a
        elif nm == "CONSTANT":
            a = io.nm_thres
        else:
            a = 1.0
        alphas.append(a)
    if all(a == 0 for a in alphas):
        return torch.zeros(x.shape[0], w.shape[0], dtype=torch.float64)
    out = []
    n = w.shape[1]
    for row, a in zip(x, alphas):
        a = a if a > 0 else 1.0
        r = 1
        while True:
            v = row * (1.0 / (a * r))
            if dx > 0:
                v = torch.round(v / dx) * dx
            v = v.clamp(-io.inp_bound, io.inp_bound)
            y = w @ v
            if io.ir_drop > 0:
                j = torch.arange(n, dtype=torch.float64)
                aa = (n / io.ir_drop_g_ratio) * (w.abs() @ v.abs())
                c = aa * (aa * (0.05 * aa - 0.2) + 0.5)
                y = y - io.ir_drop * c * (w @ (v * (1 - (1 - j / n) ** 2)))
            if io.out_nonlinearity > 0:
                y = y / (1 + (io.out_nonlinearity * y).abs())
            if dy > 0:
                y = torch.round(y / dy) * dy
            saturated = False
            if io.out_bound > 0:
                saturated = _saturated(y, dy, io)  # strict, as aihwkit: an output at the bound is fine
                y = y.clamp(-io.out_bound, io.out_bound)
            last = r > limit
            if io.bound_management.name == "ITERATIVE" and saturated and not last:
                r *= 2
                continue
            break
        out.append(y * io.out_scale * a * r)
    return torch.stack(out)


def balanced_split(size: int, max_size: int) -> list[int]:
    """aihwkit's rule, written out again: n = ceil(size/max), remainder to the first pieces."""
    if max_size <= 0 or size <= max_size:
        return [size]
    n = math.ceil(size / max_size)
    return [size // n + (1 if k < size % n else 0) for k in range(n)]


def reference_tile_array(x, w, io, max_in: int, max_out: int, bias=None) -> torch.Tensor:
    """A layer as a loop over its tiles: partial sums over input pieces added
    digitally, outputs of the output pieces concatenated, one bias."""
    ins = balanced_split(w.shape[1], max_in)
    outs = balanced_split(w.shape[0], max_out)
    cols = []
    o0 = 0
    for no in outs:
        acc = 0
        i0 = 0
        for ni in ins:
            acc = acc + reference_tile(x[:, i0 : i0 + ni], w[o0 : o0 + no, i0 : i0 + ni], io)
            i0 += ni
        cols.append(acc)
        o0 += no
    y = torch.cat(cols, dim=1)
    if bias is not None:
        y = y + bias.double()
    return y
