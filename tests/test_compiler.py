"""The compiler on the model zoo (tests/zoo.py): exactness with ideal tiles,
one analog layer per weight matmul (counted by an independent dispatcher
trace), the noise level against its first-order prediction, dumps and
summaries."""

from __future__ import annotations

import json
import math

import networkx as nx
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import fxanalog
from fxanalog.config import BoundManagementType, NoiseManagementType
from tests import zoo

aten = torch.ops.aten
_MATMUL_OPS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.convolution.default,
               aten.baddbmm.default}


class WeightMatmuls(TorchDispatchMode):
    """Records which parameters enter a matmul or convolution kernel (through
    views such as ``.t()``), at the level of the aten dispatcher."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.ptrs = {}
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                self.ptrs.setdefault(p.untyped_storage().data_ptr(), name)
        self.used: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _MATMUL_OPS:
            for a in tree_flatten((args, kwargs or {}))[0]:
                if isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() in self.ptrs:
                    self.used.add(self.ptrs[a.untyped_storage().data_ptr()])
        return func(*args, **(kwargs or {}))


def weight_matmuls(name: str, model: nn.Module) -> set[str]:
    """Parameters used by a matmul in any branch of the model, except the
    recurrent layers' (which stay digital by design)."""
    digital = {f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, nn.RNNBase)
               for p, _ in m.named_parameters()}
    mode = WeightMatmuls(model)
    with torch.enable_grad(), mode:  # gradients on: no fused attention fast path
        for x in zoo.all_branch_inputs(name, model):
            model(*x)
    return mode.used - digital


def fp_config():
    return fxanalog.FloatingPointRPUConfig()


@pytest.fixture(scope="module")
def compiled():
    """Each zoo model compiled once with ideal tiles (shared by the tests)."""
    out = {}
    for name in zoo.ZOO:
        model = zoo.build(name)
        out[name] = (model, fxanalog.compile(model, fp_config(), example_inputs=zoo.inputs(name)).eval())
    return out


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_ideal_tiles_equal_digital(name, compiled):
    model, analog = compiled[name]
    for x in zoo.all_branch_inputs(name, model):
        with torch.no_grad():
            ref, out = model(*x), analog(*x)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


# wpe: a positional embedding table added to the tokens (2-D, not a matmul weight): listed.
EXPECTED_DIGITAL = {"lstm": {"lstm"}, "gpt": {"wte", "wpe"}}


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_one_analog_layer_per_weight_matmul(name, compiled):
    model, analog = compiled[name]
    used = weight_matmuls(name, model)
    assert len(used) > 0
    tiles = dict(analog.named_analog_layers())
    assert len(tiles) == len(used), (sorted(tiles), sorted(used))
    # Every matmul weight is the weight of one analog layer (same values).
    analog_weights = {id(layer.weight) for layer in tiles.values()}
    assert len(analog_weights) == len(used)
    records = analog.layer_records()
    digital = {r.name for r in records if not r.analog}
    assert digital == EXPECTED_DIGITAL.get(name, set())
    for r in records:
        assert r.converted_by in ("module", "functional", "fallback-swap", "digital")
        assert (r.digital_reason is not None) == (r.converted_by == "digital")


def test_how_each_layer_was_converted(compiled):
    by = {name: {r.name: r.converted_by_text for r in a.layer_records()} for name, (_, a) in compiled.items()}
    assert by["mlp"] == {"fc1": "module", "fc2": "module", "fc3": "module"}
    assert by["encoder"]["attn.in_proj"] == "module" and by["encoder"]["attn.out_proj"] == "module"
    assert by["encoder"]["analog_w1"] == "functional"
    assert by["gpt"]["block.c_proj"] == "functional"  # HF Conv1D: the layer takes the owner's place
    assert by["gpt"]["analog_wte_weight"] == "functional"  # the tied head
    assert by["control_flow"]["gate.fc2"] == "fallback-swap" and by["control_flow"]["inp"] == "module"
    assert by["lstm"]["lstm"].startswith("digital: recurrent")


def test_tied_head_shares_the_embedding_parameter(compiled):
    _, analog = compiled["gpt"]
    assert analog.analog_wte_weight.weight is analog.wte.weight
    assert analog.analog_wte_weight.transposed is False  # x @ W.t(): W stored (out, in)
    assert analog.analog_block_w_qkv.transposed is True  # x @ W: W stored (in, out)


def test_noise_of_default_tiles_on_linear_layers():
    """Default InferenceRPUConfig on the MLP: each layer adds output noise of
    std sigma * max|x| per input vector (noise management), sigma the
    quadrature sum of out_noise = 0.06 and the ADC's rounding (step
    2 * out_bound * out_res = 24/510, std step/sqrt(12)): sigma = 0.0615. A
    simulation of that written here (hooks on the digital model) must give
    the same mean relative error as the compiled model within 12% (20 draws
    each of 64 inputs: the statistical spread is about 3%)."""
    sigma = math.hypot(0.06, 24 / 510 / math.sqrt(12))
    model = zoo.build("mlp")
    analog = fxanalog.compile(model, fxanalog.InferenceRPUConfig()).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 20, generator=g)

    def noisy(mod, inp, out):
        return out + sigma * inp[0].abs().amax(dim=-1, keepdim=True) * torch.randn(out.shape, generator=g)

    with torch.no_grad():
        ref = model(x)
        torch.manual_seed(4)
        err_analog = sum(((analog(x) - ref).norm() / ref.norm()).item() for _ in range(20)) / 20
        hooks = [m.register_forward_hook(noisy) for m in model.modules() if isinstance(m, nn.Linear)]
        err_sim = sum(((model(x) - ref).norm() / ref.norm()).item() for _ in range(20)) / 20
        for h in hooks:
            h.remove()
    assert err_analog == pytest.approx(err_sim, rel=0.12)


def additive_noise_config(sigma: float):
    """Tiles whose only non-ideality is output noise of standard deviation
    ``sigma``, in the layer's own units: no noise management (alpha = 1), no
    DAC or ADC quantization, no bounds (docs/tile.md, steps 1-8). A tile layer
    then computes W x + sigma * xi per output and input piece."""
    cfg = fxanalog.InferenceRPUConfig()
    f = cfg.forward
    f.noise_management, f.bound_management = NoiseManagementType.NONE, BoundManagementType.NONE
    f.inp_res, f.out_res = -1.0, -1.0  # quantization off
    f.inp_bound, f.out_bound = 1e6, 0.0  # no input clipping, unbounded output
    f.out_noise = sigma
    return cfg


def batch_inputs(name: str, model: nn.Module, n: int) -> list:
    """Input tuples of about ``n`` samples (the zoo's inputs of several seeds
    stacked) that together run every branch of the model."""
    if name == "control_flow":  # the gate's branch depends on the whole batch: one batch per branch
        found = {}
        with torch.no_grad():
            for seed in range(200):
                x = torch.randn(n, 10, generator=torch.Generator().manual_seed(seed))
                total = float(model.inp(x).sum())
                if abs(total) > 1.0:  # far from the branch point: the noise cannot flip it
                    found.setdefault(total > 0, (x,))
                if len(found) == 2:
                    return list(found.values())
        raise AssertionError("no input takes both branches")
    per = zoo.inputs(name)[0].shape[0]
    parts = [zoo.inputs(name, seed) for seed in range(1, 1 + max(1, n // per))]
    return [tuple(torch.cat(xs) for xs in zip(*parts))]


def noise_power_to_first_order(exact: nn.Module, inputs: list) -> float:
    """sum_l pieces_l * ||d out / d y_l||_F^2 over the tile layers l of the
    exact (floating-point) analog model: E||out_noisy - out||^2 / sigma^2 to
    first order in sigma, when each tile adds independent noise of std sigma
    to each output y_l (pieces_l: the layer's input pieces, whose partial
    sums each carry their own noise). The Jacobians are taken with zero
    probes added to every tile layer's output; the samples of a batch do not
    interact, so one gradient per output coordinate of a sample serves the
    whole batch."""
    probes = []

    def probe(module, args, out):
        p = torch.zeros_like(out, requires_grad=True)
        probes.append((p, len(module.in_sizes)))
        return out + p

    hooks = [layer.register_forward_hook(probe) for _, layer in exact.named_analog_layers()]
    total = 0.0
    try:
        for x in inputs:
            probes.clear()
            with torch.enable_grad():
                out = exact(*x)
                flat = out.reshape(out.shape[0], -1)
                ps, k = [p for p, _ in probes], flat.shape[1]
                if k <= 64:  # one backward pass per output coordinate
                    grads = [torch.autograd.grad(flat[:, i].sum(), ps, retain_graph=True, allow_unused=True)
                             for i in range(k)]
                else:  # all at once (vmap over the backward pass)
                    basis = torch.eye(k).unsqueeze(1).expand(k, flat.shape[0], k)
                    grads = [torch.autograd.grad(flat, ps, grad_outputs=basis, is_grads_batched=True,
                                                 allow_unused=True)]
            for gs in grads:
                total += sum(pieces * float(g.square().sum()) for g, (_, pieces) in zip(gs, probes) if g is not None)
    finally:
        for h in hooks:
            h.remove()
    return total


# Samples per batch and noise draws of the noise test: each model's 4-sigma
# statistical band below 8% (measured 1.5% to 6.5%) in a fraction of a second.
NOISE_SAMPLES = {"encoder": (4, 200), "gpt": (4, 200), "lenet": (16, 100), "resnet": (16, 100)}


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_output_noise_has_the_predicted_power(name):
    """Every zoo model on tiles whose only non-ideality is output noise.
    Without noise the analog model computes the digital one to float
    precision. With noise of std sigma = 0.002 its mean squared error over
    R draws matches sigma^2 * noise_power_to_first_order (computed on the
    exact compiled model, independently of the tile op's noise): within 4
    standard errors of the mean (the draws' own spread; a false alarm about
    once in 10^4 per model) plus 0.5% for the second-order terms of the
    nonlinearities (ReLU and max-pool switching, softmax, layer norms: the
    same draws scaled to sigma = 0.01 move the mean error by at most 0.6%,
    LeNet's max-pools, so at sigma = 0.002 by about 0.1%)."""
    sigma = 0.002
    n, draws = NOISE_SAMPLES.get(name, (16, 200))
    model = zoo.build(name)
    inputs = batch_inputs(name, model, n)
    exact = fxanalog.compile(model, fp_config()).eval().requires_grad_(False)
    predicted = sigma**2 * noise_power_to_first_order(exact, inputs)
    quiet = fxanalog.compile(model, additive_noise_config(0.0)).eval()
    noisy = fxanalog.compile(model, additive_noise_config(sigma)).eval()
    torch.manual_seed(0)
    errors = torch.zeros(draws, dtype=torch.float64)
    with torch.no_grad():
        for x in inputs:
            ref = model(*x)
            torch.testing.assert_close(quiet(*x), ref, rtol=1e-5, atol=1e-5)
            # The draws as one batch: every copy of a sample gets its own noise.
            copies = tuple(t.repeat(draws, *([1] * (t.dim() - 1))) for t in x)
            diff = noisy(*copies) - ref.repeat(draws, *([1] * (ref.dim() - 1)))
            errors += diff.reshape(draws, -1).double().square().sum(dim=1)
    mean, band = float(errors.mean()), 4 * float(errors.std()) / math.sqrt(draws)
    assert band < 0.08 * predicted, (band, predicted)
    assert abs(mean - predicted) < band + 0.005 * predicted, (mean, predicted, band)


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_dumps_and_summary(name, compiled):
    model, analog = compiled[name]
    x = zoo.inputs(name)
    n_tiles = len(list(analog.named_analog_layers()))
    text = fxanalog.dump(analog, "text")
    for layer_name, _ in analog.named_analog_layers():
        assert layer_name in text
    data = json.loads(fxanalog.dump(analog, "json", example_inputs=x))
    assert data["schema"] == "fxanalog.dump/1"
    assert sum(1 for layer in data["layers"] if not layer["converted_by"].startswith("digital")) == n_tiles
    dot = fxanalog.dump(analog, "dot")
    assert dot.startswith("digraph") and dot.rstrip().endswith("}") and "fillcolor" in dot
    g = fxanalog.dump(analog, "networkx")
    assert isinstance(g, nx.DiGraph) and g.number_of_nodes() == len(data["nodes"])
    s = fxanalog.analog_summary(analog, x)
    assert s.totals["analog_layers"] == n_tiles
    assert s.totals["tiles"] == sum(layer.num_tiles for _, layer in analog.named_analog_layers())
    assert str(s).count("\n") >= len(s.rows) + 2
