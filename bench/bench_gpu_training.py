"""GPU benchmark of one analog training step against digital SGD.

One training step (forward, backward, optimizer step; mean-squared-error loss
against a random target, learning rate 0.1) on the GPU:

- digital: the plain torch model + ``torch.optim.SGD``;
- analog: the same model with every ``nn.Linear`` an ``AnalogLinear`` of
  ``SingleRPUConfig(device=...)`` (its noisy 7/9-bit forward and backward
  periphery, the default 512 x 512 tiles) + ``fxanalog.optim.AnalogSGD``:
  the forward and backward through the Triton tile kernel, the pulsed update
  of every tile array through the Triton update kernel
  (``triton_kernels/tile_update.py``).

Cases: 2048 x 2048 and 4096 x 4096 linear layers at batch 64 (ConstantStep and
SoftBounds devices), and a BERT-base-shaped encoder (12 layers, hidden 768,
FFN 3072, 8 x 128 tokens; ConstantStep). It prints the digital step in ms,
the analog step as a ratio to it (target: at most 1.5x), and the analog
step's parts (forward, backward, optimizer step), all medians of CUDA-event
timings after warm-up, measured in the same run. ``--json PATH`` also writes
the figures as JSON.

Run: python bench/bench_gpu_training.py [--repeat 10] [--json figures.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gpu import bert_base, count_launches, cuda_time, fail  # noqa: E402

TARGET = 1.5


def analog_copy(model: nn.Module, rpu_config) -> nn.Module:
    """The model with every nn.Linear replaced by its AnalogLinear."""
    from fxanalog.nn import AnalogLinear

    if isinstance(model, nn.Linear):
        return AnalogLinear.from_digital(model, rpu_config)
    import copy

    model = copy.copy(model)
    model._modules = {name: analog_copy(child, rpu_config) for name, child in model._modules.items()}
    return model


def measure(name: str, device_name: str, digital: nn.Module, rpu_config, x: torch.Tensor, repeat: int) -> dict:
    from fxanalog.optim import AnalogSGD

    digital = digital.cuda().train()
    target = torch.randn_like(digital(x)).detach()
    analog = analog_copy(digital, rpu_config).cuda().train()
    opt_d = torch.optim.SGD(digital.parameters(), lr=0.1)
    opt_a = AnalogSGD(analog.parameters(), lr=0.1)

    def step(model, opt):
        opt.zero_grad()
        F.mse_loss(model(x), target).backward()
        opt.step()

    t0 = time.perf_counter()
    launches = count_launches(lambda: step(analog, opt_a), op="tile_update")  # also compiles the kernels
    torch.cuda.synchronize()
    first = time.perf_counter() - t0
    if launches == 0:
        fail(f"{name}: the analog step did not reach the Triton update kernel (forced torch path?)")
    t_dig = cuda_time(lambda: step(digital, opt_d), repeat)
    t_ana = cuda_time(lambda: step(analog, opt_a), repeat)

    # the analog step's parts
    loss_box = []

    def fwd():
        opt_a.zero_grad()
        loss_box[:] = [F.mse_loss(analog(x), target)]

    t_fwd = cuda_time(fwd, repeat)
    t_fwd_bwd = cuda_time(lambda: (fwd(), loss_box[0].backward()), repeat)
    t_opt = max(t_ana - t_fwd_bwd, 0.0)
    row = dict(case=name, device=device_name, digital_ms=t_dig * 1e3, analog_ms=t_ana * 1e3, ratio=t_ana / t_dig,
               forward_ms=t_fwd * 1e3, backward_ms=(t_fwd_bwd - t_fwd) * 1e3, optimizer_step_ms=t_opt * 1e3,
               update_launches=launches, first_step_s=first)
    print(f"{name:>28} | {device_name:>12} | {row['digital_ms']:10.3f} | {row['analog_ms']:10.3f} | "
          f"{row['ratio']:7.2f}x | {row['forward_ms']:.2f} / {row['backward_ms']:.2f} / "
          f"{row['optimizer_step_ms']:.2f} | {first:6.1f}", flush=True)
    del analog, opt_a
    torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        fail("no CUDA device: this benchmark needs a GPU (bench/bench_training.py is the CPU one)")
    from fxanalog.ops.dispatch import triton_available

    if not triton_available():
        fail("triton cannot be imported: the Triton path is not available")
    import triton

    import fxanalog
    from fxanalog import ConstantStepDevice, SingleRPUConfig, SoftBoundsDevice

    fxanalog.manual_seed(0)
    torch.manual_seed(0)
    head = dict(gpu=torch.cuda.get_device_name(0), torch=torch.__version__, triton=triton.__version__,
                repeat=args.repeat, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(", ".join(f"{k} {v}" for k, v in head.items()))
    header = (f"{'case':>28} | {'device':>12} | {'digital ms':>10} | {'analog ms':>10} | {'ana/dig':>8} | "
              f"fwd / bwd / step (ms) | {'1st s':>6}")
    print(header)
    print("-" * len(header))
    rows = []
    for n in (2048, 4096):
        for dname, dev in (("ConstantStep", ConstantStepDevice()), ("SoftBounds", SoftBoundsDevice())):
            x = torch.randn(64, n, device="cuda")
            rows.append(measure(f"linear {n}x{n} batch 64", dname, nn.Linear(n, n), SingleRPUConfig(device=dev), x,
                                args.repeat))
    rows.append(measure("BERT-base 8x128 tokens", "ConstantStep", bert_base(),
                        SingleRPUConfig(device=ConstantStepDevice()), torch.randn(8, 128, 768, device="cuda"),
                        max(3, args.repeat // 2)))
    worst = max(r["ratio"] for r in rows)
    print(f"target: analog step at most {TARGET}x the digital step; worst {worst:.2f}x "
          f"({'met' if worst <= TARGET else 'MISSED'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(head, target=TARGET, rows=rows), f, indent=1)
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
