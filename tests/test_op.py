"""The custom op fxanalog::tile_mvm under torch.library's checks, torch.compile and torch.export."""

import pytest
import torch

import fxanalog
from fxanalog import FloatingPointRPUConfig, InferenceRPUConfig, IOParameters
from fxanalog.nn import AnalogConv2d, AnalogLinear
from fxanalog.geometry import layout_tiles, split_sizes
from fxanalog.ops import TileIO


def _args(io: IOParameters, requires_grad=False):
    torch.manual_seed(0)
    ins, outs = split_sizes(10, 4), split_sizes(6, 4)
    w = torch.randn(2, 6, 10)
    x = torch.randn(2, 5, 10, requires_grad=requires_grad)
    tiles = layout_tiles(w, ins).detach().requires_grad_(requires_grad)
    bias = torch.randn(12, requires_grad=requires_grad)
    return (x, tiles, ins, outs, torch.rand(12) + 0.5, bias, TileIO.pack(io), TileIO.pack(IOParameters(is_perfect=True)),
            -1)


def test_opcheck_schema_fake_and_autograd_registration():
    # opcheck compares runs, so the forward must be deterministic here.
    args = _args(IOParameters(is_perfect=True), requires_grad=True)
    torch.library.opcheck(torch.ops.fxanalog.tile_mvm.default, args)
    quiet = IOParameters(out_noise=0.0)
    torch.library.opcheck(torch.ops.fxanalog.tile_mvm.default, _args(quiet, requires_grad=True))


def test_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    args = _args(InferenceRPUConfig().forward)
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        out = torch.ops.fxanalog.tile_mvm(*fake)
    assert out.shape == (2, 5, 6) and out.dtype == torch.float32


def test_op_is_marked_random():
    assert torch.Tag.nondeterministic_seeded in torch.ops.fxanalog.tile_mvm.default.tags


def _model(cfg):
    torch.manual_seed(1)
    return torch.nn.Sequential(
        AnalogConv2d(3, 4, 3, rpu_config=cfg), torch.nn.ReLU(), torch.nn.Flatten(), AnalogLinear(4 * 6 * 6, 5, rpu_config=cfg)
    )


def test_torch_compile_inductor_fullgraph():
    model = _model(FloatingPointRPUConfig())
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(model, backend="inductor", fullgraph=True)
    y = compiled(x)
    assert torch.allclose(y, model(x), atol=1e-5)
    y.sum().backward()
    assert model[3].weight.grad is not None and model[0].weight.grad is not None


def test_torch_compile_keeps_noise_fresh():
    model = _model(InferenceRPUConfig()).eval()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        a, b = compiled(x), compiled(x)
        fxanalog.manual_seed(3)
        c = compiled(x)
        fxanalog.manual_seed(3)
        d = model(x)
    assert not torch.equal(a, b)  # noise drawn anew at every call
    assert torch.equal(c, d)  # same generator, same draws as eager


def test_torch_export_contains_the_tile_op():
    model = _model(InferenceRPUConfig()).eval()
    x = torch.randn(2, 3, 8, 8)
    ep = torch.export.export(model, (x,))
    ops = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert ops.count(torch.ops.fxanalog.tile_mvm.default) == 2
    fxanalog.manual_seed(4)
    a = ep.module()(x)
    fxanalog.manual_seed(4)
    b = model(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("fields", [{}, {"is_perfect": True}, {"out_noise": 0.0, "bound_management": "NONE"}])
def test_op_output_is_a_fresh_tensor(fields):
    # Never a view of another tensor (an in-place op on the result would
    # otherwise fail or write into the op's internals): one piece or several,
    # with or without column scales and bias, and an empty batch.
    from fxanalog.config import BoundManagementType

    if fields.get("bound_management") == "NONE":
        fields = dict(fields, bound_management=BoundManagementType.NONE)
    io = TileIO.pack(IOParameters(**fields))
    perfect = TileIO.pack(IOParameters(is_perfect=True))
    w = torch.randn(1, 6, 10)
    for ins in ([10], [4, 3, 3]):
        tiles = layout_tiles(w, ins)
        for col, bias in ((None, None), (None, torch.randn(6)), (torch.rand(6) + 0.5, torch.randn(6))):
            for B in (5, 0):
                x = torch.randn(1, B, 10)
                y = torch.ops.fxanalog.tile_mvm(x, tiles, ins, [6], col, bias, io, perfect, -1)
                assert y._base is None and y.shape == (1, B, 6)
                if B:  # (empty tensors share the null storage pointer)
                    assert y.untyped_storage().data_ptr() not in (x.untyped_storage().data_ptr(),
                                                                  tiles.untyped_storage().data_ptr())


def test_in_place_activation_after_one_piece_layers_trains():
    # nn.ReLU(inplace=True) right after analog layers of one tile (linear and
    # conv): forward and backward as with ReLU(inplace=False), whose
    # gradients are computed independently by autograd.
    cfg = InferenceRPUConfig()
    cfg.forward.out_noise = 0.0
    for inplace_net, shape in (
        (lambda r: torch.nn.Sequential(AnalogLinear(10, 6, rpu_config=cfg), torch.nn.ReLU(inplace=r),
                                       AnalogLinear(6, 3, rpu_config=cfg)), (4, 10)),
        (lambda r: torch.nn.Sequential(AnalogConv2d(3, 4, 3, rpu_config=cfg), torch.nn.ReLU(inplace=r),
                                       AnalogConv2d(4, 2, 3, rpu_config=cfg)), (2, 3, 8, 8)),
    ):
        torch.manual_seed(5)
        a = inplace_net(True)
        torch.manual_seed(5)
        b = inplace_net(False)
        x = torch.randn(*shape)
        ya, yb = a(x), b(x)
        assert torch.equal(ya, yb)
        ya.square().sum().backward()
        yb.square().sum().backward()
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert pa.grad is not None and torch.equal(pa.grad, pb.grad)


# --------------------------------------------------------------------------
# The eager fast path (fxanalog.ops.dispatch.plain_eager)


def _noisy_args(requires_grad, update_key=-1):
    io = InferenceRPUConfig().forward  # noisy, quantized, bounded
    x, tiles, ins, outs, col, bias, fio, _, _ = _args(io, requires_grad=requires_grad)
    return x, tiles, ins, outs, col, bias, fio, TileIO.pack(InferenceRPUConfig().backward), update_key


def test_eager_path_is_the_op_draw_for_draw():
    """The direct call (``mvm`` in plain eager mode) and the op through the
    dispatcher run the same functions: under one seed the same output, and
    the same input, weight and bias gradients (through the noisy backward)."""
    from fxanalog.ops.tile_mvm import mvm

    results = []
    for call in (mvm, torch.ops.fxanalog.tile_mvm):
        args = _noisy_args(requires_grad=True)
        torch.manual_seed(5)
        y = call(*args)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        results.append((y.detach(), args[0].grad, args[1].grad, args[5].grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    assert results[0][0].abs().sum() > 0 and results[0][1].abs().sum() > 0


def test_eager_path_records_for_the_update_as_the_op():
    """A recording call hands the same (x, d) to its tile either way."""
    from fxanalog.ops.tile_mvm import mvm
    from fxanalog.ops.tile_record import register_recorder

    seen = []
    key = register_recorder(lambda x, d: seen.append((x.clone(), d.clone())))
    for call in (mvm, torch.ops.fxanalog.tile_mvm):
        args = _noisy_args(requires_grad=False, update_key=key)
        tiles = args[1].detach().requires_grad_(True)
        torch.manual_seed(6)
        call(args[0], tiles, *args[2:]).sum().backward()
    (x1, d1), (x2, d2) = seen
    assert torch.equal(x1, x2) and torch.equal(d1, d2) and d1.abs().sum() > 0


def test_tracers_and_modes_see_the_op():
    """Under fx tracing, a dispatch mode (make_fx), a torch function mode,
    fake tensors and torch.func.vmap the call goes through the op, so the
    traced graph holds fxanalog::tile_mvm and not its decomposition."""
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.overrides import TorchFunctionMode

    from fxanalog.ops import dispatch
    from fxanalog.ops.tile_mvm import mvm

    args = _noisy_args(requires_grad=False)
    x, tiles = args[0], args[1]
    assert dispatch.plain_eager(x, tiles, None)

    def f(x, tiles):
        return mvm(x, tiles, *args[2:])

    gm = make_fx(f)(x, tiles)
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert any("fxanalog.tile_mvm" in t for t in targets), targets

    class Call(torch.nn.Module):
        def forward(self, x, tiles):
            return f(x, tiles)

    traced = torch.fx.symbolic_trace(Call())  # fx proxies are not plain tensors
    assert any(n.op == "call_function" and "fxanalog.tile_mvm" in str(n.target) for n in traced.graph.nodes)

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, a=(), kw=None):
            return func(*a, **(kw or {}))

    with Mode():
        assert not dispatch.plain_eager(x, tiles)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        assert not dispatch.plain_eager(mode.from_tensor(x), mode.from_tensor(tiles))
    seen = []
    torch.func.vmap(lambda xi: seen.append(dispatch.plain_eager(xi)) or xi)(x)
    assert seen == [False]


def test_eager_update_bumps_the_weights_version_as_the_op():
    """The pulsed update writes the weights in place: either way of calling
    it bumps their version counter once, so autograd sees the change."""
    from torch import nn

    from fxanalog import ConstantStepDevice, SingleRPUConfig
    from fxanalog.ops.tile_update import update
    from fxanalog.ops.tile_update_torch import PulsedUpdate, pack_rule, pack_update

    layer = AnalogLinear.from_digital(nn.Linear(8, 8), SingleRPUConfig(device=ConstantStepDevice()))
    st = layer.tile.device_state
    up = PulsedUpdate.of(layer.rpu_config.update, 0.001)
    args = (torch.randn(1, 4, 8), torch.randn(1, 4, 8), st.params, 0.1, pack_update(up), pack_rule(st.rule), [8], [8])
    for call in (update, torch.ops.fxanalog.tile_update):
        w = layer.weight.detach().reshape(1, 8, 8).clone()
        before = w._version
        call(w, *args)
        assert w._version == before + 1
