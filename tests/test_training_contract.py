"""The contract by which a training step's (x, d) reach the tile that will
update its weights (docs/architecture.md, "One training step").

A tile that records (``AnalogTile.record_updates``, or a config class with
``records_updates = True``) receives, at every backward pass, the raw input x
of its tile op and the gradient d of the tile array's output in tile units,
through the effectful op ``fxanalog::tile_record``. These tests check what
it receives against values computed independently (the digital model's
activations and output gradients, by autograd), in eager mode, after
``fxanalog.compile``, under ``torch.compile`` (inductor) of a compiled model,
and under the ``fxanalog`` torch.compile backend.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog import FloatingPointRPUConfig
from fxanalog.nn.modules import AnalogLinear, named_analog_layers


@dataclasses.dataclass(repr=False)  # (not registered: it stays out of the config reference)
class RecordingConfig(FloatingPointRPUConfig):
    """An exact tile that records its (x, d) from construction: what a
    pulsed-training config will be."""

    records_updates = True


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _expected(net: nn.Module, xs: list[torch.Tensor], scales: dict) -> dict:
    """Per layer index: the concatenated inputs and output gradients of the
    digital network over the batches ``xs`` (loss: sum of squares), the
    gradients multiplied by the layer's mapping scales (tile units)."""
    out = {0: ([], []), 2: ([], [])}
    for x in xs:
        h = net[0](x)
        h.retain_grad()
        a = net[1](h)
        y = net[2](a)
        y.retain_grad()
        y.square().sum().backward()
        out[0][0].append(x)
        out[0][1].append(h.grad * scales.get(0, 1.0))
        out[2][0].append(a.detach())
        out[2][1].append(y.grad * scales.get(2, 1.0))
    return {k: (torch.cat(v[0]), torch.cat(v[1])) for k, v in out.items()}


def _check(tiles: dict, expected: dict) -> None:
    for k, tile in tiles.items():
        got = tile.recorded_updates()
        assert got is not None, f"layer {k} recorded nothing"
        x, d = got
        ex, ed = expected[k]
        assert x.shape == (1,) + tuple(ex.shape) and d.shape == (1,) + tuple(ed.shape)
        torch.testing.assert_close(x[0], ex, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(d[0], ed, atol=1e-5, rtol=1e-5)
        assert tile.recorded_updates() is None  # taken


def _run(model: nn.Module, xs: list[torch.Tensor]) -> None:
    for x in xs:
        model(x).square().sum().backward()


BATCHES = [torch.randn(4, 6, generator=torch.Generator().manual_seed(1)),
           torch.randn(3, 6, generator=torch.Generator().manual_seed(2))]


def test_eager_layers_record_raw_inputs_and_output_gradients():
    net = _net()
    model = nn.Sequential(AnalogLinear.from_digital(net[0], FloatingPointRPUConfig()), nn.Tanh(),
                          AnalogLinear.from_digital(net[2], FloatingPointRPUConfig()))
    for i in (0, 2):
        model[i].tile.record_updates(True)
    _run(model, BATCHES)  # two steps: their rows are concatenated
    _check({0: model[0].tile, 2: model[2].tile}, _expected(net, BATCHES, {}))


def test_gradient_is_in_tile_units_with_weight_scaling():
    net = _net()
    cfg = RecordingConfig()
    cfg.mapping.weight_scaling_omega = 1.0  # tile = W / alpha, alpha = max|W| per layer
    model = fxanalog.compile(net, cfg)
    tiles = {int(name): layer.tile for name, layer in named_analog_layers(model)}
    scales = {k: float(net[k].weight.detach().abs().max()) for k in (0, 2)}
    _run(model, BATCHES)
    _check(tiles, _expected(net, BATCHES, scales))


def test_no_records_without_recording():
    net = _net()
    model = fxanalog.compile(net, FloatingPointRPUConfig())
    _run(model, BATCHES)
    assert all(layer.tile.recorded_updates() is None for _, layer in named_analog_layers(model))


def test_recording_can_stop():
    net = _net()
    model = fxanalog.compile(net, RecordingConfig())
    _run(model, BATCHES[:1])
    for _, layer in named_analog_layers(model):
        layer.tile.record_updates(False)  # drops what was recorded, records nothing more
    _run(model, BATCHES[1:])
    assert all(layer.tile.recorded_updates() is None for _, layer in named_analog_layers(model))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_of_a_compiled_model_records_at_run_time(backend):
    # The backward is traced by AOTAutograd; the effectful record op runs at
    # run time on real tensors, every step (also for the first layer, whose
    # input gradient is not needed).
    net = _net()
    model = fxanalog.compile(net, RecordingConfig())
    tiles = {int(name): layer.tile for name, layer in named_analog_layers(model)}
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    _run(compiled, BATCHES)
    _check(tiles, _expected(net, BATCHES, {}))
    _run(compiled, BATCHES)  # again: recompiled graphs (new batch sizes) still record, every step
    _check(tiles, _expected(net, BATCHES, {}))


def test_fxanalog_backend_records_with_inductor():
    torch._dynamo.reset()
    net = _net()
    be = fxanalog.backend(RecordingConfig(), inner="inductor", model=net)
    compiled = torch.compile(net, backend=be)
    _run(compiled, BATCHES)
    tiles = {int(name.split(".")[0]): layer.tile for name, layer in be.named_analog_layers()}
    assert sorted(tiles) == [0, 2]
    fresh = _net()  # the same initial weights: the reference
    _check(tiles, _expected(fresh, BATCHES, {}))
    torch._dynamo.reset()
