"""Data-parallel training (DistributedDataParallel, docs/distributed.md):
two gloo processes on localhost train the same small analog model on
different batches; every parameter and every piece of analog state must be
identical across the ranks after the steps, for hardware-aware training
(modifier, clipping, learned input ranges, learned output scales) and for
pulsed training. The expected values of the data initialization of the
input range and of an exact pulsed update are computed here, in one process,
from the concatenated batches.

The two processes run every scenario once (one spawn for the module, about
20 s); each saves what it ends with, the tests compare.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import fxanalog
from fxanalog import InferenceRPUConfig, SingleRPUConfig
from fxanalog.config import PulseType, WeightClipType, WeightModifierType
from fxanalog.optim import AnalogSGD

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")

WORLD, BATCH, STEPS, LR = 2, 6, 3, 0.1


def _hwa_config() -> InferenceRPUConfig:
    cfg = InferenceRPUConfig()
    cfg.modifier.type = WeightModifierType.ADD_NORMAL
    cfg.modifier.std_dev = 0.05
    cfg.clip.type = WeightClipType.FIXED_VALUE
    cfg.clip.fixed_value = 0.3
    cfg.pre_post.input_range.enable = True
    cfg.pre_post.input_range.init_from_data = 2
    cfg.mapping.learn_out_scaling = True
    return cfg


def _exact_pulsed_config() -> SingleRPUConfig:
    """Pulsed training whose update is exact (W -= lr d^T x) and whose
    periphery is perfect: a DDP run must equal one process on the whole batch."""
    cfg = SingleRPUConfig()
    cfg.forward.is_perfect = True
    cfg.backward.is_perfect = True
    cfg.update.pulse_type = PulseType.NONE
    return cfg


SCENARIOS = {
    "plain": InferenceRPUConfig,
    "hwa": _hwa_config,
    "pulsed": SingleRPUConfig,
    "pulsed_exact": _exact_pulsed_config,
    # the same under torch.compile (aot_eager) around the DDP module
    "hwa_compiled": _hwa_config,
    "pulsed_compiled": SingleRPUConfig,
}


def _model(scenario: str) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 12), nn.Tanh(), nn.Linear(12, 3))
    return fxanalog.compile(net, SCENARIOS[scenario]())


def _batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(BATCH, 8, generator=g) * 2.0, torch.randn(BATCH, 3, generator=g)


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}


def _worker(rank: int, port: int, folder: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=WORLD)
    torch.set_num_threads(1)
    try:
        for scenario in SCENARIOS:
            model = _model(scenario)
            ddp = nn.parallel.DistributedDataParallel(model)
            if scenario.endswith("_compiled"):
                torch._dynamo.reset()  # each scenario compiles from scratch, as in its own process
                ddp = torch.compile(ddp, backend="aot_eager")
            opt = AnalogSGD(ddp.parameters(), lr=LR)
            torch.manual_seed(7 + rank)  # every rank its own noise draws
            out = {"before": _state(model)}
            for step in range(STEPS):
                x, y = _batch(rank, step)
                opt.zero_grad()
                loss = nn.functional.mse_loss(ddp(x), y)
                if step == 0 and scenario.startswith("hwa"):
                    out["range_after_first_forward"] = model.get_submodule("0").tile.input_range.detach().clone()
                loss.backward()
                opt.step()
            out["after"] = _state(model)
            torch.save(out, os.path.join(folder, f"{scenario}_{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> dict:
    folder = str(tmp_path_factory.mktemp("ddp"))
    mp.start_processes(_worker, args=(_free_port(), folder), nprocs=WORLD, start_method="spawn", join=True)
    return {s: [torch.load(os.path.join(folder, f"{s}_{r}.pt")) for r in range(WORLD)] for s in SCENARIOS}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_state_is_identical_across_ranks(ranks, scenario):
    a, b = (r["after"] for r in ranks[scenario])
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{scenario}: {key} differs between the ranks"
    before = ranks[scenario][0]["before"]
    assert not torch.equal(before["0.weight"], a["0.weight"]), "the weights did not train"


@pytest.mark.parametrize("scenario", ["hwa", "hwa_compiled"])
def test_hwa_trains_every_learned_state(ranks, scenario):
    before, after = ranks[scenario][0]["before"], ranks[scenario][0]["after"]
    for key in ("0.tile.input_range", "0.tile.out_scaling_alpha", "2.tile.input_range"):
        assert not torch.equal(before[key], after[key]), f"{key} did not change"
    assert after["0.tile.input_range_update_idx"].tolist() == [[2]]
    assert float(after["0.weight"].abs().max()) <= 0.3 + 1e-6  # clipped after every step


@pytest.mark.parametrize("scenario", ["hwa", "hwa_compiled"])
def test_input_range_is_initialized_from_every_ranks_batch(ranks, scenario):
    """The first forward sets the first layer's range to init_std_alpha times
    the std of the inputs of both ranks' batches together (k = 0)."""
    x = torch.cat([_batch(r, 0)[0] for r in range(WORLD)])
    alpha = InferenceRPUConfig().pre_post.input_range.init_std_alpha
    expected = alpha * x.double().flatten().std()
    for r in range(WORLD):
        got = ranks[scenario][r]["range_after_first_forward"]
        torch.testing.assert_close(got.double(), expected.reshape(1, 1), rtol=1e-5, atol=0)


def test_exact_pulsed_update_equals_one_process_on_the_whole_batch(ranks):
    """With a perfect periphery and the exact update, DDP's two half batches
    give the weights one process gets from the concatenated batch (the
    gathered d divided by the ranks, as DDP averages gradients)."""
    model = _model("pulsed_exact")
    opt = AnalogSGD(model.parameters(), lr=LR)
    for step in range(STEPS):
        xs, ys = zip(*(_batch(r, step) for r in range(WORLD)))
        opt.zero_grad()
        nn.functional.mse_loss(model(torch.cat(xs)), torch.cat(ys)).backward()
        opt.step()
    expected = _state(model)
    got = ranks["pulsed_exact"][0]["after"]
    for key in ("0.weight", "0.bias", "2.weight", "2.bias"):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)
