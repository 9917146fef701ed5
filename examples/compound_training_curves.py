"""Plain SGD, Tiki-Taka and mixed precision on the same asymmetric device
(docs/tiki-taka.md, docs/mixed-precision.md, docs/unit-cells.md).

Trains the digits MLP of ``fxanalog demo --train`` (64-64-10 tanh,
``AnalogSGD`` with learning rate 0.1, batch 16, 10 epochs) three times on
one strongly asymmetric device, a ``SoftBoundsDevice`` with bounds +-0.3
(its up step at w is dw_min (1 - w / 0.3), its down step dw_min (1 + w /
0.3): at w = 0.15 an up step is a third of a down step):

* plain SGD: ``SingleRPUConfig``, every update pulses the device;
* Tiki-Taka: ``UnitCellRPUConfig`` with a ``TransferCompound`` of two such
  devices (the updates go to the fast device, 16 of its columns are
  transferred onto the slow one after every mini-batch);
* mixed precision: ``DigitalRankUpdateRPUConfig`` with a
  ``MixedPrecisionCompound`` on the device (the update accumulates in
  digital, whole steps are written after every mini-batch);

and digitally with SGD for reference. Every run starts from the same
weights and sees the batches in the same order. Prints the test accuracy
after every epoch and writes the plot.

    python examples/compound_training_curves.py [out.png] [--epochs N] [--seed S] [--seeds N]

``--seeds N`` also trains seeds 0..N-1 and prints the mean, standard
deviation and range of the final accuracies. The docs' figure is made with
``python examples/compound_training_curves.py docs/images/compounds-training-curves.png --seeds 5``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

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
from fxanalog.train_demo import format_training_table, plot_training, train_on_devices


def device() -> SoftBoundsDevice:
    """The device of every run: soft bounds at +-0.3 (defaults otherwise:
    dw_min 0.001, 30% device-to-device and cycle-to-cycle spread)."""
    return SoftBoundsDevice(w_max=0.3, w_min=-0.3)


def configs() -> dict:
    """name -> RPU config, all on ``device()`` with the default periphery."""
    return {
        "plain SGD": SingleRPUConfig(device=device()),
        "Tiki-Taka": UnitCellRPUConfig(device=TransferCompound(
            unit_cell_devices=[device(), device()],
            fast_lr=0.1,               # the fast device's learning rate (the optimizer's is 0.1 too)
            transfer_lr=1.0,           # times the optimizer's (scale_transfer_lr): 0.1
            transfer_every=1.0,        # after every mini-batch (units_in_mbatch)
            n_reads_per_transfer=16,   # 16 of the 64 columns of each tile per transfer
        )),
        "mixed precision": DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(device=device())),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="compounds-training-curves.png")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=0, help="also train seeds 0..N-1 and summarize")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # the runs are small; one core each is what they use well
    # The layers' weights use a small part of the tiles' range (bounds +-0.3):
    # the same for every run, which is the comparison this script makes.
    warnings.simplefilter("ignore", SmallWeightRangeWarning)
    start = time.time()
    results = train_on_devices(configs(), epochs=args.epochs, seed=args.seed)
    print(f"Test accuracy (%) after each epoch, SoftBoundsDevice(w_max=0.3, w_min=-0.3), lr 0.1, batch 16, "
          f"seed {args.seed}:")
    print(format_training_table(results))
    plot_training(results, args.out, title="Digits MLP on SoftBoundsDevice(w_max=0.3, w_min=-0.3)")
    print(f"wrote {args.out} ({time.time() - start:.0f} s)")

    if args.seeds > 0:
        finals: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            for name, curve in train_on_devices(configs(), epochs=args.epochs, seed=seed).items():
                finals.setdefault(name, []).append(curve[-1])
        print(f"\nFinal test accuracy (%) after {args.epochs} epochs, seeds 0-{args.seeds - 1}: "
              "mean +- standard deviation (range)")
        for name, accs in finals.items():
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            print(f"  {name:<18s} {100 * statistics.mean(accs):5.1f} +- {100 * sd:3.1f} "
                  f"({100 * min(accs):.1f} to {100 * max(accs):.1f})")
        print(f"({time.time() - start:.0f} s in all)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
