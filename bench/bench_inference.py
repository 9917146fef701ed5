"""Benchmarks of the inference physics (printed, not timed tests).

Targets (issue 5), on CPU:

* ``program_analog_weights`` + one ``drift_analog_weights`` on a
  ResNet-18-shaped network: under 2 s;
* realistic (closed-loop) writing of a 512 x 512 tile: under 1 s, with
  ``weight_scaling_omega`` 1 and with the default 0 (issue 14, item 19);
* realistic writing of the ResNet-18-shaped network: under 60 s.

Each time is printed with its ratio to the target and to a baseline measured
in the same run: drawing as many normal numbers as the network has weights
(programming draws at least 4 per weight: noise and drift exponent of g+ and
g-), and one plain GEMM of the tile's size.

Run: ``.venv/bin/python bench/bench_inference.py [--skip-resnet-write]``
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from fxanalog import InferenceRPUConfig
from fxanalog.inference import drift_analog_weights, program_analog_weights, realistic_write
from fxanalog.nn.modules import AnalogConv2d, AnalogLinear


def resnet18_shaped(cfg) -> nn.Module:
    """The 21 weight layers of ResNet-18 (conv stem, 4 stages of 2 basic
    blocks with 1x1 downsampling, fc), as analog layers."""
    layers = [AnalogConv2d(3, 64, 7, stride=2, padding=3, bias=False, rpu_config=cfg)]
    c_in = 64
    for c in (64, 128, 256, 512):
        for block in range(2):
            stride = 2 if (block == 0 and c != 64) else 1
            layers.append(AnalogConv2d(c_in, c, 3, stride=stride, padding=1, bias=False, rpu_config=cfg))
            layers.append(AnalogConv2d(c, c, 3, padding=1, bias=False, rpu_config=cfg))
            if stride == 2:
                layers.append(AnalogConv2d(c_in, c, 1, stride=2, bias=False, rpu_config=cfg))
            c_in = c
    layers.append(AnalogLinear(512, 1000, rpu_config=cfg))
    return nn.ModuleList(layers)


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def report(name: str, seconds: float, target: float, baseline: float, baseline_name: str) -> None:
    print(f"{name:<52} {seconds:8.3f} s   {seconds / target:6.2f} x target ({target:g} s)   "
          f"{seconds / baseline:8.1f} x {baseline_name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-resnet-write", action="store_true", help="skip the long ResNet-18 realistic write")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0

    net = resnet18_shaped(cfg).eval()
    n_weights = sum(m.weight.numel() for m in net)
    tiles = sum(m.num_tiles for m in net)
    print(f"ResNet-18-shaped network: {len(net)} layers, {tiles} tiles, {n_weights / 1e6:.1f} M weights, "
          f"{torch.get_num_threads()} threads")
    randn = timed(lambda: torch.randn(4, n_weights), repeat=3)
    print(f"baseline: 4 normal draws per weight             {randn:8.3f} s")

    def program_and_drift():
        program_analog_weights(net)
        drift_analog_weights(net, 3600.0)

    program_and_drift()  # warm-up
    report("program + drift(1 h), ResNet-18", timed(program_and_drift, repeat=3), 2.0, randn, "4 draws/weight")
    report("drift(1 day) alone, ResNet-18", timed(lambda: drift_analog_weights(net, 86400.0), repeat=3), 2.0,
           randn, "4 draws/weight")

    x = torch.randn(512, 512)
    gemm = timed(lambda: x @ x.t(), repeat=5)
    print(f"baseline: one 512x512x512 GEMM                  {gemm:8.4f} s")
    # omega 1, and the default config (omega 0: tile weights of a few % of
    # the range, so the verify reads need 64 rounds); the verify reads drawn
    # from their closed form where it holds, and computed by the forward.
    for omega in (1.0, 0.0):
        c = InferenceRPUConfig()
        c.mapping.weight_scaling_omega = omega
        layer = AnalogLinear(512, 512, rpu_config=c)
        for probe in ("auto", "forward"):
            realistic_write(layer, probe=probe)  # warm-up
            seconds = timed(lambda: realistic_write(layer, probe=probe), repeat=3 if probe == "auto" else 1)
            report(f"realistic write, 512 x 512, omega {omega:g}, {probe}", seconds, 1.0, gemm, "GEMM")
            print(f"    report: {layer.tile.programming_report}")

    if not args.skip_resnet_write:
        seconds = timed(lambda: realistic_write(net))
        report("realistic write, ResNet-18", seconds, 60.0, randn, "4 draws/weight")
        worst = max(m.tile.programming_report["error"] for m in net)
        most = max(m.tile.programming_report["iterations"] for m in net)
        print(f"    worst layer error {worst:.5f}, most iterations {most}")


if __name__ == "__main__":
    main()
