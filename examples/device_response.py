"""The response of every pulsed device to a train of up pulses followed by
a train of down pulses (docs/training.md): 20 cross-points each, with their
device-to-device variation and cycle-to-cycle noise (the devices' defaults),
starting from w = 0.

    python examples/device_response.py [out.png]     # default ./device_response.png

The docs' figure is made with
``python examples/device_response.py docs/images/device_response.png``.
"""

from __future__ import annotations

import os
import sys

import torch

from fxanalog import ConstantStepDevice, ExpStepDevice, LinearStepDevice, PowStepDevice, SoftBoundsDevice
from fxanalog.devices import apply_pulses, draw_state, rule_of

DEVICES = {
    "ConstantStepDevice()": ConstantStepDevice(),
    "LinearStepDevice(gamma_up=gamma_down=0.5)": LinearStepDevice(gamma_up=0.5, gamma_down=0.5),
    "SoftBoundsDevice()": SoftBoundsDevice(),
    "ExpStepDevice()": ExpStepDevice(),
    "PowStepDevice()": PowStepDevice(),
}


def response(device, pulses: int = 1200, devices: int = 20, seed: int = 0) -> torch.Tensor:
    """(2 * pulses + 1, devices): the weights after each pulse, up then down."""
    torch.manual_seed(seed)
    rule = rule_of(device)
    state = draw_state(device, (devices,))
    w = torch.zeros(devices)
    trace = [w.clone()]
    one = torch.ones(devices, dtype=torch.int64)
    for down in [False] * pulses + [True] * pulses:
        w = apply_pulses(rule, w, torch.full((devices,), down), one, state)
        trace.append(w.clone())
    return torch.stack(trace)


def main(path: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 3, figsize=(10, 5.6), sharey=True)
    axes = grid.flatten()
    axes[-1].axis("off")
    for ax, (name, device) in zip(axes, DEVICES.items()):
        trace = response(device)
        ax.plot(trace.numpy(), linewidth=0.6, alpha=0.8)
        ax.axvline(trace.shape[0] // 2, color="k", linewidth=0.5, linestyle=":")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("pulse (up, then down)", fontsize=8)
        ax.grid(True, alpha=0.3)
    for row in grid:
        row[0].set_ylabel("weight (tile units)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "device_response.png")
