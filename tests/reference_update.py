"""An independent, deliberately simple implementation of the pulsed update
of one tile (docs/training.md), for the tests: Python loops over rows,
slots, error lines and input lines, one pulse at a time, in float64, from
given pulse trains. It shares no code with fxanalog.

``fire_x[b][t][j]`` / ``fire_d[b][t][i]``: whether input line j / error
line i fires in slot t of row b. Pulses are applied in aihwkit's order: for
each row, for each slot, for each firing error line, for each firing input
line. ``noise(pulse_index)`` gives the cycle-to-cycle draw of each pulse
(zero for a noise-free comparison).
"""

from __future__ import annotations

import math


def step(kind: str, w: float, down: bool, p: dict, xi: float) -> float:
    """One pulse at one cross-point, then its clip. ``p``: the cross-point's
    parameters (b_max, b_min, scale_up, scale_down, and per kind: slope_up,
    slope_down; gamma_up, gamma_down; a, b, A_up, A_down, g_up, g_down) and
    dw_min_std ``sd``."""
    sd = p["sd"]
    if kind == "constant":
        w = w - p["scale_down"] * (1 + sd * xi) if down else w + p["scale_up"] * (1 + sd * xi)
    elif kind == "linear":  # multiplicative noise
        if down:
            w = w - (p["slope_down"] * w + p["scale_down"]) * (1 + sd * xi)
        else:
            w = w + (p["slope_up"] * w + p["scale_up"]) * (1 + sd * xi)
    elif kind == "exp":
        span = p["b_max"] - p["b_min"]
        if span <= 0:
            return w
        z = 2 * w / span * p["a"] + p["b"]
        if down:
            y = max(1 - p["A_down"] * math.exp(-p["g_down"] * z), 0.0)
            w = w - y * (1 + sd * xi) * p["scale_down"]
        else:
            y = max(1 - p["A_up"] * math.exp(p["g_up"] * z), 0.0)
            w = w + y * (1 + sd * xi) * p["scale_up"]
    elif kind == "pow":
        span = p["b_max"] - p["b_min"]
        if span == 0:
            return w
        if down:
            w = w - p["scale_down"] * ((w - p["b_min"]) / span) ** p["gamma_down"] * (1 + sd * xi)
        else:
            w = w + p["scale_up"] * ((p["b_max"] - w) / span) ** p["gamma_up"] * (1 + sd * xi)
    else:
        raise ValueError(kind)
    return min(max(w, p["b_min"]), p["b_max"])


def reference_update(kind, w, x, d, fire_x, fire_d, params, lr_sign=1, noise=lambda k: 0.0):
    """w: list of N lists of K floats (changed and returned); x: B lists of
    K; d: B lists of N; params[i][j]: the cross-point's parameter dict."""
    k = 0
    for b in range(len(x)):
        for t in range(len(fire_x[b])):
            for i in range(len(w)):
                if not fire_d[b][t][i]:
                    continue
                for j in range(len(w[0])):
                    if not fire_x[b][t][j]:
                        continue
                    down = (d[b][i] > 0) == (x[b][j] > 0)
                    if lr_sign < 0:
                        down = not down
                    w[i][j] = step(kind, w[i][j], down, params[i][j], noise(k))
                    k += 1
    return w
