"""The unit-cell cases compared with aihwkit 1.1.0 (tests/test_cells_aihwkit.py;
scripts/aihwkit_unit_cells_golden.py made tests/data/aihwkit_unit_cells.json
with aihwkit's C++ CPU tile). ``ns`` gives the config classes by aihwkit's
names (fxanalog's or aihwkit's), so both build the same configs.

Every case: a 4 x 6 layer without bias, perfect forward and backward,
deterministic pulses (DETERMINISTIC_IMPLICIT, aihwkit's dense counts), exact
constant-step devices (no spread, no noise, bounds +-10 unless stated), the
weights set to (0..23)/24 - 0.5, a few steps of sum(y * g) with x, g drawn
from a seeded generator, AnalogSGD with the learning rate given. Learning
rates keep the counts away from ties (x.5), where float32 rounding in a
different order would decide."""

from __future__ import annotations


def device(ns, **kw):
    base = dict(dw_min=0.01, dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max=10.0, w_min=-10.0,
                w_max_dtod=0.0, w_min_dtod=0.0)
    base.update(kw)
    return ns.ConstantStepDevice(**base)


def update(ns):
    return ns.UpdateParameters(pulse_type=ns.PulseType.DETERMINISTIC_IMPLICIT, desired_bl=31)


def cases(ns) -> dict:
    """name -> (rpu config without forward/backward/update, steps, learning rate)."""
    perfect = ns.IOParameters(is_perfect=True)
    unit, rank = ns.UnitCellRPUConfig, ns.DigitalRankUpdateRPUConfig
    return {
        "transfer": (unit(device=ns.TransferCompound(
            unit_cell_devices=[device(ns), device(ns)], transfer_every=2.0, units_in_mbatch=False,
            transfer_forward=perfect, transfer_update=update(ns), fast_lr=0.5, transfer_lr=2.0)), 3, 0.1),
        "transfer_mbatch": (unit(device=ns.TransferCompound(
            unit_cell_devices=[device(ns)] * 3, transfer_every=1.0, gamma=0.5, n_reads_per_transfer=2,
            transfer_lr=0.77, transfer_forward=perfect, transfer_update=update(ns))), 3, 0.1),
        "transfer_rows": (unit(device=ns.TransferCompound(
            unit_cell_devices=[device(ns), device(ns)], transfer_every=3.0, units_in_mbatch=False,
            transfer_columns=False, transfer_lr=0.63, transfer_forward=perfect, transfer_update=update(ns))), 3, 0.1),
        "vector_seq": (unit(device=ns.VectorUnitCell(
            unit_cell_devices=[device(ns), device(ns, dw_min=0.02)],
            update_policy=ns.VectorUnitCellUpdatePolicy.SINGLE_SEQUENTIAL)), 2, 0.1),
        "vector_all": (unit(device=ns.VectorUnitCell(unit_cell_devices=[device(ns), device(ns, dw_min=0.02)])),
                       2, 0.1),
        # thresholds of 1: no refresh (aihwkit's refresh writes with a negative learning rate, which its dense
        # pulse types apply in the wrong direction; tests/test_cells.py checks the refresh by hand)
        "onesided": (unit(device=ns.OneSidedUnitCell(
            unit_cell_devices=[device(ns, w_max=1.0, w_min=-1.0, reset_std=0.0)], refresh_every=2,
            units_in_mbatch=False, refresh_upper_thres=1.0, refresh_lower_thres=1.0, refresh_forward=perfect,
            refresh_update=update(ns))), 2, 0.5),
        "mixedprec": (rank(device=ns.MixedPrecisionCompound(device=device(ns), transfer_every=1)), 3, 0.3),
        "mixedprec_rows": (rank(device=ns.MixedPrecisionCompound(
            device=device(ns), transfer_every=2, n_rows_per_transfer=3, transfer_lr=0.9)), 4, 0.3),
    }


def steps(torch, n: int) -> list:
    """The (x, g) of n steps, from a generator seeded with 1."""
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(5, 6, generator=g), torch.randn(5, 4, generator=g) * 0.3) for _ in range(n)]


def initial_weights(torch):
    return torch.arange(24, dtype=torch.float32).reshape(4, 6) / 24 - 0.5
