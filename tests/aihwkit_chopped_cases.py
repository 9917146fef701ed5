"""The buffered / chopped / dynamic transfer cases compared with aihwkit 1.1.0
(tests/test_cells_chopped.py). ``ns`` gives the config classes by aihwkit's
names (fxanalog's or aihwkit's), so both build the same configs.

Every case: a 4 x 6 layer without bias, perfect forward and backward,
deterministic pulses (DETERMINISTIC_IMPLICIT) for the SGD update and the
transfer write, exact constant-step devices (no spread, no noise, bounds
+-10), the weights set to (0..23)/24 - 0.5, a few steps of sum(y * g) with x,
g drawn from a seeded generator, AnalogSGD with the learning rate given.
The choppers switch deterministically (regular input choppers, output
choppers with probability 1). The learning rates and buffer units keep the
buffer away from whole numbers (ties that float32 rounding in a different
order would decide: a fast weight is a whole number of steps).

Run as a script in a virtual environment with aihwkit 1.1.0 (not fxanalog's)
to make the golden data::

    python tests/aihwkit_chopped_cases.py tests/data/aihwkit_chopped_cells.json

It stores, per case, the layer's weights and aihwkit's hidden parameters:
the devices' weights (``hidden_weights_k``), the digital buffer
(``buffered_FP_weight*``) and AGAD's means (``running_mean_weight``,
``past_mean_weight``).
"""

from __future__ import annotations


def device(ns, **kw):
    base = dict(dw_min=0.01, dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max=10.0, w_min=-10.0,
                w_max_dtod=0.0, w_min_dtod=0.0)
    base.update(kw)
    return ns.ConstantStepDevice(**base)


def update(ns, bl=31):
    return ns.UpdateParameters(pulse_type=ns.PulseType.DETERMINISTIC_IMPLICIT, desired_bl=bl)


def write(ns, bl=1):
    """The transfer write: deterministic, no management, ``bl`` slots."""
    return ns.UpdateParameters(pulse_type=ns.PulseType.DETERMINISTIC_IMPLICIT, desired_bl=bl,
                               update_bl_management=False, update_management=False)


def cases(ns) -> dict:
    """name -> (compound, steps, learning rate); the ``*_array`` cases are
    split into tiles: see ``ARRAYS``."""
    perfect = ns.IOParameters(is_perfect=True)
    two = [device(ns), device(ns)]
    return {
        "buffered": (ns.BufferedTransferCompound(
            unit_cell_devices=two, transfer_every=2.0, units_in_mbatch=False, fast_lr=0.5, transfer_lr=2.9,
            transfer_forward=perfect, transfer_update=write(ns)), 3, 0.1),
        "buffered_3": (ns.BufferedTransferCompound(
            unit_cell_devices=[device(ns)] * 3, transfer_every=1.0, gamma=0.5, n_reads_per_transfer=2,
            forget_buffer=False, momentum=0.3, thres_scale=0.7, transfer_lr=6.1, transfer_forward=perfect,
            transfer_update=write(ns)), 5, 0.1),
        "chopped": (ns.ChoppedTransferCompound(
            unit_cell_devices=two, transfer_every=1.0, in_chop_prob=0.5, in_chop_random=False,
            out_chop_prob=1.0, fast_lr=0.5, buffer_granularity=0.37, momentum=0.2, forget_buffer=False,
            transfer_forward=perfect, transfer_update=write(ns, 2)), 3, 0.1),
        "chopped_auto": (ns.ChoppedTransferCompound(
            unit_cell_devices=two, transfer_every=2.0, in_chop_prob=0.0, auto_scale=True, auto_momentum=0.7,
            auto_granularity=23.0, fast_lr=0.2, transfer_forward=perfect, transfer_update=write(ns)), 3, 0.1),
        "chopped_rows": (ns.ChoppedTransferCompound(
            unit_cell_devices=two, transfer_every=1.0, in_chop_prob=0.5, in_chop_random=False,
            transfer_columns=False, fast_lr=0.5, buffer_granularity=0.37, momentum=0.4, transfer_forward=perfect,
            transfer_update=write(ns)), 3, 0.1),
        "agad": (ns.DynamicTransferCompound(
            unit_cell_devices=two, transfer_every=1.0, units_in_mbatch=False, in_chop_prob=0.5,
            tail_weightening=1.0, fast_lr=0.5, buffer_granularity=0.37, transfer_forward=perfect,
            transfer_update=write(ns)), 6, 0.1),
        "chopped_array": (ns.ChoppedTransferCompound(
            unit_cell_devices=two, transfer_every=1.0, in_chop_prob=0.5, in_chop_random=False,
            out_chop_prob=1.0, auto_scale=True, auto_momentum=0.7, auto_granularity=23.0, fast_lr=0.2,
            buffer_granularity=0.37, momentum=0.2, forget_buffer=False, transfer_forward=perfect,
            transfer_update=write(ns, 2)), 4, 0.1),
        "agad_array": (ns.DynamicTransferCompound(
            unit_cell_devices=two, transfer_every=1.0, units_in_mbatch=False, in_chop_prob=0.5,
            tail_weightening=1.0, fast_lr=0.5, buffer_granularity=0.37, transfer_forward=perfect,
            transfer_update=write(ns)), 6, 0.1),
    }


# name -> (in_features, max_input_size, max_output_size): a 4 x 7 layer cut into
# input pieces [3, 2, 2] (uneven: the tiles' sweeps end at different reads)
# and output pieces [2, 2]
ARRAYS = {"chopped_array": (7, 3, 2), "agad_array": (7, 3, 2)}


def shape(name: str) -> tuple[int, int]:
    """(out_features, in_features) of a case's layer."""
    return 4, ARRAYS[name][0] if name in ARRAYS else 6


def steps(torch, n: int, out: int = 4, inp: int = 6) -> list:
    """The (x, g) of n steps, from a generator seeded with 2."""
    g = torch.Generator().manual_seed(2)
    return [(torch.randn(5, inp, generator=g), torch.randn(5, out, generator=g) * 0.3) for _ in range(n)]


def initial_weights(torch, out: int = 4, inp: int = 6):
    return torch.arange(out * inp, dtype=torch.float32).reshape(out, inp) / (out * inp) - 0.5


KEPT = ("hidden_weights", "buffered_FP_weight", "running_mean_weight", "past_mean_weight")


if __name__ == "__main__":  # the golden data, in a venv with aihwkit 1.1.0
    import json
    import sys
    import types

    import torch
    from aihwkit.nn import AnalogLinear, AnalogLinearMapped
    from aihwkit.optim import AnalogSGD
    from aihwkit.simulator import configs
    from aihwkit.simulator.parameters import enums

    ns = types.SimpleNamespace(**{n: getattr(configs, n) for n in dir(configs) if not n.startswith("_")})
    ns.PulseType = enums.PulseType
    out = {}
    for name, (cell, n_steps, lr) in cases(ns).items():
        cfg = configs.UnitCellRPUConfig(device=cell)
        cfg.forward = configs.IOParameters(is_perfect=True)
        cfg.backward = configs.IOParameters(is_perfect=True)
        cfg.update = update(ns)
        cfg.mapping.weight_scaling_omega = 0.0
        n_out, n_in = shape(name)
        if name in ARRAYS:
            _, cfg.mapping.max_input_size, cfg.mapping.max_output_size = ARRAYS[name]
            layer = AnalogLinearMapped(n_in, n_out, bias=False, rpu_config=cfg)
        else:
            layer = AnalogLinear(n_in, n_out, bias=False, rpu_config=cfg)
        layer.set_weights(initial_weights(torch, n_out, n_in))
        opt = AnalogSGD(layer.parameters(), lr=lr)
        opt.regroup_param_groups(layer)
        for x, g in steps(torch, n_steps, n_out, n_in):
            opt.zero_grad()
            (layer(x) * g).sum().backward()
            opt.step()
        if name in ARRAYS:  # the tiles' hidden parameters put together: array[input piece][output piece]
            rows = []
            for o in range(len(layer.analog_module.out_sizes)):
                parts = [layer.analog_module.array[p][o].get_hidden_parameters()
                         for p in range(len(layer.analog_module.in_sizes))]
                rows.append({k: torch.cat([h[k] for h in parts], dim=1) for k in parts[0]})
            hidden = {k: torch.cat([r[k] for r in rows], dim=0) for k in rows[0]}
        else:
            hidden = next(layer.analog_tiles()).get_hidden_parameters()
        out[name] = {"weight": layer.get_weights()[0].tolist(),
                     "hidden": {k: v.tolist() for k, v in hidden.items() if k.startswith(KEPT)}}
    out["_about"] = {"aihwkit": __import__("aihwkit").__version__, "torch": torch.__version__}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
