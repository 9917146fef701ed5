"""fxanalog._rng: chunked, multi-threaded, reproducible normals on CPU.

Reference values are computed independently of the module: the chunk
streams with Python's own mt19937 (``random.Random``) and torch's
Box-Muller recipe, the statistics against N(0, 1) with tolerances stated at
each test (5 sigma unless said otherwise).
"""

import logging
import math
import multiprocessing as mp
import random

import pytest
import torch

import fxanalog
from fxanalog import InferenceRPUConfig
from fxanalog import _rng
from fxanalog.nn import AnalogLinear

C = _rng.CHUNK


@pytest.fixture
def threads():
    """Set torch's thread count inside a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def draw(seed, shape, threads=None):
    """_rng.randn(shape) right after manual_seed(seed) (optionally with a thread count)."""
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return _rng.randn(shape)


def reference_chunk_start(words, count=64):
    """The first ``count`` (a multiple of 16) numbers torch.randn draws
    (float32, at least 16 numbers) from an mt19937 whose state is ``words``
    just before a twist: Python's mt19937 for the words, 24-bit uniforms,
    and torch's Box-Muller on blocks of 16 (u1 = 1 - u[j], u2 = u[j + 8])."""
    py = random.Random()
    py.setstate((3, tuple(int(w) for w in words) + (624,), None))
    u = [(py.getrandbits(32) & 0xFFFFFF) * 2.0**-24 for _ in range(count)]
    z = [0.0] * count
    for b in range(0, count, 16):
        for j in range(8):
            radius = math.sqrt(-2.0 * math.log(1.0 - u[b + j]))
            theta = 2.0 * math.pi * u[b + j + 8]
            z[b + j], z[b + j + 8] = radius * math.cos(theta), radius * math.sin(theta)
    return torch.tensor(z, dtype=torch.float64)


def test_layout_check_passes_on_this_torch():
    assert _rng.layout_check() is True
    _rng.randn((_rng.MIN_PARALLEL,))
    assert _rng.layout_ok is True


def test_chunks_are_mt19937_streams_from_default_generator_words():
    # The contract: words = randint(0, 2^32, (chunks, 624)) from the default
    # generator; chunk k is torch.randn from an mt19937 holding words[k].
    n = _rng.MIN_PARALLEL + 100  # the last chunk partial
    chunks = -(-n // C)
    got = draw(3, (n,)).double()
    torch.manual_seed(3)
    words = torch.randint(0, 2**32, (chunks, 624), dtype=torch.int64)
    for k in range(chunks):
        want = reference_chunk_start(words[k])
        assert torch.allclose(got[k * C : k * C + 64], want, rtol=0, atol=1e-5), k  # float32 rounding ~1e-6


def test_bitwise_reproducible_under_both_seeds():
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
def test_same_numbers_for_any_thread_count(threads, fill):
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


def test_default_generator_advances():
    torch.manual_seed(21)
    a = _rng.randn((_rng.MIN_PARALLEL,))
    b = _rng.randn((_rng.MIN_PARALLEL,))
    assert not torch.equal(a, b)
    # and what follows a draw is not what follows the seed alone
    torch.manual_seed(21)
    _rng.randn((_rng.MIN_PARALLEL,))
    after = torch.rand(8)
    torch.manual_seed(21)
    assert not torch.equal(after, torch.rand(8))


def test_chunks_are_distinct_streams():
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
def test_statistics_against_standard_normal(fill):
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
    # per chunk: every chunk's mean within 5 sd of 0 (sd 1/sqrt(C))
    means = z.view(16, C).mean(dim=1)
    assert means.abs().max().item() < 5 / math.sqrt(C)


def test_small_draws_and_other_devices_are_plain_torch():
    small = (_rng.MIN_PARALLEL - 1,)
    torch.manual_seed(4)
    want = torch.randn(small)
    assert torch.equal(draw(4, small), want)
    y = torch.zeros(small)
    torch.manual_seed(4)
    _rng.add_normal_(y, 2.0)
    assert torch.allclose(y, 2.0 * want, rtol=0, atol=1e-6)
    meta = _rng.randn((_rng.MIN_PARALLEL * 2,), device="meta")
    assert meta.device.type == "meta" and meta.shape == (_rng.MIN_PARALLEL * 2,)
    # float16 is not chunked: plain torch.randn
    torch.manual_seed(4)
    want16 = torch.randn((_rng.MIN_PARALLEL,), dtype=torch.float16)
    torch.manual_seed(4)
    assert torch.equal(_rng.randn((_rng.MIN_PARALLEL,), dtype=torch.float16), want16)


def test_forced_fallback_is_plain_torch(monkeypatch):
    shape = (_rng.MIN_PARALLEL + 3 * C,)
    chunked = draw(6, shape)
    monkeypatch.setattr(_rng, "layout_ok", False)
    torch.manual_seed(6)
    want = torch.randn(shape)
    assert torch.equal(draw(6, shape), want)
    assert not torch.equal(chunked, want)  # the flag did switch paths
    # add_normal_: torch.randn 1M numbers at a time, added
    n = 2**20 + 5000
    torch.manual_seed(6)
    first, rest = torch.randn(2**20), torch.randn(5000)
    y = torch.zeros(n)
    torch.manual_seed(6)
    _rng.add_normal_(y, 0.5)
    assert torch.allclose(y, 0.5 * torch.cat([first, rest]), rtol=0, atol=1e-6)


def test_failed_layout_check_falls_back_and_logs(monkeypatch, caplog):
    # Words written 8 bytes too early: the copied generator draws other numbers.
    monkeypatch.setattr(_rng, "layout_ok", None)
    monkeypatch.setattr(_rng, "_OFF_WORDS", 16)
    monkeypatch.setattr(_rng, "_OFF_TAIL", 16 + 8 * 624)
    shape = (_rng.MIN_PARALLEL,)
    with caplog.at_level(logging.INFO, logger="fxanalog._rng"):
        got = draw(12, shape)
    assert _rng.layout_ok is False
    assert "layout not as expected" in caplog.text
    torch.manual_seed(12)
    assert torch.equal(got, torch.randn(shape))


def _child(conn):
    torch.set_num_threads(2)
    torch.manual_seed(13)
    conn.send(_rng.randn((4 * C,)).numpy().tobytes())  # plain bytes: no shared-memory handles
    conn.close()


def test_draws_work_in_a_forked_child(threads):
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


def _noise_only_layer(n_in, n_out, max_size):
    cfg = InferenceRPUConfig()
    cfg.forward.out_res = 0.0  # ADC unquantized: y = alpha * out_noise * xi with zero weights
    cfg.mapping.max_input_size = cfg.mapping.max_output_size = max_size
    layer = AnalogLinear(n_in, n_out, bias=False, rpu_config=cfg)
    layer.set_weights(torch.zeros(n_out, n_in))
    return layer.eval()


@pytest.mark.parametrize("max_size", [0, 256])  # one tile (addmm path), 2 x 2 tiles (add_normal_)
def test_tile_output_noise_is_reproducible_and_normal(threads, max_size):
    layer = _noise_only_layer(512, 512, max_size)
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
