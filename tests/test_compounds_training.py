"""Training algorithms for real devices (docs/tiki-taka.md,
docs/mixed-precision.md): on a strongly asymmetric device, Tiki-Taka and
mixed precision train the digits MLP of ``fxanalog demo --train`` well
where plain ``AnalogSGD`` on the same device does not.

The device is ``SoftBoundsDevice(w_max=0.3, w_min=-0.3)``: an up step at w
is dw_min (1 - w / 0.3), a down step dw_min (1 + w / 0.3), so at w = 0.15 an
up step is a third of a down step. Measured on 2026-12-01 (MLP 64-64-10
tanh, lr 0.1, batch 16, 10 epochs, final test accuracy, seeds 0-9):

* plain SGD (``SingleRPUConfig``): 70.7% to 82.4% (with lr 0.02, 0.05 or
  0.2 at most 80.9% in seeds 0 and 1: not a matter of its learning rate);
* Tiki-Taka (``TransferCompound``, fast_lr 0.1, transfer_lr 1.0 scaled by
  the optimizer's 0.1, a transfer of 16 columns after every mini-batch):
  94.2% to 96.4%;
* mixed precision (``MixedPrecisionCompound``, defaults): 93.1% to 95.1%
  (seeds 0-4 and 7);
* the same MLP trained digitally: 95.3% to 96.9% (seeds 0-4).

aihwkit 1.1.0 (its C++ CPU tile, the same protocol with its own split of
the digits) gives plain SGD 73.3% to 76.0%, Tiki-Taka 93.1% to 95.3% and
mixed precision 93.8% to 94.4% (seeds 0-4): the same effect.

The thresholds below (at least 92% for Tiki-Taka and 91% for mixed
precision, at most 86% for plain SGD, a gap of at least 8 points) leave
two points or more of margin on each side of every measured seed (seeds 0
and 1 run here).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from fxanalog import SmallWeightRangeWarning
from fxanalog.config import (
    DigitalRankUpdateRPUConfig,
    MixedPrecisionCompound,
    SingleRPUConfig,
    SoftBoundsDevice,
    TransferCompound,
    UnitCellRPUConfig,
)
from fxanalog.train_demo import train_on_devices

SEEDS = [0, 1]


def asymmetric() -> SoftBoundsDevice:
    return SoftBoundsDevice(w_max=0.3, w_min=-0.3)


def final_accuracy(configs: dict, seed: int) -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            # the weights use a small part of the +-0.3 range: the same for every run compared
            warnings.simplefilter("ignore", SmallWeightRangeWarning)
            curves = train_on_devices(configs, epochs=10, lr=0.1, batch_size=16, seed=seed, digital=False)
    finally:
        torch.set_num_threads(threads)
    return {name: curve[-1] for name, curve in curves.items()}


@pytest.fixture(scope="module", params=SEEDS, ids=lambda s: f"seed{s}")
def accuracies(request) -> dict[str, float]:
    configs = {
        "sgd": SingleRPUConfig(device=asymmetric()),
        "tiki-taka": UnitCellRPUConfig(device=TransferCompound(
            unit_cell_devices=[asymmetric(), asymmetric()], fast_lr=0.1, transfer_lr=1.0, transfer_every=1.0,
            n_reads_per_transfer=16)),
        "mixed": DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(device=asymmetric())),
    }
    return final_accuracy(configs, request.param)


def test_plain_sgd_is_poor_on_the_asymmetric_device(accuracies):
    assert accuracies["sgd"] <= 0.86, accuracies


def test_tiki_taka_trains_where_plain_sgd_does_not(accuracies):
    assert accuracies["tiki-taka"] >= 0.92, accuracies
    assert accuracies["tiki-taka"] - accuracies["sgd"] >= 0.08, accuracies


def test_mixed_precision_trains_where_plain_sgd_does_not(accuracies):
    assert accuracies["mixed"] >= 0.91, accuracies
    assert accuracies["mixed"] - accuracies["sgd"] >= 0.08, accuracies
