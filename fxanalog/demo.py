"""The demo: how accurate is a network on PCM hardware, and for how long?

``fxanalog demo`` (and ``bash scripts/demo.sh``) runs ``run_demo``:

1. train a small CNN digitally on scikit-learn's built-in 8x8 digits (no
   download);
2. compile it with ``fxanalog.compile`` and a PCM inference config (weight
   scaling on), program the weights and measure the test accuracy at
   1 s, 1 h, 1 day, 1 month and 1 year after programming, with and without
   global drift compensation, over several programming draws;
3. fine-tune with hardware-aware training (``hardware_aware_finetune`` with
   the ``pcm-hwa`` preset: the noisy forward, Gaussian weight noise of 8 % of
   each tile's max|W| in every training forward, the weights clipped to 2
   standard deviations after every step) and measure again. Without drift
   compensation the 1-year accuracy is set mostly by the digital biases,
   which do not drift, against weights shrunk to about half; it differs from
   one trained network to the next by more than what HWA gains, so a single
   run can show either order (docs/getting-started.md: the gains over 16
   trained networks);
4. print the table and write a plot, the graph dumps and the analog summary
   into the output folder.

The pieces (``load_digits_data``, ``DigitsCNN``, ``train``, ``accuracy``,
``accuracy_over_time``, ``format_table``, ``plot_accuracy``) are usable on
their own.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TextIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "TIMES",
    "DemoError",
    "DemoResult",
    "Digits",
    "DigitsCNN",
    "load_digits_data",
    "progress_bar",
    "train",
    "hardware_aware_finetune",
    "accuracy",
    "accuracy_over_time",
    "format_table",
    "plot_accuracy",
    "check_output_dir",
    "run_demo",
]

#: Times after programming: (label, seconds).
TIMES: tuple[tuple[str, float], ...] = (
    ("1 s", 1.0),
    ("1 h", 3600.0),
    ("1 day", 86400.0),
    ("1 month", 30.0 * 86400.0),
    ("1 year", 365.0 * 86400.0),
)


class DemoError(Exception):
    """A user error of the demo (e.g. an output folder it cannot write)."""


# --------------------------------------------------------------------------
# Data and model


@dataclass
class Digits:
    """The 8x8 digits as (N, 1, 8, 8) float tensors in [0, 1] and int64 labels."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits_data(seed: int = 0, test_fraction: float = 0.25) -> Digits:
    """scikit-learn's built-in digits (1797 images, shipped with the package),
    split into train and test sets, stratified by class, with ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    idx = torch.arange(len(y)).numpy()
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=data.target)
    tr, te = torch.as_tensor(tr), torch.as_tensor(te)
    return Digits(x[tr], y[tr], x[te], y[te])


class DigitsCNN(nn.Module):
    """conv(1->16) -> pool -> conv(16->32) -> pool -> linear(128->64) -> linear(64->10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def digits_cnn() -> DigitsCNN:
    """Factory of an untrained ``DigitsCNN`` (``fxanalog.demo:digits_cnn``)."""
    return DigitsCNN()


# --------------------------------------------------------------------------
# Training and evaluation


def progress_bar(iterable, desc: str, progress: bool, total: Optional[int] = None):
    """``iterable`` with a tqdm bar on stderr when ``progress``."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not progress, leave=False, file=sys.stderr)


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float = 1e-2,
    batch_size: int = 64,
    seed: int = 0,
    desc: str = "training",
    progress: bool = False,
) -> float:
    """Adam with cross-entropy, shuffled mini-batches; returns the mean loss of
    the last epoch. Trains ``model`` in place (in train mode)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    last = float("nan")
    for _ in progress_bar(range(epochs), desc, progress):
        perm = torch.randperm(len(y), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(y), batch_size):
            batch = perm[start : start + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
            count += len(batch)
        last = total / count
    model.eval()
    return last


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Fraction of correctly classified samples, in eval mode."""
    model.eval()
    correct = 0
    for start in range(0, len(y), batch_size):
        pred = model(x[start : start + batch_size]).argmax(dim=1)
        correct += int((pred == y[start : start + batch_size]).sum())
    return correct / len(y)


def accuracy_over_time(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    times: tuple[float, ...],
    draws: int,
    *,
    seed: int = 0,
    program: Optional[Callable[[nn.Module], None]] = None,
    drift: Optional[Callable[[nn.Module, float], None]] = None,
    desc: str = "evaluating",
    progress: bool = False,
) -> Tensor:
    """Test accuracy, (draws, len(times)): for each draw, program the weights
    once (fresh programming noise and drift exponents, seeded ``seed + draw``),
    then drift them to each time (always from the programmed state) and
    evaluate. ``program``/``drift`` default to
    ``fxanalog.inference.program_analog_weights`` / ``drift_analog_weights``."""
    if program is None or drift is None:
        from fxanalog.inference import drift_analog_weights, program_analog_weights

        program = program or program_analog_weights
        drift = drift or drift_analog_weights
    import fxanalog

    out = torch.empty(draws, len(times), dtype=torch.float64)
    model.eval()
    for d in progress_bar(range(draws), desc, progress):
        fxanalog.manual_seed(seed + d)
        program(model)
        for j, t in enumerate(times):
            drift(model, t)
            out[d, j] = accuracy(model, x, y)
    return out


# --------------------------------------------------------------------------
# Report


def _mean_std(acc: Tensor) -> tuple[Tensor, Tensor]:
    mean = acc.mean(dim=0)
    std = acc.std(dim=0, unbiased=True) if acc.shape[0] > 1 else torch.zeros_like(mean)
    return mean, std


def format_table(results: dict[str, Tensor], labels: list[str], digital: Optional[float] = None) -> str:
    """A text table: one row per result (draws x times accuracies, as fractions),
    ``mean ± std`` in percent per time; ``digital`` is the floating-point
    reference accuracy."""
    first = max([len("time after programming")] + [len(k) for k in results])
    cells = {}
    for name, acc in results.items():
        mean, std = _mean_std(acc)
        cells[name] = [f"{100 * m:5.1f} ± {100 * s:4.1f}" for m, s in zip(mean.tolist(), std.tolist())]
    width = max([len(c) for row in cells.values() for c in row] + [len(lb) for lb in labels])
    lines = ["time after programming".ljust(first) + "".join("  " + lb.rjust(width) for lb in labels)]
    lines.append("-" * len(lines[0]))
    for name, row in cells.items():
        lines.append(name.ljust(first) + "".join("  " + c.rjust(width) for c in row))
    if digital is not None:
        lines.append("-" * len(lines[0]))
        lines.append(f"{'digital (floating point)'.ljust(first)}  {100 * digital:5.1f}")
    return "\n".join(lines)


def plot_accuracy(
    results: dict[str, Tensor],
    times: list[float],
    labels: list[str],
    path: str,
    digital: Optional[float] = None,
    title: str = "",
) -> None:
    """PNG of accuracy (mean, band of ± one std) against time, log scale."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, acc), marker in zip(results.items(), "osD^v<>"):
        mean, std = _mean_std(acc)
        m, s = 100 * mean.numpy(), 100 * std.numpy()
        (line,) = ax.plot(times, m, marker=marker, label=name)
        ax.fill_between(times, m - s, m + s, alpha=0.2, color=line.get_color())
    if digital is not None:
        ax.axhline(100 * digital, color="k", linestyle="--", linewidth=1, label="digital (floating point)")
    ax.set_xscale("log")
    ax.set_xticks(times)
    ax.set_xticklabels(labels)
    ax.set_xlabel("time after programming")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check_output_dir(path: str) -> str:
    """Create ``path`` if needed and check that files can be written in it;
    raise ``DemoError`` (one line) if not. Returns the absolute path."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".fxanalog-write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise DemoError(f"output folder {path!r}: cannot write to it ({e.strerror or e})") from None
    return path


# --------------------------------------------------------------------------
# The demo


@dataclass
class DemoResult:
    """What ``run_demo`` measured and wrote."""

    digital_accuracy: float
    results: dict  # row name -> (draws, times) accuracies
    table: str
    files: dict = field(default_factory=dict)  # what -> path
    seconds: float = 0.0


def _configs():
    """(evaluation with drift compensation, evaluation without, fine-tuning):
    the ``pcm`` preset, the same without compensation, and ``pcm-hwa`` (the
    noisy forward plus additive Gaussian weight noise, 0.08 of each tile's
    max|W|, in every training forward pass, and the weights clipped to 2
    standard deviations of their tile after every step: Joshi et al. 2020,
    aihwkit's HWA tutorial)."""
    from fxanalog.presets import get_preset

    eval_comp = get_preset("pcm")
    eval_plain = get_preset("pcm")
    eval_plain.drift_compensation = None
    return eval_comp, eval_plain, get_preset("pcm-hwa")


def hardware_aware_finetune(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    rpu_config,
    *,
    epochs: int,
    lr: float = 1e-3,
    seed: int = 0,
    example_inputs: Optional[tuple] = None,
    progress: bool = False,
) -> float:
    """Hardware-aware fine-tuning of ``model`` in place: ``train`` (Adam) on
    ``fxanalog.compile(model, rpu_config, inplace=True)``, whose weights are
    ``model``'s, so the training forward is the noisy tile forward with
    ``rpu_config.modifier``; ``rpu_config.clip`` clips the weights before the
    first step and after every optimizer step (docs/physics.md,
    "Hardware-aware training"). Returns the mean loss of the last epoch.

    ``rpu_config.remap`` must be ``NONE``: remapping moves a factor of the
    weights into the tiles' digital scales, and ``model`` would no longer
    hold the effective weights."""
    import fxanalog
    from fxanalog.config import WeightRemapType
    from fxanalog.inference import post_update_step
    from torch.optim.optimizer import register_optimizer_step_post_hook

    if rpu_config.remap.type != WeightRemapType.NONE:
        raise ValueError(f"hardware_aware_finetune: rpu_config.remap.type = {rpu_config.remap.type.name}: "
                         "expected NONE (the model keeps the effective weights)")
    analog = fxanalog.compile(model, rpu_config, example_inputs=example_inputs, inplace=True)
    post_update_step(analog)  # the start weights clipped as after every step
    # torch's hook on every optimizer's step, removed after: ``train`` makes its own optimizer
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: post_update_step(analog))
    try:
        return train(analog, x, y, epochs=epochs, lr=lr, seed=seed, desc="hardware-aware training",
                     progress=progress)
    finally:
        handle.remove()


def run_demo(
    output: str = "fxanalog-demo-output",
    seed: int = 0,
    draws: Optional[int] = None,
    quick: bool = False,
    progress: bool = True,
    stream: Optional[TextIO] = None,
) -> DemoResult:
    """Run the demo (see the module docstring); print to ``stream`` (stdout).

    Runs torch on one thread: the demo's tensors are small, and on a busy
    machine OpenMP threads waiting for each other cost far more than they
    gain (measured: 10x slower training with 2 threads on 2 loaded cores).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_demo(output, seed, draws, quick, progress, stream)
    finally:
        torch.set_num_threads(threads)


def _run_demo(output, seed, draws, quick, progress, stream) -> DemoResult:
    import fxanalog

    stream = stream or sys.stdout
    start = time.perf_counter()

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    if draws is not None and (not isinstance(draws, int) or draws < 1):
        raise DemoError(f"draws = {draws!r}: expected a whole number >= 1")
    draws = draws or (2 if quick else 10)
    # (epochs, learning rate) of the digital training, epochs of the fine-tuning
    epochs, lr, hwa_epochs = (5, 1e-2, 1) if quick else (20, 3e-3, 10)
    out_dir = check_output_dir(output)
    labels = [label for label, _ in TIMES]
    times = [t for _, t in TIMES]

    torch.manual_seed(seed)
    data = load_digits_data(seed)
    example = (data.x_test[:1],)
    say(f"fxanalog demo: a CNN on the 8x8 digits ({len(data.y_train)} training, {len(data.y_test)} test images), "
        f"seed {seed}, {draws} programming draws{' (quick)' if quick else ''}")

    # 1. digital training
    model = DigitsCNN()
    train(model, data.x_train, data.y_train, epochs=epochs, lr=lr, seed=seed,
          desc="digital training", progress=progress)
    digital_acc = accuracy(model, data.x_test, data.y_test)
    say(f"digital training: test accuracy {100 * digital_acc:.1f}%")

    eval_comp, eval_plain, hwa_cfg = _configs()
    results: dict[str, Tensor] = {}

    def measure(trained: nn.Module, name: str) -> None:
        # Every row uses the same programming seeds (1000 * seed + draw): the
        # rows differ by the weights and the compensation, not by the luck of
        # the draws.
        for cfg, suffix in ((eval_plain, "no compensation"), (eval_comp, "drift compensation")):
            analog = fxanalog.compile(trained, cfg, example_inputs=example)
            results[f"{name}, {suffix}"] = accuracy_over_time(
                analog, data.x_test, data.y_test, tuple(times), draws, seed=1000 * seed,
                desc=f"{name}, {suffix}", progress=progress,
            )

    # 2. on PCM tiles, as trained
    measure(model, "digital training")

    # 3. hardware-aware fine-tuning of a copy (the analog model trains the copy's weights)
    hwa_model = copy.deepcopy(model)
    hardware_aware_finetune(hwa_model, data.x_train, data.y_train, hwa_cfg, epochs=hwa_epochs, lr=1e-3,
                            seed=seed + 1, example_inputs=example, progress=progress)
    say(f"hardware-aware fine-tuning ({hwa_epochs} epoch{'s' if hwa_epochs > 1 else ''}, 'pcm-hwa': weight noise "
        f"{hwa_cfg.modifier.std_dev:g} of max|W|, weights clipped to {hwa_cfg.clip.sigma:g} std): test accuracy "
        f"{100 * accuracy(hwa_model, data.x_test, data.y_test):.1f}% digitally")
    measure(hwa_model, "HWA training")

    labels_line = ", ".join(labels)
    table = format_table(results, labels, digital=digital_acc)
    say()
    say(f"Test accuracy (%) on PCM tiles, mean ± std over {draws} programming draws ({labels_line} after programming):")
    say(table)
    say()

    # 4. files
    files = {}
    files["plot"] = os.path.join(out_dir, "accuracy_vs_time.png")
    plot_accuracy(results, times, labels, files["plot"], digital=digital_acc,
                  title=f"Digits CNN on PCM tiles ({draws} draws)")
    analog = fxanalog.compile(model, eval_comp, example_inputs=example)
    files["summary"] = os.path.join(out_dir, "analog_summary.txt")
    _write(files["summary"], str(fxanalog.analog_summary(analog, example_inputs=example)))
    files["graph (text)"] = os.path.join(out_dir, "graph.txt")
    _write(files["graph (text)"], fxanalog.dump(analog, "text", example_inputs=example))
    files["graph (DOT)"] = os.path.join(out_dir, "graph.dot")
    _write(files["graph (DOT)"], fxanalog.dump(analog, "dot", example_inputs=example))
    files["table"] = os.path.join(out_dir, "results.txt")
    _write(files["table"], table)
    files["results (JSON)"] = os.path.join(out_dir, "results.json")
    _write(files["results (JSON)"], json.dumps({
        "seed": seed,
        "draws": draws,
        "quick": quick,
        "times_s": times,
        "time_labels": labels,
        "digital_accuracy": digital_acc,
        "accuracy": {name: acc.tolist() for name, acc in results.items()},
    }, indent=1))
    elapsed = time.perf_counter() - start
    say(f"Wrote to {out_dir}:")
    for what, path in files.items():
        say(f"  {what + ':':16s} {os.path.basename(path)}")
    say(f"({elapsed:.0f} s)")
    return DemoResult(digital_acc, results, table, files, elapsed)


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    except OSError as e:
        raise DemoError(f"cannot write {path!r}: {e.strerror or e}") from None
