"""The training demo: a network trained ON analog devices.

``fxanalog demo --train`` runs ``run_training_demo``: a 64-64-10 tanh MLP
on scikit-learn's built-in 8x8 digits, trained with ``AnalogSGD`` (learning
rate 0.1, batch 16) where every weight lives on a crossbar and moves only by
pulses, once per device: ``ConstantStepDevice``, ``SoftBoundsDevice`` and an
``IdealDevice`` (exact updates: the analog forward and backward alone), all
with the noisy, quantized periphery of ``SingleRPUConfig``; and the same MLP
trained digitally with SGD for reference. It prints the test accuracy after
every epoch and writes a plot and the numbers (JSON) into the output folder.

The pieces (``digits_mlp``, ``train_on_devices``, ``format_training_table``,
``plot_training``) are usable on their own.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Optional, TextIO

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DEVICES", "digits_mlp", "train_on_devices", "format_training_table", "plot_training",
           "TrainingResult", "run_training_demo"]


def DEVICES() -> dict:
    """name -> RPU config of the devices the demo trains on (fresh configs)."""
    from fxanalog import ConstantStepDevice, IdealDevice, SingleRPUConfig, SoftBoundsDevice

    return {
        "ConstantStep": SingleRPUConfig(device=ConstantStepDevice()),
        "SoftBounds": SingleRPUConfig(device=SoftBoundsDevice()),
        "Ideal device": SingleRPUConfig(device=IdealDevice()),
    }


def digits_mlp(seed: int = 0) -> nn.Module:
    """Linear(64, 64) -> Tanh -> Linear(64, 10), initialized from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


def _accuracy(model: nn.Module, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def train_on_devices(configs: dict, epochs: int = 10, lr: float = 0.1, batch_size: int = 16, seed: int = 0,
                     digital: bool = True, progress: bool = False) -> dict[str, list[float]]:
    """Test accuracy after every epoch of the digits MLP trained on each
    config (``fxanalog.compile`` + ``AnalogSGD``), and digitally with SGD
    (``"digital (SGD)"``) when ``digital``. Every run starts from the same
    initial weights and sees the batches in the same order."""
    import fxanalog
    from fxanalog.demo import load_digits_data, progress_bar
    from fxanalog.optim import AnalogSGD

    data = load_digits_data(seed)
    x_tr, x_te = data.x_train.flatten(1), data.x_test.flatten(1)
    runs = [(name, cfg) for name, cfg in configs.items()] + ([("digital (SGD)", None)] if digital else [])
    out: dict[str, list[float]] = {}
    for name, cfg in runs:
        torch.manual_seed(seed)
        net = digits_mlp(seed)
        if cfg is None:
            model, opt = net, torch.optim.SGD(net.parameters(), lr=lr)
        else:
            model = fxanalog.compile(net, cfg)
            opt = AnalogSGD(model.parameters(), lr=lr)
        order_gen = torch.Generator().manual_seed(seed)
        curve = []
        for _ in progress_bar(range(epochs), name, progress):
            model.train()
            order = torch.randperm(len(x_tr), generator=order_gen)
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                opt.zero_grad()
                F.cross_entropy(model(x_tr[idx]), data.y_train[idx]).backward()
                opt.step()
            curve.append(_accuracy(model, x_te, data.y_test))
        out[name] = curve
    return out


def format_training_table(results: dict[str, list[float]]) -> str:
    """Test accuracy (%) per epoch, one row per device."""
    epochs = max(len(v) for v in results.values())
    first = max(len(n) for n in results) + 2
    head = "epoch".ljust(first) + "".join(f"{e + 1:>7d}" for e in range(epochs))
    lines = [head, "-" * len(head)]
    for name, curve in results.items():
        lines.append(name.ljust(first) + "".join(f"{100 * a:7.1f}" for a in curve))
    return "\n".join(lines)


def plot_training(results: dict[str, list[float]], path: str, title: str = "") -> None:
    """PNG of test accuracy against epoch, one line per device."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (name, curve), marker in zip(results.items(), "osD^v<>"):
        style = "--" if name.startswith("digital") else "-"
        ax.plot(range(1, len(curve) + 1), [100 * a for a in curve], style, marker=marker, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass
class TrainingResult:
    """What ``run_training_demo`` measured and wrote."""

    results: dict  # name -> test accuracy per epoch
    table: str
    files: dict = field(default_factory=dict)
    seconds: float = 0.0


def run_training_demo(output: str = "fxanalog-demo-output", seed: int = 0, epochs: Optional[int] = None,
                      quick: bool = False, progress: bool = True, stream: Optional[TextIO] = None) -> TrainingResult:
    """Run the training demo (see the module docstring); print to ``stream``."""
    from fxanalog.demo import check_output_dir

    stream = stream or sys.stdout
    out_dir = check_output_dir(output)
    epochs = epochs or (2 if quick else 10)
    start = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        print(f"fxanalog demo --train: a 64-64-10 tanh MLP on the 8x8 digits, AnalogSGD (lr 0.1, batch 16), "
              f"{epochs} epochs, seed {seed}", file=stream)
        results = train_on_devices(DEVICES(), epochs=epochs, seed=seed, progress=progress)
    finally:
        torch.set_num_threads(threads)
    table = format_training_table(results)
    print("\nTest accuracy (%) after each epoch, weights on pulsed devices (SingleRPUConfig):", file=stream)
    print(table, file=stream)
    files = {"plot": os.path.join(out_dir, "training_accuracy.png"),
             "results": os.path.join(out_dir, "training_results.json")}
    plot_training(results, files["plot"], title="Training on analog devices (8x8 digits)")
    with open(files["results"], "w", encoding="utf-8") as f:
        json.dump({"seed": seed, "epochs": epochs, "accuracy": results}, f, indent=2)
    seconds = time.time() - start
    print(f"\nWrote to {out_dir}:\n  plot:            {os.path.basename(files['plot'])}\n"
          f"  results (JSON):  {os.path.basename(files['results'])}\n({seconds:.0f} s)", file=stream)
    return TrainingResult(results, table, files, seconds)
