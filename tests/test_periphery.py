"""The DAC and ADC passes in C (``fxanalog._periphery``) against the torch
ops they replace in ``fxanalog.ops.tile_mvm_torch`` (docs/tile.md, "The
periphery in C"): the same numbers from the same seed, over the settings
and the special inputs (zero, tiny, NaN and infinite values, saturation)."""

import itertools
import math

import pytest
import torch

import fxanalog.ops.tile_mvm_torch as mvm_torch
from fxanalog import BoundManagementType, InferenceRPUConfig, IOParameters, NoiseManagementType
from fxanalog.nn import AnalogLinear
from fxanalog.ops.io import TileIO

pytestmark = pytest.mark.skipif(mvm_torch.native is None, reason="fxanalog._periphery was not built (no C compiler)")


class Counting:
    """The extension with a count of the calls of each function."""

    def __init__(self, native):
        self.native, self.calls = native, {}

    def __getattr__(self, name):
        fn = getattr(self.native, name)

        def counted(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            return fn(*args)

        return counted


def forward(io, x, tiles, bias, col_scale, native):
    """tile_forward with the C passes (``native``) or the torch ops (None), seed 5."""
    saved = mvm_torch.native
    mvm_torch.native = native
    try:
        torch.manual_seed(5)
        return mvm_torch.tile_forward(x, tiles, [tiles.shape[2]], [tiles.shape[3]], io, col_scale, bias)
    finally:
        mvm_torch.native = saved


def assert_same(a, b, fused_bias):
    """Equal bit for bit; with a bias the C pass rounds y * alpha + bias once
    (a fused multiply-add), which torch.addcmul does on CPUs with FMA (else
    it rounds twice): there, at most one float32 rounding step apart."""
    assert torch.equal(a.isnan(), b.isnan())
    a, b = a.nan_to_num(), b.nan_to_num()
    if not fused_bias:
        assert torch.equal(a, b)
    else:
        assert ((a - b).abs() <= b.abs() * 2.0**-23 + 1e-30).all()


@pytest.mark.parametrize("nm, bm, out_noise, nm_thres, inp_noise, inp_res, out_res, out_bound", [
    *itertools.product([NoiseManagementType.ABS_MAX, NoiseManagementType.CONSTANT, NoiseManagementType.NONE],
                       [BoundManagementType.ITERATIVE, BoundManagementType.NONE], [0.0, 0.06], [0.0, 0.5],
                       [0.0], [1 / 254], [1 / 510], [12.0]),
    (NoiseManagementType.ABS_MAX, BoundManagementType.ITERATIVE, 0.06, 0.0, 0.02, 1 / 254, 1 / 510, 12.0),
    (NoiseManagementType.ABS_MAX, BoundManagementType.ITERATIVE, 0.06, 0.0, 0.0, 0.0, 1 / 510, 12.0),  # no DAC steps
    (NoiseManagementType.ABS_MAX, BoundManagementType.ITERATIVE, 0.06, 0.0, 0.0, 1 / 254, 0.0, 12.0),  # no ADC steps
    (NoiseManagementType.ABS_MAX, BoundManagementType.NONE, 0.06, 0.0, 0.0, 1 / 254, 1 / 510, 0.0),  # unbounded
])
@pytest.mark.parametrize("scale", [1.0, 6.0])  # 6: weights and inputs that saturate the ADC
def test_c_passes_give_the_torch_ops_numbers(nm, bm, out_noise, nm_thres, inp_noise, inp_res, out_res, out_bound,
                                             scale):
    io = TileIO.unpack(TileIO.pack(IOParameters(
        noise_management=nm, bound_management=bm, out_noise=out_noise, nm_thres=nm_thres, inp_noise=inp_noise,
        inp_res=inp_res, out_res=out_res, out_bound=out_bound)))
    G, B, K, N = 3, 40, 37, 29  # K and N not multiples of the SIMD width: the loops' tails run too
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(G, B, K, generator=gen) * scale
    tiles = torch.randn(G, 1, K, N, generator=gen) * (0.1 * scale)
    bias, col_scale = torch.randn(G * N, generator=gen), torch.rand(G * N, generator=gen) + 0.5
    for b, c in ((None, None), (bias, None), (None, col_scale), (bias, col_scale)):
        counting = Counting(mvm_torch.native)
        got = forward(io, x, tiles, b, c, counting)
        assert counting.calls.get("dac") == 1  # the C path ran
        assert_same(got, forward(io, x, tiles, b, c, None), fused_bias=b is not None and c is None)


@pytest.mark.parametrize("case", ["zero row", "tiny row", "nan", "inf", "huge"])
def test_c_passes_on_special_inputs(case):
    io = TileIO.unpack(TileIO.pack(IOParameters()))  # the defaults: ABS_MAX, 7/9 bits, iterative bounds
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 16, 50, generator=gen)
    tiles = torch.randn(1, 1, 50, 20, generator=gen) * 0.1
    bias = torch.randn(20, generator=gen)
    if case == "zero row":
        x[0, 3] = 0.0
    elif case == "tiny row":
        x[0, 3] *= 2.0**-70  # a scale below 2^-64: the torch ops' exact rescaling
    elif case == "nan":
        x[0, 3, 7] = math.nan
    elif case == "inf":
        x[0, 5, 2] = math.inf
        tiles[0, 0, 4, 6] = -math.inf
    else:
        x[0, 2] *= 1e30
    for b in (None, bias):
        assert_same(forward(io, x, tiles, b, None, mvm_torch.native), forward(io, x, tiles, b, None, None),
                    fused_bias=b is not None)


def test_c_passes_on_threads_for_large_batches():
    # 300 x 400 inputs: more than the 2^16 elements from which a pass is split among threads
    io = TileIO.unpack(TileIO.pack(IOParameters()))
    gen = torch.Generator().manual_seed(3)
    x, tiles = torch.randn(1, 300, 400, generator=gen), torch.randn(1, 1, 400, 250, generator=gen) * 0.05
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = forward(io, x, tiles, None, None, mvm_torch.native)
        torch.set_num_threads(1)
        b = forward(io, x, tiles, None, None, mvm_torch.native)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b)
    assert torch.equal(a, forward(io, x, tiles, None, None, None))


def test_adc_pass_rounds_half_to_even_and_returns_the_largest_magnitude():
    y = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 2.0**22 + 0.5, 2.0**23 - 0.5, 2.0**23 + 1,
                      -(2.0**22) - 1.5, 1e30, -0.0, 1e-40, -3.7, 255.5])
    want = torch.round(y)
    got = y.clone()
    top = mvm_torch.native.adc(got.data_ptr(), got.numel(), True, 1)
    assert torch.equal(got, want) and torch.equal(got.signbit(), want.signbit())
    assert top == want.abs().max().item() == torch.tensor(1e30).item()
    special = torch.tensor([math.inf, -math.inf, 3.0, math.nan])
    got = special.clone()
    assert math.isnan(mvm_torch.native.adc(got.data_ptr(), got.numel(), True, 1))  # a NaN wins the max
    assert torch.equal(got[:3], special[:3]) and math.isnan(got[3])
    got = torch.tensor([-7.25, 3.5])
    assert mvm_torch.native.adc(got.data_ptr(), 2, False, 1) == 7.25 and got.tolist() == [-7.25, 3.5]  # unrounded


def test_layer_forward_takes_the_c_passes_only_where_they_apply(monkeypatch):
    counting = Counting(mvm_torch.native)
    monkeypatch.setattr(mvm_torch, "native", counting)
    x = torch.randn(8, 20)
    AnalogLinear(20, 10, rpu_config=InferenceRPUConfig())(x)
    assert counting.calls == {"dac": 1, "adc": 1, "scale": 1}
    for field, value in (("noise_management", NoiseManagementType.MAX), ("inp_sto_round", True),
                         ("out_sto_round", True)):
        cfg = InferenceRPUConfig()
        setattr(cfg.forward, field, value)
        counting.calls.clear()
        AnalogLinear(20, 10, rpu_config=cfg)(x)
        assert counting.calls == {}, field
    counting.calls.clear()
    AnalogLinear(20, 10, rpu_config=InferenceRPUConfig())(x.double())  # float64: the torch ops
    assert counting.calls == {}
