"""Make tests/data/aihwkit_unit_cells.json with aihwkit 1.1.0 (run in a venv
with aihwkit, not in fxanalog's): the hidden weights of every device, the
layer's weights and mixed precision's chi after the steps of each case of
tests/aihwkit_cases.py.

    python scripts/aihwkit_unit_cells_golden.py tests/data/aihwkit_unit_cells.json
"""

import json
import os
import sys
import types

import torch
from aihwkit.nn import AnalogLinear
from aihwkit.optim import AnalogSGD
from aihwkit.simulator import configs
from aihwkit.simulator.parameters import enums

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import aihwkit_cases  # noqa: E402

ns = types.SimpleNamespace(**{n: getattr(configs, n) for n in dir(configs) if not n.startswith("_")})
ns.PulseType, ns.VectorUnitCellUpdatePolicy = enums.PulseType, enums.VectorUnitCellUpdatePolicy


def run(cfg, n_steps: int, lr: float) -> dict:
    cfg.forward = configs.IOParameters(is_perfect=True)
    cfg.backward = configs.IOParameters(is_perfect=True)
    cfg.update = aihwkit_cases.update(ns)
    cfg.mapping.weight_scaling_omega = 0.0
    layer = AnalogLinear(6, 4, bias=False, rpu_config=cfg)
    layer.set_weights(aihwkit_cases.initial_weights(torch))
    opt = AnalogSGD(layer.parameters(), lr=lr)
    opt.regroup_param_groups(layer)
    for x, g in aihwkit_cases.steps(torch, n_steps):
        opt.zero_grad()
        (layer(x) * g).sum().backward()
        opt.step()
    hidden = next(layer.analog_tiles()).get_hidden_parameters()
    return {"weight": layer.get_weights()[0].tolist(),
            "hidden": {k: v.tolist() for k, v in hidden.items() if k.startswith("hidden_weights")}}


if __name__ == "__main__":
    out = {name: run(*case) for name, case in aihwkit_cases.cases(ns).items()}
    out["_about"] = {"aihwkit": __import__("aihwkit").__version__, "torch": torch.__version__}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
