"""CPU benchmark of one training step with unit cells against digital SGD.

The protocol of ``bench/bench_training.py`` (one step, forward, backward and
optimizer step, of one linear layer, batch 64, x ~ N(0, 1), a random
target, MSE loss, learning rate 0.1, CPU with 2 threads, ``--repeat``
round-robin runs, medians) for a 2048 x 2048 layer (4 x 4 tiles of 512 x 512)
on default ``SoftBoundsDevice`` devices:

- digital: ``nn.Linear`` + ``torch.optim.SGD`` (the baseline of every ratio);
- one device per weight: ``SingleRPUConfig`` (for reference);
- Tiki-Taka: ``UnitCellRPUConfig(device=TransferCompound(...))`` with two
  devices and aihwkit's defaults (one column of every tile read and
  transferred after every batch): target at most 3x digital;
- ``VectorUnitCell`` of two devices (both pulsed with the same trains);
- mixed precision: ``DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(...))``
  (every row of chi transferred after every batch).

Run: python bench/bench_compounds.py [--threads 2] [--repeat 21] [--size 2048]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from bench_training import round_robin  # noqa: E402

from fxanalog import (  # noqa: E402
    DigitalRankUpdateRPUConfig,
    MixedPrecisionCompound,
    SingleRPUConfig,
    SoftBoundsDevice,
    TransferCompound,
    UnitCellRPUConfig,
    VectorUnitCell,
)
from fxanalog.nn import AnalogLinear  # noqa: E402
from fxanalog.optim import AnalogSGD  # noqa: E402

CONFIGS = {
    "SingleRPUConfig (1 device)": lambda: SingleRPUConfig(device=SoftBoundsDevice()),
    "TransferCompound (Tiki-Taka)": lambda: UnitCellRPUConfig(
        device=TransferCompound(unit_cell_devices=[SoftBoundsDevice(), SoftBoundsDevice()])),
    "VectorUnitCell (2, ALL)": lambda: UnitCellRPUConfig(
        device=VectorUnitCell(unit_cell_devices=[SoftBoundsDevice(), SoftBoundsDevice()])),
    "MixedPrecisionCompound": lambda: DigitalRankUpdateRPUConfig(
        device=MixedPrecisionCompound(device=SoftBoundsDevice())),
}


def steps(n: int) -> dict:
    """The step of every case on the same data, as functions."""
    torch.manual_seed(0)
    x, target = torch.randn(64, n), torch.randn(64, n)
    digital = nn.Linear(n, n)

    def step(model, opt):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        opt.step()

    out = {"digital": functools.partial(step, digital, torch.optim.SGD(digital.parameters(), lr=0.1))}
    for name, make in CONFIGS.items():
        analog = AnalogLinear.from_digital(digital, make())
        out[name] = functools.partial(step, analog, AnalogSGD(analog.parameters(), lr=0.1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = args.size
    print(f"one training step of a {n} x {n} layer, batch 64, lr 0.1, SoftBounds devices, {args.threads} threads, "
          f"torch {torch.__version__}")
    times = round_robin(steps(n), args.repeat)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    print(f"{'case':>30} | {'ms':>8} | {'/ digital':>9} | {'best':>6}")
    print("-" * 63)
    for name in times:
        print(f"{name:>30} | {med[name] * 1e3:8.2f} | {med[name] / med['digital']:8.2f}x | "
              f"{best[name] / best['digital']:5.2f}x")
    print("ms: medians of the round-robin runs; / digital: of the medians; best: of the best runs")
    print("target: TransferCompound at most 3x the digital step")


if __name__ == "__main__":
    main()
