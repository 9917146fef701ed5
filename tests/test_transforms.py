"""torch.func transforms and TorchScript over analog layers (the docstring
of ``fxanalog.ops.tile_mvm``, "Transforms"): vmap runs and matches a loop over the slices; the
differentiating transforms of torch.func and torch.jit.script raise a clear
error naming fxanalog::tile_mvm and what to use instead; torch.autograd
gives the Jacobian the error recommends."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog import FloatingPointRPUConfig, InferenceRPUConfig


def _input_range_config() -> InferenceRPUConfig:
    cfg = InferenceRPUConfig()
    cfg.pre_post.input_range.enable = True
    return cfg


def _model(cfg=None) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    return fxanalog.compile(net, cfg if cfg is not None else FloatingPointRPUConfig())


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_vmap_over_inputs_matches_a_loop_with_its_gradients(mode):
    m = _model()
    getattr(m, mode)()
    x = torch.randn(6, 5, 4)
    mapped = torch.func.vmap(m)(x)
    looped = torch.stack([m(xi) for xi in x])
    torch.testing.assert_close(mapped, looped, rtol=0, atol=0)
    w = m.get_submodule("0").weight
    g_mapped = torch.autograd.grad(mapped.square().sum(), w)[0]
    g_looped = torch.autograd.grad(looped.square().sum(), w)[0]
    torch.testing.assert_close(g_mapped, g_looped, rtol=1e-6, atol=1e-7)


def test_vmap_over_parameters_ensemble():
    m = _model().eval()
    x = torch.randn(5, 4)
    params = {k: torch.stack([p.detach() + 0.05 * i for i in range(3)]) for k, p in m.named_parameters()}
    out = torch.func.vmap(lambda p: torch.func.functional_call(m, p, (x,)))(params)
    for i in range(3):
        expected = torch.func.functional_call(m, {k: v[i] for k, v in params.items()}, (x,))
        torch.testing.assert_close(out[i], expected, rtol=0, atol=0)


REVERSE = {
    "grad": lambda f, x: torch.func.grad(lambda x: f(x).sum())(x),
    "vjp": lambda f, x: torch.func.vjp(f, x)[1](torch.ones(5, 2)),
    "jacrev": lambda f, x: torch.func.jacrev(f)(x),
}
FORWARD = {
    "jvp": lambda f, x: torch.func.jvp(f, (x,), (torch.ones_like(x),)),
    "jacfwd": lambda f, x: torch.func.jacfwd(f)(x),
    "hessian": lambda f, x: torch.func.hessian(lambda x: f(x).sum())(x),
}


@pytest.mark.parametrize("cfg", [FloatingPointRPUConfig, InferenceRPUConfig, _input_range_config],
                         ids=["floating_point", "inference", "input_range"])
@pytest.mark.parametrize("name", list(REVERSE))
def test_reverse_mode_func_transforms_raise_a_clear_error(name, cfg):
    m = _model(cfg())
    with pytest.raises(NotImplementedError, match=r"analog layer '0': torch\.func\.grad.*fxanalog::tile_mvm.*"
                                                  r"torch\.autograd\.functional\.jacobian"):
        REVERSE[name](m, torch.randn(5, 4))


@pytest.mark.parametrize("name", list(FORWARD))
def test_forward_mode_func_transforms_raise_instead_of_zero_tangents(name):
    m = _model().eval()
    with pytest.raises(NotImplementedError, match=r"forward-mode differentiation.*fxanalog::tile_mvm.*no "
                                                  r"forward-mode formula"):
        FORWARD[name](m, torch.randn(5, 4))


def test_autograd_jacobian_is_the_weight_of_a_linear_layer():
    """The way the errors point to: for one analog Linear with a perfect
    periphery, the Jacobian of y = W x + b is W for every sample."""
    torch.manual_seed(0)
    m = fxanalog.compile(nn.Sequential(nn.Linear(4, 3)), FloatingPointRPUConfig()).eval()
    x = torch.randn(2, 4)
    jac = torch.autograd.functional.jacobian(m, x)  # (2, 3, 2, 4)
    w = m.get_submodule("0").weight.detach()
    for b in range(2):
        torch.testing.assert_close(jac[b, :, b, :], w, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(jac[b, :, 1 - b, :], torch.zeros_like(w), rtol=0, atol=0)


def test_jit_script_of_a_compiled_model_or_a_layer_is_refused_clearly():
    m = _model()
    for target in (m, m.get_submodule("0")):
        with pytest.raises(RuntimeError, match=r"torch\.jit\.script: analog layer '0'.*fxanalog::tile_mvm.*not "
                                               r"supported.*torch\.compile.*torch\.export"):
            torch.jit.script(target)
