"""CPU benchmark of one training step on pulsed devices against digital SGD.

One training step (forward, backward, optimizer step) of one linear layer,
batch 64, x ~ N(0, 1), a random target, mean-squared-error loss, learning
rate 0.1, on CPU with 2 threads (``--threads``):

- digital: ``nn.Linear`` + ``torch.optim.SGD``;
- analog: ``AnalogLinear`` with ``SingleRPUConfig(device=...)`` (its default
  noisy 7/9-bit forward and backward periphery, the default mapping of
  512 x 512 tiles) + ``fxanalog.optim.AnalogSGD``: the pulsed update of every
  tile with its recorded (x, d), exact pulse by pulse.

For 512 x 512 and 2048 x 2048 layers and ConstantStep and SoftBounds devices
(their defaults), it prints the digital step in ms and the analog step as a
ratio to it (target: at most 2x), then where the analog step's time goes
(forward, backward, the pulsed update's kernel: management, pulse trains and
pulses, and the rest of the optimizer step). The cases are timed round-robin,
``--repeat`` runs each, so that a busy moment slows them alike; the ratio is
that of the medians (and of the best runs, which one lucky run can move).

Run: python bench/bench_training.py [--threads 2] [--repeat 41]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import fxanalog  # noqa: E402
import fxanalog.ops.tile_update_torch as update_torch  # noqa: E402
from fxanalog import ConstantStepDevice, SingleRPUConfig, SoftBoundsDevice  # noqa: E402
from fxanalog.nn import AnalogLinear  # noqa: E402
from fxanalog.optim import AnalogSGD  # noqa: E402


def make_case(n: int, device):
    torch.manual_seed(0)
    x, target = torch.randn(64, n), torch.randn(64, n)
    digital = nn.Linear(n, n)
    analog = AnalogLinear.from_digital(digital, SingleRPUConfig(device=device))
    opt_d = torch.optim.SGD(digital.parameters(), lr=0.1)
    opt_a = AnalogSGD(analog.parameters(), lr=0.1)

    def step(model, opt):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        opt.step()

    return functools.partial(step, digital, opt_d), functools.partial(step, analog, opt_a), (analog, opt_a, x, target)


def round_robin(fns: dict, repeat: int) -> dict:
    """The times of ``repeat`` calls of every function, taken in turn (so a
    busy moment of the machine slows them alike), after a warm-up."""
    for _ in range(3):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def best_round_robin(fns: dict, repeat: int) -> dict:
    return {k: min(v) for k, v in round_robin(fns, repeat).items()}


def median_round_robin(fns: dict, repeat: int) -> dict:
    return {k: statistics.median(v) for k, v in round_robin(fns, repeat).items()}


def breakdown(analog, opt, x, target, repeat: int) -> dict:
    """Best-of times of the forward, the backward and the optimizer step,
    and within the step the pulsed update's kernel (C, or the Python loop)."""
    kernel = update_torch._native_update if update_torch.native is not None else update_torch.tile_update
    name = kernel.__name__
    spent = []

    def timed(*a, **k):
        t = time.perf_counter()
        out = kernel(*a, **k)
        spent[-1] += time.perf_counter() - t
        return out

    setattr(update_torch, name, timed)
    best = {"forward": float("inf"), "backward": float("inf"), "step": float("inf")}
    try:
        for _ in range(repeat):
            spent.append(0.0)
            opt.zero_grad()
            t0 = time.perf_counter()
            loss = nn.functional.mse_loss(analog(x), target)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            best["forward"] = min(best["forward"], t1 - t0)
            best["backward"] = min(best["backward"], t2 - t1)
            best["step"] = min(best["step"], t3 - t2)
    finally:
        setattr(update_torch, name, kernel)
    best["update"] = min(spent)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=41)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    native = "C kernel" if update_torch.native is not None else "Python loop (no C extension)"
    if update_torch.native is not None:
        native += " on OpenMP threads" if update_torch.native.openmp() else " on POSIX threads"
    print(f"one training step, batch 64, lr 0.1, {args.threads} threads, torch {torch.__version__}, pulses: {native}")
    print(f"{'layer':>11} | {'device':>12} | {'digital ms':>10} | {'analog ms':>9} | {'ratio':>6} | {'best':>6} | "
          f"fwd / bwd / update kernel / rest of step (ms, best)")
    print("-" * 122)
    for n in (512, 2048):
        for name, device in (("ConstantStep", ConstantStepDevice()), ("SoftBounds", SoftBoundsDevice())):
            dig, ana, parts = make_case(n, device)
            times = round_robin({"digital": dig, "analog": ana}, args.repeat)
            med = {k: statistics.median(v) for k, v in times.items()}
            best = {k: min(v) for k, v in times.items()}
            b = breakdown(*parts, repeat=args.repeat)
            rest = b["step"] - b["update"]
            print(f"{f'{n}x{n}':>11} | {name:>12} | {med['digital'] * 1e3:10.2f} | {med['analog'] * 1e3:9.2f} | "
                  f"{med['analog'] / med['digital']:5.2f}x | {best['analog'] / best['digital']:5.2f}x | "
                  f"{b['forward'] * 1e3:.2f} / {b['backward'] * 1e3:.2f} / {b['update'] * 1e3:.2f} / {rest * 1e3:.2f}",
                  flush=True)
    print("times: medians of the round-robin runs; ratio: of the medians; best: of the best runs")
    print("target: analog step at most 2x the digital step")


if __name__ == "__main__":
    main()
