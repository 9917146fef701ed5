"""The unit cells against aihwkit 1.1.0's C++ CPU tile: the cases of
tests/aihwkit_cases.py (deterministic pulses, exact devices, perfect reads)
give the same device weights, layer weights and digital chi as aihwkit's
(tests/data/aihwkit_unit_cells.json, made by
scripts/aihwkit_unit_cells_golden.py). Every pulse is a whole dw_min, so the
weights agree to float32 rounding or differ by at least 0.01."""

from __future__ import annotations

import json
import os
import types

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog import config
from fxanalog.optim import AnalogSGD

import aihwkit_cases

GOLDEN = json.load(open(os.path.join(os.path.dirname(__file__), "data", "aihwkit_unit_cells.json")))
NS = types.SimpleNamespace(**{n: getattr(config, n) for n in config.__all__})


@pytest.mark.parametrize("name", sorted(aihwkit_cases.cases(NS)))
def test_unit_cell_matches_aihwkit(name):
    cfg, n_steps, lr = aihwkit_cases.cases(NS)[name]
    cfg.forward = config.IOParameters(is_perfect=True)
    cfg.backward = config.IOParameters(is_perfect=True)
    cfg.update = aihwkit_cases.update(NS)
    linear = nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        linear.weight.copy_(aihwkit_cases.initial_weights(torch))
    layer = fxanalog.convert_to_analog(linear, cfg).analog_weight
    opt = AnalogSGD(layer.parameters(), lr=lr)
    for x, g in aihwkit_cases.steps(torch, n_steps):
        opt.zero_grad()
        (layer(x) * g).sum().backward()
        opt.step()
    gold = GOLDEN[name]
    torch.testing.assert_close(layer.weight.detach(), torch.tensor(gold["weight"]), rtol=0, atol=1e-5)
    state = layer.tile.device_state
    for key, value in gold["hidden"].items():
        if key.endswith("chi"):
            mine = state.chi[0]
        else:
            mine = state.weights[int(key.rsplit("_", 1)[1]), 0]
        torch.testing.assert_close(mine, torch.tensor(value), rtol=0, atol=1e-5, msg=f"{name}: {key}")
