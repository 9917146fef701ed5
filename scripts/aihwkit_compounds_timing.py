"""The aihwkit anchor of bench/bench_compounds.py (run in a venv with aihwkit 1.1.0, not fxanalog's):
one training step of a 2048 x 2048 AnalogLinear, batch 64, lr 0.1, SoftBounds devices, with
SingleRPUConfig, TransferCompound, VectorUnitCell (2) and MixedPrecisionCompound (aihwkit's defaults),
against nn.Linear + SGD, round-robin best-of, as bench/bench_compounds.py.

    python scripts/aihwkit_compounds_timing.py [size 2048] [repeat 5]
"""
import sys, time, functools, json
import torch
import torch.nn.functional as F
from aihwkit.nn import AnalogLinear
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import (SingleRPUConfig, UnitCellRPUConfig, SoftBoundsDevice, TransferCompound,
                                       VectorUnitCell, DigitalRankUpdateRPUConfig, MixedPrecisionCompound)
torch.set_num_threads(2)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 5
torch.manual_seed(0)
x, t = torch.randn(64, n), torch.randn(64, n)
def step(m, opt):
    opt.zero_grad(); F.mse_loss(m(x), t).backward(); opt.step()
cases = {}
d = torch.nn.Linear(n, n); cases["digital"] = functools.partial(step, d, torch.optim.SGD(d.parameters(), lr=0.1))
for name, cfg in [("single", SingleRPUConfig(device=SoftBoundsDevice())),
                  ("transfer", UnitCellRPUConfig(device=TransferCompound(unit_cell_devices=[SoftBoundsDevice(), SoftBoundsDevice()]))),
                  ("vector2", UnitCellRPUConfig(device=VectorUnitCell(unit_cell_devices=[SoftBoundsDevice(), SoftBoundsDevice()]))),
                  ("mixedprec", DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(device=SoftBoundsDevice())))]:
    m = AnalogLinear(n, n, bias=True, rpu_config=cfg); opt = AnalogSGD(m.parameters(), lr=0.1); opt.regroup_param_groups(m)
    cases[name] = functools.partial(step, m, opt)
for f in cases.values(): f()
best = {k: 1e9 for k in cases}
for _ in range(repeat):
    for k, f in cases.items():
        t0 = time.perf_counter(); f(); best[k] = min(best[k], time.perf_counter() - t0)
print(json.dumps({k: {"ms": v * 1e3, "ratio": v / best["digital"]} for k, v in best.items()}, indent=1))
