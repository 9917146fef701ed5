"""fxanalog._rng: chunked, multi-threaded, reproducible normals on CPU.

Reference values are computed independently of the module: the native
chunk streams with xoshiro256++ and the ziggurat written out in Python below
(tables built here from R and V); the fallback's draws against
``torch.randn`` from the same seed; the statistics against N(0, 1) with
tolerances stated at each test (5 sigma unless said otherwise). Tests common
to both paths run for each (fixture ``backend``: "native" is the C
extension, "fallback" forces plain torch by setting ``_rng.native = None``).
"""

import math
import multiprocessing as mp

import numpy as np
import pytest
import torch

import fxanalog
from fxanalog import InferenceRPUConfig
from fxanalog import _rng
from fxanalog.nn import AnalogLinear

from buildenv import can_build_c_extension

C = _rng.CHUNK
NATIVE = _rng.native


@pytest.fixture
def threads():
    """Set torch's thread count inside a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture(params=["native", "fallback"])
def backend(request, monkeypatch):
    """How float32 draws of MIN_NUMEL numbers or more are made in this test:
    the native generator in chunks, or the fallback (plain torch.randn)."""
    if request.param == "native":
        if NATIVE is None:
            pytest.skip("the C extension fxanalog._normal is not built")
    else:
        monkeypatch.setattr(_rng, "native", None)
    return request.param


def draw(seed, shape, threads=None):
    """_rng.randn(shape) right after manual_seed(seed) (optionally with a thread count)."""
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return _rng.randn(shape)


# ---------------------------------------------------------------------------
# The native generator, written out in Python from its definition
# (fxanalog/_normal.c): nine xoshiro256++ generators (eight lanes, one
# fix-up) from 72 words of 32 bits; a Marsaglia-Tsang ziggurat of 256 layers;
# attempt t is half (t // 8) % 2 of lane t % 8's (t // 16)-th output: bits
# 0-7 the layer, bit 8 the sign, bits 9-31 x; rejected attempts are finished
# with the fix-up generator in increasing t.

M64 = 2**64 - 1
R, V, LAYERS, GRID = 3.6541528853610088, 4.92867323399e-3, 256, 2.0**23


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Xoshiro256pp:
    def __init__(self, state):
        self.s = list(state) if any(state) else [1, 0, 0, 0]

    def next(self):
        s = self.s
        result = (rotl((s[0] + s[3]) & M64, 23) + s[0]) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def open_uniform(self):
        return ((self.next() >> 11) + 1) * 2.0**-53


def half_normal(x):
    return math.exp(-0.5 * x * x)


def ziggurat_tables():
    x = [V / half_normal(R), R]
    for i in range(1, LAYERS - 1):
        x.append(math.sqrt(-2.0 * math.log(V / x[i] + half_normal(x[i]))))
    x.append(0.0)
    w = [float(np.float32(xi / GRID)) for xi in x[:LAYERS]]
    k = [math.floor(GRID * (x[i + 1] / x[i])) for i in range(LAYERS)]
    return x, [half_normal(xi) for xi in x], w, k


X_REF, F_REF, W_REF, K_REF = ziggurat_tables()


def f32(v):
    return float(np.float32(v))


def fast_value(u):
    """The number of attempt u if it is accepted at once, else None."""
    layer, j = u & (LAYERS - 1), u >> 9
    if j >= K_REF[layer]:
        return None
    m = float(np.float32(j) * np.float32(W_REF[layer]))
    return -m if u & LAYERS else m


def finish(fix, u, paths):
    """A rejected attempt u, finished with the fix-up generator."""
    sign = -1.0 if u & LAYERS else 1.0
    layer, j = u & (LAYERS - 1), u >> 9
    while True:
        if layer == 0:
            while True:
                a = -math.log(fix.open_uniform()) / R
                b = -math.log(fix.open_uniform())
                if b + b >= a * a:
                    paths["tail"] = paths.get("tail", 0) + 1
                    return sign * f32(R + a)
        x = j * (X_REF[layer] / GRID)
        y = F_REF[layer] + (1.0 - fix.open_uniform()) * (F_REF[layer + 1] - F_REF[layer])
        if y < math.exp(-0.5 * x * x):
            paths["wedge"] = paths.get("wedge", 0) + 1
            return sign * f32(x)
        paths["restart"] = paths.get("restart", 0) + 1
        v = fix.next() >> 32
        layer, j = v & (LAYERS - 1), v >> 9
        if j < K_REF[layer]:
            return sign * float(np.float32(j) * np.float32(W_REF[layer]))


def reference_native_chunk(words, n, paths=None):
    """The n float32 numbers of one native chunk drawn from ``words`` (72
    ints in [0, 2^32)); ``paths`` counts how rejected attempts ended."""
    paths = {} if paths is None else paths
    gens = [
        Xoshiro256pp([int(words[8 * g + 2 * i]) | (int(words[8 * g + 2 * i + 1]) << 32) for i in range(4)])
        for g in range(9)
    ]
    lanes, fix = gens[:8], gens[8]
    attempts = []
    while len(attempts) < n:
        r = [lane.next() for lane in lanes]
        attempts += [x & 0xFFFFFFFF for x in r] + [x >> 32 for x in r]
    out = [fast_value(u) for u in attempts[:n]]
    for t in range(n):  # rejected attempts, in increasing t
        if out[t] is None:
            out[t] = finish(fix, attempts[t], paths)
    return torch.tensor(out, dtype=torch.float32)


@pytest.fixture(params=["scalar", "avx2", "avx512"])
def isa(request):
    """Every instruction set the native generator has, where the CPU runs it."""
    if NATIVE is None:
        pytest.skip("the C extension fxanalog._normal is not built")
    if request.param not in NATIVE.isas():
        pytest.skip(f"this CPU does not run {request.param}")
    before = NATIVE.isa()
    NATIVE.isa(request.param)
    yield request.param
    NATIVE.isa(before)


def test_native_module_is_built_where_a_compiler_is():
    if not can_build_c_extension():
        pytest.skip("no C compiler or Python headers here: the install skips the extension")
    assert NATIVE is not None, "fxanalog._normal was not built by the install (see the pip log)"


@pytest.mark.skipif(NATIVE is None, reason="the C extension fxanalog._normal is not built")
def test_native_tables_are_the_ziggurat_of_the_half_normal():
    x, f, w, k = NATIVE.tables()
    assert len(x) == LAYERS + 1 and x[1] == R and x[LAYERS] == 0.0
    assert list(k) == K_REF and list(w) == W_REF
    for got, want in ((x, X_REF), (f, F_REF)):
        assert torch.allclose(torch.tensor(got).double(), torch.tensor(want).double(), rtol=1e-14, atol=0)
    # Equal areas V: each layer [0, x_i] x [f(x_i), f(x_{i+1})] (f(x_256) = f(0) = 1,
    # the top one), and the base: the rectangle to R plus the exact tail area.
    # (R and V have 12 to 17 digits: the recursion closes at the top to 1e-9,
    # the base to 3e-12, density errors far below the 2^-23 grid of x.)
    for i in range(1, LAYERS):
        assert x[i] * (f[i + 1] - f[i]) == pytest.approx(V, rel=1e-11 if i < LAYERS - 1 else 1e-8), i
    tail = math.sqrt(math.pi / 2) * math.erfc(R / math.sqrt(2))
    assert R * half_normal(R) + tail == pytest.approx(V, rel=1e-11)
    assert x[0] * f[1] == pytest.approx(V, rel=1e-12)


def test_native_chunks_are_the_reference_ziggurat_of_xoshiro_lanes(isa):
    n = 2 * C + 23  # the last chunk partial, ending in a partial block
    torch.manual_seed(41)
    got = _rng.randn((n,))
    torch.manual_seed(41)
    words = torch.randint(0, 2**32, (3, 72), dtype=torch.int64).tolist()  # the contract
    paths = {}
    want = torch.cat([reference_native_chunk(words[k], min(C, n - k * C), paths) for k in range(3)])
    assert torch.equal(got, want)
    # every branch was taken (expected per 131 K numbers: ~1.5% rejected,
    # tails ~ 0.03%, restarts after a failed wedge test ~ 0.1%)
    assert paths.get("tail", 0) > 10 and paths.get("wedge", 0) > 500 and paths.get("restart", 0) > 20, paths
    # add_normal_ adds those numbers: y + std * z in float32 (a multiply, then an add)
    y = torch.linspace(-1, 1, n)
    torch.manual_seed(41)
    _rng.add_normal_(y, 0.25)
    assert torch.equal(y, torch.linspace(-1, 1, n) + 0.25 * want)


def test_native_all_zero_lane_state_moves(isa):
    # A lane whose 256 bits are all zero starts from s0 = 1 instead.
    words = torch.randint(0, 2**32, (72,), dtype=torch.int64)
    words[8:16] = 0  # lane 1
    t = torch.empty(160)
    NATIVE.normal_f32(t.data_ptr(), t.numel(), words.data_ptr(), 0.0, False)
    assert torch.equal(t, reference_native_chunk(words.tolist(), 160))
    assert torch.unique(t[1::8]).numel() > 10  # lane 1's 20 numbers are not stuck


@pytest.mark.skipif(NATIVE is None, reason="the C extension fxanalog._normal is not built")
def test_native_rejects_bad_arguments():
    t, w = torch.empty(4), torch.zeros(72, dtype=torch.int64)
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        NATIVE.normal_f32(t.data_ptr(), -1, w.data_ptr(), 0.0, False)
    with pytest.raises(ValueError, match="null address"):
        NATIVE.normal_f32(0, 4, w.data_ptr(), 0.0, False)
    with pytest.raises(ValueError, match="instruction set 'sse9' not available here"):
        NATIVE.isa("sse9")


def test_bitwise_reproducible_under_both_seeds(backend):
    shape = (700, 1000)  # 700000 numbers: 6 chunks, the last one partial
    a = draw(5, shape)
    b = draw(5, shape)
    fxanalog.manual_seed(5)
    c = _rng.randn(shape)
    assert torch.equal(a, b) and torch.equal(a, c)
    y1 = torch.full(shape, 2.0)
    y2 = torch.full(shape, 2.0)
    torch.manual_seed(5)
    _rng.add_normal_(y1, 0.25)
    torch.manual_seed(5)
    _rng.add_normal_(y2, 0.25)
    assert torch.equal(y1, y2)
    # add_normal_ adds the numbers that randn draws for the same size
    assert torch.allclose(y1, 2.0 + 0.25 * a, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fill", ["randn", "add_normal_"])
def test_same_numbers_for_any_thread_count(threads, fill, backend):
    shape = (5 * C + 7,)
    outs = []
    for t in (1, 2, 3, 4):
        threads(t)
        torch.manual_seed(17)
        if fill == "randn":
            outs.append(_rng.randn(shape))
        else:
            y = torch.ones(shape)
            outs.append(_rng.add_normal_(y, 0.5))
    for o in outs[1:]:
        assert torch.equal(outs[0], o)


def test_default_generator_advances(backend):
    torch.manual_seed(21)
    a = _rng.randn((4 * C,))
    b = _rng.randn((4 * C,))
    assert not torch.equal(a, b)
    # and what follows a draw is not what follows the seed alone
    torch.manual_seed(21)
    _rng.randn((4 * C,))
    after = torch.rand(8)
    torch.manual_seed(21)
    assert not torch.equal(after, torch.rand(8))


def test_chunks_are_distinct_streams(backend):
    # (the fallback has no chunks: the same checks on 16 stretches of its stream)
    n_chunks = 16
    z = draw(8, (n_chunks * C,)).view(n_chunks, C).double()
    # No two 16-number blocks (torch's Box-Muller unit) are equal anywhere:
    # overlapping or repeated streams would repeat whole blocks.
    blocks = z.view(-1, 16)
    assert torch.unique(blocks, dim=0).shape[0] == blocks.shape[0]
    # Pairwise correlation of chunks: for independent normals, the sample
    # correlation has sd 1/sqrt(C) = 0.0028; all 120 pairs within 5 sd.
    zc = z - z.mean(dim=1, keepdim=True)
    zc = zc / zc.norm(dim=1, keepdim=True)
    corr = zc @ zc.T
    off = corr[~torch.eye(n_chunks, dtype=torch.bool)]
    assert off.abs().max().item() < 5 / math.sqrt(C)
    # Lag-1 correlation across a chunk boundary and within chunks, same bound.
    for k in range(n_chunks - 1):
        a, b = z[k, -4096:], z[k + 1, :4096]
        r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        assert abs(r) < 5 / math.sqrt(4096)


def normal_cdf(x):
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("fill", ["randn", "add_normal_"])
def test_statistics_against_standard_normal(fill, backend):
    n = 16 * C  # 2.1 M numbers, 16 chunks
    torch.manual_seed(99)
    if fill == "randn":
        z = _rng.randn((n,)).double()
    else:
        std, base = 0.3, 1.5
        z = ((_rng.add_normal_(torch.full((n,), base), std).double()) - base) / std
    sigma = 1 / math.sqrt(n)
    assert abs(z.mean().item()) < 5 * sigma
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)  # sd of a sample variance
    assert abs(z.pow(3).mean().item()) < 5 * math.sqrt(15 / n)  # Var(z^3) = E z^6 = 15
    assert abs(z.pow(4).mean().item() - 3) < 5 * math.sqrt(96 / n)  # Var(z^4) = 105 - 9
    # Kolmogorov-Smirnov against the normal CDF; critical value at 1e-3:
    # sqrt(-ln(0.0005) / 2) / sqrt(n) = 1.949 / sqrt(n).
    s, _ = torch.sort(z)
    f = normal_cdf(s)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = torch.maximum(i / n - f, f - (i - 1) / n).max().item()
    assert d < math.sqrt(-math.log(0.0005) / 2) / math.sqrt(n)
    # Tails (the native ziggurat draws beyond R = 3.44 by a separate algorithm):
    # counts of |z| > t against n P(|z| > t) = n erfc(t / sqrt 2), binomial sd.
    for t in (2.0, 3.0, 3.442619855899, 4.0):
        p = math.erfc(t / math.sqrt(2))
        count = (z.abs() > t).sum().item()
        assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p)), (t, count, n * p)
    # per chunk: every chunk's mean within 5 sd of 0 (sd 1/sqrt(C))
    means = z.view(16, C).mean(dim=1)
    assert means.abs().max().item() < 5 / math.sqrt(C)


@pytest.mark.skipif(NATIVE is None, reason="the C extension fxanalog._normal is not built")
def test_native_mass_of_every_ziggurat_layer():
    # 8 M numbers; bins of |z| at the layer edges (X[255] < ... < X[1] = R, and
    # the tail beyond R): each bin's count against n P(X[i+1] < |z| < X[i])
    # (by erfc), a chi-square with 255 degrees of freedom below its 1e-4
    # quantile. A wrong table entry, or a layer drawn too often, shows here.
    from scipy.stats import chi2

    n = 1 << 23
    torch.manual_seed(77)
    z = _rng.randn((n,)).abs().double()
    edges = torch.tensor([0.0] + X_REF[LAYERS - 1 : 0 : -1] + [math.inf], dtype=torch.float64)  # 0, X[255], ..., X[1], inf
    counts = torch.histogram(z.clamp(max=1e9), bins=edges.clamp(max=2e9)).hist
    cdf = torch.tensor([math.erf(e / math.sqrt(2)) if math.isfinite(e) else 1.0 for e in edges.tolist()], dtype=torch.float64)
    expected = n * torch.diff(cdf)
    stat = ((counts - expected) ** 2 / expected).sum().item()
    assert stat < chi2.ppf(1 - 1e-4, df=len(expected) - 1), stat


def test_small_draws_and_other_devices_are_plain_torch():
    small = (_rng.MIN_NUMEL - 1,)
    torch.manual_seed(4)
    want = torch.randn(small)
    assert torch.equal(draw(4, small), want)
    y = torch.zeros(small)
    torch.manual_seed(4)
    _rng.add_normal_(y, 2.0)
    assert torch.allclose(y, 2.0 * want, rtol=0, atol=1e-6)
    meta = _rng.randn((_rng.MIN_NUMEL * 2,), device="meta")
    assert meta.device.type == "meta" and meta.shape == (_rng.MIN_NUMEL * 2,)
    # float16 is not chunked: plain torch.randn
    torch.manual_seed(4)
    want16 = torch.randn((_rng.MIN_NUMEL,), dtype=torch.float16)
    torch.manual_seed(4)
    assert torch.equal(_rng.randn((_rng.MIN_NUMEL,), dtype=torch.float16), want16)
    # float64 is never native, at any size: plain torch.randn (and normal_)
    big = (4 * C + 3,)
    torch.manual_seed(4)
    want64 = torch.randn(big, dtype=torch.float64)
    torch.manual_seed(4)
    assert torch.equal(_rng.randn(big, dtype=torch.float64), want64)
    torch.manual_seed(4)
    assert torch.equal(_rng.normal_(torch.empty(big, dtype=torch.float64)), want64)


def test_tensors_autograd_tracks_are_plain_torch(backend):
    # No raw writes into a tensor that autograd tracks: its add is torch's.
    a = torch.zeros(_rng.MIN_NUMEL, requires_grad=True)
    y = a * 1.0
    torch.manual_seed(7)
    _rng.add_normal_(y, 0.5)
    torch.manual_seed(7)
    assert torch.allclose(y.detach(), 0.5 * torch.randn(_rng.MIN_NUMEL), rtol=0, atol=1e-6)
    y.sum().backward()
    assert torch.equal(a.grad, torch.ones_like(a))


def test_draws_under_a_fake_tensor_mode_are_fake(backend):
    # (torch.export and shape propagation run ops on fake tensors: no memory)
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    with FakeTensorMode():
        t = _rng.randn((4, C))
        y = _rng.add_normal_(torch.zeros(4, C), 0.5)
    assert isinstance(t, FakeTensor) and t.shape == (4, C)
    assert isinstance(y, FakeTensor) and y.shape == (4, C)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forced_fallback_is_plain_torch(monkeypatch, dtype):
    # Without the native generator: exactly torch.randn / Tensor.normal_ from
    # the default generator, at every size (no chunks).
    monkeypatch.setattr(_rng, "native", None)
    shape = (8 * C + 5,)
    torch.manual_seed(6)
    want = torch.randn(shape, dtype=dtype)
    after = torch.rand(4)  # where the default generator stands after it
    torch.manual_seed(6)
    assert torch.equal(_rng.randn(shape, dtype=dtype), want)
    assert torch.equal(torch.rand(4), after)
    torch.manual_seed(6)
    assert torch.equal(_rng.normal_(torch.empty(shape, dtype=dtype)), want)
    # add_normal_: torch.randn 1M numbers at a time, added (0 + 0.5 z is exact)
    n = 2**20 + 5000
    torch.manual_seed(6)
    first, rest = torch.randn(2**20, dtype=dtype), torch.randn(5000, dtype=dtype)
    y = torch.zeros(n, dtype=dtype)
    torch.manual_seed(6)
    _rng.add_normal_(y, 0.5)
    assert torch.equal(y, 0.5 * torch.cat([first, rest]))


def test_fallback_add_never_holds_a_buffer_of_y_size(monkeypatch):
    # The fallback adds torch.randn pieces of at most _FALLBACK_ADD_CHUNK
    # numbers (made small here), contiguous or not, in y's element order.
    monkeypatch.setattr(_rng, "native", None)
    monkeypatch.setattr(_rng, "_FALLBACK_ADD_CHUNK", 1000)
    sizes = []
    randn = torch.randn

    def counting_randn(*args, **kwargs):
        out = randn(*args, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(torch, "randn", counting_randn)
    cases = {
        "contiguous": torch.zeros(7, 450),  # 3150 numbers: 1000, 1000, 1000, 150
        "rows": torch.zeros(450, 7).T,  # (7, 450) transposed: rows of 450, two at a time
        "long rows": torch.zeros(2500, 3).T,  # (3, 2500): each row in pieces of 1000
    }
    for name, y in cases.items():
        assert y.is_contiguous() == (name == "contiguous")
        sizes.clear()
        torch.manual_seed(9)
        _rng.add_normal_(y, 0.5)
        assert sizes and max(sizes) <= 1000 and sum(sizes) == y.numel(), (name, sizes)
        torch.manual_seed(9)
        z = torch.cat([randn(k) for k in sizes])  # the same pieces, in order
        assert torch.equal(y.reshape(-1), 0.5 * z), name
    # with autograd tracking y: torch's adds, the gradient passes
    a = torch.zeros(2500, 3, requires_grad=True)
    y = a.T * 1.0
    assert not y.is_contiguous()
    _rng.add_normal_(y, 0.5)
    y.sum().backward()
    assert torch.equal(a.grad, torch.ones_like(a))


def _child(conn):
    torch.set_num_threads(2)
    torch.manual_seed(13)
    conn.send(_rng.randn((4 * C,)).numpy().tobytes())  # plain bytes: no shared-memory handles
    conn.close()


def test_draws_work_in_a_forked_child(threads, backend):
    threads(2)
    _rng.randn((4 * C,))  # the parent's pool now has a thread
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child,))
    p.start()
    got = parent.recv() if parent.poll(30) else None
    p.join(10)
    if p.is_alive():
        p.kill()
    assert got is not None, "the forked child did not answer (a pool inherited from the parent?)"
    torch.manual_seed(13)
    assert got == _rng.randn((4 * C,)).numpy().tobytes()


# ---------------------------------------------------------------------------
# Through the tile: output noise of large layers comes from _rng


def _noise_only_layer(n_in, n_out, max_size, general=False):
    cfg = InferenceRPUConfig()
    cfg.forward.out_res = 0.0  # ADC unquantized: y = alpha * out_noise * xi with zero weights
    if general:  # the general path (nonlinearity of a zero MVM is zero), noise added after the bmm
        cfg.forward.out_nonlinearity = 0.5
    cfg.mapping.max_input_size = cfg.mapping.max_output_size = max_size
    layer = AnalogLinear(n_in, n_out, bias=False, rpu_config=cfg)
    layer.set_weights(torch.zeros(n_out, n_in))
    return layer.eval()


@pytest.mark.parametrize(
    "max_size, general",
    [(0, False), (256, False), (0, True)],  # one tile (addmm), 2 x 2 tiles (add_normal_), general path
)
def test_tile_output_noise_is_reproducible_and_normal(threads, max_size, general, backend):
    layer = _noise_only_layer(512, 512, max_size, general)
    x = torch.full((1024, 512), -2.0)  # alpha = 2
    outs = []
    with torch.no_grad():
        for t in (1, 2):
            threads(t)
            fxanalog.manual_seed(31)
            outs.append(layer(x))
        fresh = layer(x)
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[1], fresh)
    # Zero weights: y = sum over input pieces of alpha * 0.06 * xi
    pieces = 1 if max_size == 0 else 2
    z = outs[0].double().view(-1) / (2 * 0.06 * math.sqrt(pieces))
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)


@pytest.mark.parametrize("noise", ["inp_noise", "w_noise"])
def test_tile_input_and_weight_noise_come_from_the_draws(threads, noise, backend):
    # Input noise (DAC, unquantized) and additive weight noise, 1024 x 512
    # (512 K numbers) each: reproducible under a seed on 1 and 2 threads,
    # with the standard deviation of the formula. W = 0.5 I, x = 2: alpha = 2,
    # v = 1, so y_n = alpha (0.5 (v_n + inp_noise xi_n) + w_noise ||v|| xi'_n).
    cfg = InferenceRPUConfig()
    cfg.forward.out_res = cfg.forward.inp_res = 0.0
    cfg.forward.out_noise = 0.0
    cfg.mapping.max_input_size = cfg.mapping.max_output_size = 0
    if noise == "inp_noise":
        cfg.forward.inp_noise = 0.1
    else:
        cfg.forward.w_noise, cfg.forward.w_noise_type = 0.05, "ADDITIVE_CONSTANT"
    layer = AnalogLinear(512, 512, bias=False, rpu_config=cfg).eval()
    layer.set_weights(0.5 * torch.eye(512))
    x = torch.full((1024, 512), 2.0)  # alpha = 2, v = 1
    outs = []
    with torch.no_grad():
        for t in (1, 2):
            threads(t)
            fxanalog.manual_seed(32)
            outs.append(layer(x).double())
    assert torch.equal(outs[0], outs[1])
    if noise == "inp_noise":
        sd, mean = 2 * 0.5 * 0.1, 2 * 0.5
    else:  # ||v|| = sqrt(512)
        sd, mean = 2 * 0.05 * math.sqrt(512), 2 * 0.5
    z = (outs[0].view(-1) - mean) / sd
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)
