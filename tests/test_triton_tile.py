"""The fused Triton tile kernel (``fxanalog.triton_kernels.tile_mvm``) against
the torch path ``fxanalog.ops.tile_mvm_torch.tile_forward`` and against noise formulas.

On CPU the kernels run in Triton's interpreter. ``triton.jit`` picks the
interpreter when a kernel is *decorated* (it reads ``TRITON_INTERPRET`` then),
that is when the kernel module is first imported, which another test file
may already have done. So the interpreted runs happen in one subprocess: this
file run as a script with ``TRITON_INTERPRET=1``. The test process builds
the inputs, the subprocess only runs the kernel, and every comparison is
made here. Other test files are not affected.

Where CUDA is available, the same cases also run compiled on the GPU, in
this process (the ``gpu`` tests; ``bench/gpu_check.sh`` runs them).

Tolerances: noise-free outputs must agree elementwise within 1e-5 of the
output scale, except for a few elements (at most 0.25% in the interpreter,
0.5% on the GPU, where TF32 products and approximate division are used)
where a different float summation order moves a value across an ADC rounding
boundary. Noise statistics are checked on z = (output - noise-free output) /
(the standard deviation from the formula) over M >= 1400 elements: |mean z|
< 4.5/sqrt(M) and |std z - 1| < 0.07 (the standard error of std z is
1/sqrt(2M) <= 0.019: 3.8 standard errors, so a correct kernel fails for
about 1 seed in 10^4; a wrong constant, a missing alpha or a draw shared
between pieces moves std z by more than 20%). The tests are seeded.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import tempfile

import pytest
import torch

from fxanalog.config import BoundManagementType, IOParameters, NoiseManagementType, WeightNoiseType
from fxanalog.geometry import layout_tiles, split_sizes
from fxanalog.ops import TileIO, dispatch
from fxanalog.ops.dispatch import triton_available
from fxanalog.ops.tile_mvm_torch import tile_forward

pytestmark = pytest.mark.skipif(not triton_available(), reason="triton cannot be imported on this machine")

NM = NoiseManagementType
BM = BoundManagementType
HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device: the compiled-kernel variants need a GPU")


# ----------------------------------------------------------------------------
# Cases: inputs are built here, deterministically, on CPU


def quiet(**kw) -> dict:
    """IOParameters fields without any noise; inp_res 1/128 (64 steps) keeps the
    abs-max input off half steps at every bound-management factor."""
    base = dict(out_noise=0.0, inp_res=1 / 128)
    base.update(kw)
    return base


def case(io: dict, G=2, B=37, K=37, N=23, max_in=16, max_out=10, x_scale=1.0, w_scale=0.5, col_w=None,
         col_scale=None, bias=False, zero_piece=None, block=16, seed=0) -> dict:
    """A tile-array problem: G groups of B rows, K inputs split by max_in,
    N outputs split by max_out. col_w multiplies the weights of output
    columns (to saturate only some output pieces); zero_piece = (i, rows)
    zeroes input piece i in those rows."""
    gen = torch.Generator().manual_seed(seed)
    in_sizes, out_sizes = split_sizes(K, max_in), split_sizes(N, max_out)
    x = torch.randn(G, B, K, generator=gen) * x_scale
    if zero_piece is not None:
        i, rows = zero_piece
        start = sum(in_sizes[:i])
        x[:, rows, start : start + in_sizes[i]] = 0.0
    w = torch.randn(G, N, K, generator=gen) * w_scale
    if col_w is not None:
        w = w * torch.as_tensor(col_w, dtype=torch.float32).reshape(1, N, 1)
    return dict(
        x=x,
        tiles=layout_tiles(w, in_sizes),
        w=w,
        in_sizes=in_sizes,
        out_sizes=out_sizes,
        fields=dict(io),
        io=TileIO.pack(IOParameters(**io)),
        col_scale=(torch.rand(G * N, generator=gen) + 0.5) if col_scale else None,
        bias=torch.randn(G * N, generator=gen) if bias else None,
        block=block,
    )


def piece_cols(N=23, max_out=10, big=(1,), factor=6.0, small=0.5):
    """Column factors: output pieces in ``big`` get large weights."""
    f = []
    for o, s in enumerate(split_sizes(N, max_out)):
        f += [factor if o in big else small] * s
    return f


CASES = {}
for nm in NM:
    for bm in BM:
        extra = dict(nm_thres=0.7) if nm == NM.CONSTANT else {}
        CASES[f"{nm.name}-{bm.name}"] = case(quiet(noise_management=nm, bound_management=bm, **extra))
CASES.update(
    {
        # resolutions: both off, DAC only (default 7 bits), ADC only
        "res-off": case(quiet(inp_res=0.0, out_res=0.0)),
        "dac-default-adc-off": case(quiet(inp_res=1 / 126, out_res=0.0)),
        "dac-off-adc-default": case(quiet(inp_res=0.0)),
        "adc-unbounded": case(quiet(out_bound=0.0)),
        # several bound-management rounds, only in the saturating output piece
        "bm-rounds-absmax": case(quiet(), B=19, col_w=piece_cols(factor=8.0), w_scale=1.0),
        "bm-rounds-none": case(quiet(noise_management=NM.NONE), G=1, B=19, col_w=piece_cols(big=(0, 2), factor=3.0)),
        "bm-rounds-max": case(quiet(noise_management=NM.MAX), G=1, B=19, col_w=piece_cols(factor=8.0), w_scale=1.0),
        # the round past max_bm_factor is the last and stays clipped
        "bm-last-round": case(quiet(max_bm_factor=2), G=1, B=19, col_w=piece_cols(factor=40.0), w_scale=1.0),
        "bm-dac-off": case(quiet(inp_res=0.0), G=1, B=19, col_w=piece_cols(factor=8.0), w_scale=1.0),
        "bm-adc-off": case(quiet(out_res=0.0), G=1, B=19, col_w=piece_cols(factor=8.0), w_scale=1.0),
        "nm-thres-cap": case(quiet(nm_thres=0.5)),
        "constant-thres-0": case(quiet(noise_management=NM.CONSTANT, nm_thres=0.0)),  # scale 1, as aihwkit
        "batch-1": case(quiet(), G=1, B=1, col_w=piece_cols(factor=20.0), w_scale=1.0),
        "one-tile": case(quiet(), G=1, B=20, K=20, N=30, max_in=0, max_out=0, block=None),
        "even-split-view": case(quiet(), G=1, B=20, K=32, N=20, max_in=16, max_out=0),
        "scales-bias": case(
            quiet(out_scale=0.5), B=19, col_scale=True, bias=True, col_w=piece_cols(factor=8.0), w_scale=1.0
        ),
        "zero-piece": case(quiet(), zero_piece=(1, slice(None))),
        "nonlinearity": case(quiet(out_nonlinearity=0.3, inp_res=0.0)),
        "perfect": case(dict(is_perfect=True), col_scale=True, bias=True),
    }
)


def at_bound_case() -> dict:
    """Bound management's strict test (docs/tile.md step 7): NM NONE, no
    quantization, inp_bound = out_bound = 1, inputs +-10 (all clipped to +-1
    by the DAC); input pieces 13, 12, 12, output pieces 8, 8, 7. Output n < 16
    reads input n alone with weight 1, so it lands exactly on the bound:
    not saturated, kept at round 1. Output 16 + k (k < 7) adds inputs 13 + k
    and 18 + k of input piece 1: +-2 (saturated, redone) or 0."""
    c = case(dict(out_noise=0.0, inp_res=0.0, out_res=0.0, noise_management=NM.NONE, out_bound=1.0), G=1, B=19)
    x = torch.sign(c["x"]) * 10.0
    w = torch.zeros_like(c["w"])
    for n in range(16):
        w[0, n, n] = 1.0
    for k in range(7):
        w[0, 16 + k, 13 + k] = w[0, 16 + k, 18 + k] = 1.0
    c.update(x=x, w=w, tiles=layout_tiles(w, c["in_sizes"]))
    return c


CASES["bm-at-bound"] = at_bound_case()


def dac_ties_case(nm) -> dict:
    """Inputs on exact half steps of a 127-level DAC (63.5 steps to the
    bound), times a per-row alpha; identity weights read the DAC output
    back. Which way a half step rounds depends on the float32 order
    (x * (1/alpha), then / dx, as aihwkit); the largest input rounds to 64
    steps and is clipped (docs/tile.md step 3)."""
    c = case(dict(out_noise=0.0, inp_res=127, out_res=0.0, out_bound=0.0, noise_management=nm), G=1, B=64, K=16,
             N=16, max_in=0, max_out=0, seed=11)
    gen = torch.Generator().manual_seed(11)
    a = torch.rand(64, generator=gen) * 3 + 0.05
    m = torch.randint(-63, 64, (64, 15), generator=gen) * 2 + 1
    x = torch.cat([a[:, None], a[:, None] * (m / 127.0)], dim=1)[None]
    w = torch.eye(16)[None]
    c.update(x=x, w=w, tiles=layout_tiles(w, c["in_sizes"]))
    return c


def extremes_case() -> dict:
    """Rows scaled by 2^-k (k up to 140: subnormal inputs, where 1/alpha
    overflows) and one infinite weight (output 5 of input piece 0), with
    output pieces that saturate (bound management redoes them)."""
    c = case(quiet(), G=1, B=19, col_w=piece_cols(factor=8.0), w_scale=1.0, seed=5)
    k = torch.tensor([0, 100, 126, 130, 140] * 4)[:19].double()
    x = (c["x"].double() * torch.pow(2.0, -k)[None, :, None]).float()
    w = c["w"].clone()
    w[0, 5, 2] = float("inf")
    c.update(x=x, w=w, tiles=layout_tiles(w, c["in_sizes"]))
    return c


EXTREMES = extremes_case()

CASES["dac-ties-absmax"] = dac_ties_case(NM.ABS_MAX)
CASES["dac-ties-max"] = dac_ties_case(NM.MAX)

GROUPS_SLICED = case(quiet(out_scale=0.5), G=5, B=9, col_scale=True, bias=True, seed=3)

# half-precision inputs are read as they are and computed in float32
CASES["bf16-input"] = case(quiet(), G=1, B=19, col_w=piece_cols(factor=8.0), w_scale=1.0)
CASES["bf16-input"]["x"] = CASES["bf16-input"]["x"].to(torch.bfloat16)


def check_close(name: str, out: torch.Tensor, ref: torch.Tensor, max_frac: float) -> None:
    out, ref = out.cpu(), ref.cpu()
    assert out.shape == ref.shape and out.dtype == torch.float32
    tol = 1e-5 * float(ref.abs().max()) + 1e-6
    bad = (out - ref).abs() > tol
    n_bad = int(bad.sum())
    assert n_bad <= max(1, max_frac * ref.numel()), (
        f"{name}: {n_bad} of {ref.numel()} outputs differ from the torch path by more than {tol:.2e} "
        f"(max {float((out - ref).abs().max()):.3e}); first at {bad.nonzero()[:5].tolist()}"
    )


def check_equal(name: str, c: dict, out: torch.Tensor, max_frac: float) -> None:
    io = TileIO.unpack(c["io"])
    ref = tile_forward(c["x"], c["tiles"], c["in_sizes"], c["out_sizes"], io, c["col_scale"], c["bias"])
    check_close(name, out, ref, max_frac)


def round1_overdrive(c: dict, cols=slice(None)) -> float:
    """max over tiles (and the given output columns) of |round-1 output| /
    out_bound, by a direct formula (ABS_MAX scaling, DAC rounded, no ADC):
    > 4 means rounds r = 2, 4, 8."""
    io = TileIO.unpack(c["io"])
    x, w = c["x"].double(), c["w"].double()
    worst = 0.0
    start = 0
    for s in c["in_sizes"]:
        xp = x[..., start : start + s]
        alpha = xp.abs().amax(-1, keepdim=True).clamp_min(1e-30)
        v = torch.round(xp / alpha / io.dx) * io.dx if io.dx > 0 else xp / alpha
        y = (v @ w[..., start : start + s].transpose(1, 2))[..., cols]
        worst = max(worst, float(y.abs().max()) / io.out_bound)
        start += s
    return worst


def test_bound_management_cases_need_several_rounds():
    # The bound-management cases really saturate: rounds up to r >= 8 (or
    # the clipped last round) are needed, and only in some output pieces.
    for name in ("bm-rounds-absmax", "bm-dac-off", "bm-adc-off", "batch-1", "scales-bias"):
        assert round1_overdrive(CASES[name]) > 4.0, name
    assert round1_overdrive(CASES["bm-last-round"]) > 16.0
    assert round1_overdrive(CASES["ABS_MAX-ITERATIVE"]) < 1.0  # the plain cases do not
    # output pieces 0 (columns 0-7) and 2 (16-22) stay below the bound
    assert round1_overdrive(CASES["bm-rounds-absmax"], cols=slice(0, 8)) < 1.0
    assert round1_overdrive(CASES["bm-rounds-absmax"], cols=slice(16, 23)) < 1.0


# ----------------------------------------------------------------------------
# Noise: statistics against formulas


def stats_case(io: dict, **kw) -> dict:
    kw.setdefault("B", 64)
    return case(io, **kw)


STATS = {
    # ADC off, output noise only: var = out_noise^2 sum_i alpha_i^2 (pieces zero
    # for the whole batch contribute nothing; zero in some rows: alpha 1)
    "out-noise": stats_case(
        dict(out_noise=0.06, out_res=0.0, out_bound=0.0), x_scale=0.1, zero_piece=(1, slice(0, 64, 2)), G=1
    ),
    "out-noise-zero-piece": stats_case(dict(out_noise=0.06, out_res=0.0, out_bound=0.0), x_scale=0.1,
                                       zero_piece=(1, slice(None)), G=1),
    # default ADC: var = alpha^2 (out_noise^2 + dy^2/12) against the unquantized output
    "out-noise-adc": stats_case(dict(out_noise=0.06), B=128, G=1, w_scale=0.3),
    # input noise: var = inp_noise^2 sum_i alpha_i^2 sum_j w_jc^2; columns 0 and 20 equal
    "inp-noise": stats_case(dict(out_noise=0.0, inp_noise=0.05, out_res=0.0, out_bound=0.0), G=1),
    "w-noise-additive": stats_case(
        dict(out_noise=0.06, w_noise=0.03, w_noise_type=WeightNoiseType.ADDITIVE_CONSTANT, out_res=0.0, out_bound=0.0),
        G=1,
    ),
    "w-noise-pcm": stats_case(
        dict(out_noise=0.06, w_noise=0.1, w_noise_type=WeightNoiseType.PCM_READ, out_res=0.0, out_bound=0.0), G=1
    ),
    "inp-sto-round": stats_case(dict(out_noise=0.0, inp_sto_round=True, out_res=0.0, out_bound=0.0), G=1),
    "out-sto-round": stats_case(dict(out_noise=0.0, inp_res=0.0, out_sto_round=True), G=1, w_scale=0.3),
}
# inp-noise: two identical weight columns in different column blocks and output pieces
_c = STATS["inp-noise"]
_w = _c["w"].clone()
_w[:, 20] = _w[:, 0]
_c["w"], _c["tiles"] = _w, layout_tiles(_w, _c["in_sizes"])


def _pieces(c):
    start = 0
    for s in c["in_sizes"]:
        yield slice(start, start + s)
        start += s


def _alpha(xp):
    a = xp.abs().amax(-1)
    return torch.where(a > 0, a, torch.ones_like(a))


def _dac(xp, alpha, io):
    v = xp / alpha[..., None]
    if io.dx > 0:
        v = torch.round(v / io.dx).clamp(-io.inp_bound / io.dx, io.inp_bound / io.dx) * io.dx
    return v


def expected_std(name: str, c: dict) -> torch.Tensor:
    """(G, B, N) standard deviation of output - noise-free output, by formula."""
    io = TileIO.unpack(c["io"])
    x, w = c["x"].double(), c["w"].double()
    var = torch.zeros(x.shape[0], x.shape[1], w.shape[1], dtype=torch.float64)
    for sl in _pieces(c):
        xp, wp = x[..., sl], w[..., sl]  # (G, B, s), (G, N, s)
        alpha = _alpha(xp)  # (G, B)
        gate = 0.0 if bool((xp.abs().amax(-1) == 0).all()) else 1.0
        a2 = (alpha**2)[..., None] * gate
        v = _dac(xp, alpha, io)
        if name.startswith("out-noise-adc"):
            piece = a2 * (io.out_noise**2 + io.dy**2 / 12)
        elif name.startswith("out-noise"):
            piece = a2 * io.out_noise**2
        elif name == "inp-noise":
            piece = a2 * io.inp_noise**2 * (wp**2).sum(-1)[:, None, :]
        elif name == "w-noise-additive":
            piece = a2 * (io.out_noise**2 + io.w_noise**2 * (v**2).sum(-1, keepdim=True))
        elif name == "w-noise-pcm":
            piece = a2 * (io.out_noise**2 + io.w_noise**2 * (v**2) @ wp.abs().transpose(1, 2))
        elif name == "inp-sto-round":
            u = xp / alpha[..., None] / io.dx
            f = u - u.floor()
            piece = a2 * io.dx**2 * (f * (1 - f)) @ (wp**2).transpose(1, 2)
        elif name == "out-sto-round":
            u = (xp / alpha[..., None]) @ wp.transpose(1, 2) / io.dy
            f = u - u.floor()
            piece = a2 * io.dy**2 * f * (1 - f)
        else:
            raise KeyError(name)
        var += piece
    return var.sqrt()


def noise_free_reference(name: str, c: dict) -> torch.Tensor:
    """The torch path with the noise off (and, where the formula is about the
    rounding itself, the ADC or DAC quantization off)."""
    fields = dict(c["fields"], out_noise=0.0, inp_noise=0.0, w_noise=0.0, inp_sto_round=False, out_sto_round=False)
    if name in ("out-noise-adc", "out-sto-round"):
        fields["out_res"] = 0.0
    if name == "inp-sto-round":
        fields["inp_res"] = 0.0
    io = TileIO.unpack(TileIO.pack(IOParameters(**fields)))
    return tile_forward(c["x"], c["tiles"], c["in_sizes"], c["out_sizes"], io)


def check_stats(name: str, c: dict, out: torch.Tensor) -> None:
    out = out.cpu().double()
    ref = noise_free_reference(name, c).double()
    std = expected_std(name, c)
    keep = std > 0
    z = ((out - ref)[keep] / std[keep]).flatten()
    M = z.numel()
    assert M >= 1400
    mean, sd = float(z.mean()), float(z.std())
    assert abs(mean) < 4.5 / math.sqrt(M), f"{name}: mean z = {mean:.4f} over {M}"
    assert abs(sd - 1) < 0.07, f"{name}: std z = {sd:.4f} over {M} (expected 1 +- 0.07)"
    # where the formula says zero (a piece zero for the whole batch and
    # nothing else), the output is exactly the noise-free one
    assert torch.allclose(out[~keep], ref[~keep], atol=1e-5)
    if name == "inp-noise":  # identical columns see the identical DAC noise
        assert torch.allclose(out[..., 0], out[..., 20], atol=1e-5)
        assert not torch.allclose(out[..., 0], ref[..., 0], atol=1e-3)


# ----------------------------------------------------------------------------
# Running the kernel: interpreted in a subprocess, or compiled on the GPU


def _launch(c: dict, device: str) -> torch.Tensor:
    from fxanalog.triton_kernels.tile_mvm import launch

    def dev(t):
        return None if t is None else t.to(device)

    blocks = {} if c["block"] is None else dict(block_m=c["block"], block_n=c["block"], block_k=c["block"])
    return launch(
        dev(c["x"]), dev(c["tiles"]), c["in_sizes"], c["out_sizes"], TileIO.unpack(c["io"]),
        dev(c["col_scale"]), dev(c["bias"]), **blocks,
    )


def _repro_runs(c: dict, device: str) -> list:
    torch.manual_seed(1234)
    a = _launch(c, device)
    b = _launch(c, device)
    torch.manual_seed(1234)
    again = _launch(c, device)
    return [a.cpu(), b.cpu(), again.cpu()]


def analog_layers() -> dict:
    """Analog layers (several tiles, weight scaling, bias; a grouped conv)
    and inputs, noise-free: the op -> dispatch -> launcher integration."""
    import fxanalog
    from fxanalog.nn import AnalogConv2d, AnalogLinear

    cfg = fxanalog.InferenceRPUConfig()
    cfg.forward.out_noise = 0.0
    cfg.forward.inp_res = 1 / 128
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.max_input_size = cfg.mapping.max_output_size = 16
    ir_cfg = copy.deepcopy(cfg)  # learned input range: each input piece its own group of the op
    ir_cfg.pre_post.input_range.enable = True
    ir_cfg.pre_post.input_range.init_value = 1.5
    gen = torch.Generator().manual_seed(5)
    with torch.random.fork_rng(devices=[]):  # leave the global generator as it was
        torch.manual_seed(5)
        lin = AnalogLinear.from_digital(torch.nn.Linear(40, 30), cfg).eval()
        conv = AnalogConv2d.from_digital(torch.nn.Conv2d(4, 6, 3, padding=1, groups=2), cfg).eval()
        lin_ir = AnalogLinear.from_digital(torch.nn.Linear(40, 30), ir_cfg).eval()
    # Per-tile weight scaling (omega > 0, several input pieces): each input
    # piece is its own group of the op, one launch per piece size.
    return {  # layer, input, launcher calls per forward
        "linear": (lin, torch.randn(3, 7, 40, generator=gen), 2),  # pieces 14, 13, 13
        "conv-groups": (conv, torch.randn(2, 4, 5, 5, generator=gen), 1),  # pieces 9, 9 per group
        "linear-input-range": (lin_ir, 2 * torch.randn(3, 7, 40, generator=gen), 2),  # pieces 14, 13, 13
    }


LAYERS = analog_layers()


def _worker(inp: str, outp: str) -> None:
    """Subprocess entry: run every case through the interpreted kernels."""
    import fxanalog.triton_kernels.tile_mvm as kernels

    jobs = torch.load(inp, weights_only=False)
    results = {"interpreted": type(kernels._tile_forward_kernel).__name__ == "InterpretedFunction"}
    torch.manual_seed(0)
    for key, c in jobs.items():
        if key.startswith("layer:"):  # through the op, with the dispatch sending CPU tensors to Triton
            launches = []
            dispatch.register("tile_mvm", "triton", lambda *a, **k: launches.append(1) or kernels.launch(*a, **k),
                              supports=kernels.supports)
            dispatch.force_implementation("triton")
            with torch.no_grad():
                results[key] = (c[0](c[1]), len(launches))
            dispatch.force_implementation(None)
            dispatch.register("tile_mvm", "triton", kernels.launch, supports=kernels.supports)
        elif key.startswith("groups:"):  # more groups than a grid axis holds: sliced launches
            limit = kernels.MAX_GRID_GROUPS
            kernels.MAX_GRID_GROUPS = 2
            results[key] = _launch(c, "cpu")
            kernels.MAX_GRID_GROUPS = limit
        else:
            results[key] = _repro_runs(c, "cpu") if key.startswith("repro:") else _launch(c, "cpu")
    torch.save(results, outp)


@pytest.fixture(scope="module")
def interpreted():
    jobs = {f"eq:{k}": v for k, v in CASES.items()}
    jobs.update({f"stats:{k}": v for k, v in STATS.items()})
    jobs["repro:out-noise"] = STATS["out-noise"]
    jobs.update({f"layer:{k}": v for k, v in LAYERS.items()})
    jobs["groups:sliced"] = GROUPS_SLICED
    jobs["extremes"] = EXTREMES
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = os.path.join(tmp, "in.pt"), os.path.join(tmp, "out.pt")
        torch.save(jobs, inp)
        env = dict(os.environ, TRITON_INTERPRET="1")
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), inp, outp], env=env, capture_output=True, text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"interpreted kernel run failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
        results = torch.load(outp, weights_only=False)
    assert results.pop("interpreted"), "the subprocess did not run Triton's interpreter"
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_noise_free_matches_torch_path_interpreted(name, interpreted):
    check_equal(name, CASES[name], interpreted[f"eq:{name}"], max_frac=0.0025)


@pytest.mark.parametrize("name", list(STATS))
def test_noise_statistics_interpreted(name, interpreted):
    check_stats(name, STATS[name], interpreted[f"stats:{name}"])


def test_output_at_the_bound_is_not_redone_interpreted(interpreted):
    # By hand. Outputs exactly at the bound are the clipped inputs (a >= test
    # would redo them up to r = 1024 and return 10 x). The saturated ones
    # (+-2) are redone until r = 32, where 10/32 + 10/32 = 0.625 fits:
    # 0.625 * 32 = 20, the exact sum of the two inputs (0 stays 0).
    c = CASES["bm-at-bound"]
    out = interpreted["eq:bm-at-bound"]
    x = c["x"][0]
    assert torch.equal(out[0, :, :16], x[:, :16].clamp(-1, 1))
    assert torch.equal(out[0, :, 16:23], x[:, 13:20] + x[:, 18:25])
    assert bool((out[0, :, 16:23].abs() == 20).any())  # some rows really were redone


@pytest.mark.parametrize("name", ["dac-ties-absmax", "dac-ties-max"])
def test_dac_half_step_ties_as_the_torch_path_interpreted(name, interpreted):
    # Every DAC output (read back by identity weights) equals the torch path's:
    # no element may round the other way (one step is 1.6% of the input).
    c = CASES[name]
    io = TileIO.unpack(c["io"])
    ref = tile_forward(c["x"], c["tiles"], c["in_sizes"], c["out_sizes"], io)
    assert torch.allclose(interpreted[f"eq:{name}"], ref, rtol=1e-6, atol=0)
    a = c["x"][0, :, 0:1]
    assert float((ref[0] / a).max()) == pytest.approx(1.0, abs=1e-6)  # 64 steps clipped to the bound


def test_tiny_rows_and_an_infinite_weight_interpreted(interpreted):
    # As the torch path: no NaN from tiny rows (1/alpha would overflow), and an
    # infinite weight spoils its own output column only.
    c = EXTREMES
    out = interpreted["extremes"]
    ref = tile_forward(c["x"], c["tiles"], c["in_sizes"], c["out_sizes"], TileIO.unpack(c["io"]))
    keep = [n for n in range(23) if n != 5]
    assert torch.isfinite(ref[..., keep]).all() and torch.isfinite(out[..., keep]).all()
    assert not torch.isfinite(out[..., 5]).any() and not torch.isfinite(ref[..., 5]).any()
    assert torch.allclose(out[..., keep], ref[..., keep], rtol=1e-5, atol=2e-43)


def test_more_groups_than_a_grid_axis_holds_interpreted(interpreted):
    # 5 groups launched 2 at a time (the limit patched from 65535): per-group scales and bias
    # follow their groups; the torch path is the reference.
    check_equal("groups-sliced", GROUPS_SLICED, interpreted["groups:sliced"], max_frac=0.0025)


def test_seeded_and_fresh_draws_interpreted(interpreted):
    a, b, again = interpreted["repro:out-noise"]
    assert torch.equal(a, again)  # torch.manual_seed reproduces a call
    assert not torch.allclose(a, b, atol=1e-3)  # every call draws anew


@pytest.mark.parametrize("name", list(LAYERS))
def test_analog_layers_through_the_op_interpreted(name, interpreted):
    layer, x, calls = LAYERS[name]
    with torch.no_grad():
        ref = layer(x)  # CPU tensors: the torch path
    out, launches = interpreted[f"layer:{name}"]
    assert launches == calls  # the launcher ran (the kernels, not the torch path)
    check_close(name, out, ref, max_frac=0.0025)


@gpu
@pytest.mark.parametrize("name", list(LAYERS))
def test_analog_layers_through_the_op_gpu(name):
    layer, x, _ = LAYERS[name]
    with torch.no_grad():
        ref = layer(x)
        out = copy.deepcopy(layer).cuda()(x.cuda())
    check_close(name, out, ref, max_frac=0.005)


@gpu
@pytest.mark.parametrize("name", list(CASES))
def test_noise_free_matches_torch_path_gpu(name):
    check_equal(name, CASES[name], _launch(CASES[name], "cuda"), max_frac=0.005)


@gpu
@pytest.mark.parametrize("name", list(STATS))
def test_noise_statistics_gpu(name):
    check_stats(name, STATS[name], _launch(STATS[name], "cuda"))


@gpu
def test_seeded_and_fresh_draws_gpu():
    a, b, again = _repro_runs(STATS["out-noise"], "cuda")
    assert torch.equal(a, again)
    assert not torch.allclose(a, b, atol=1e-3)


@gpu
def test_gpu_default_blocks_and_dispatch():
    # Heuristic block sizes (no override) on a larger layer, and the op's
    # dispatch: CUDA -> Triton, forced -> torch path; both agree without noise.
    from fxanalog.ops.tile_mvm import forward

    c = case(quiet(), G=1, B=300, K=1300, N=700, max_in=512, max_out=512, w_scale=0.05, block=None)
    out = _launch(c, "cuda")
    check_equal("large", c, out, max_frac=0.005)
    args = (c["x"].cuda(), c["tiles"].cuda(), c["in_sizes"], c["out_sizes"], TileIO.unpack(c["io"]))
    try:
        dispatch.force_implementation("torch")
        forced = forward(*args)
    finally:
        dispatch.force_implementation(None)
    check_close("dispatch", forward(*args), forced, max_frac=0.005)


# ----------------------------------------------------------------------------
# In-process checks that launch no kernel


def test_empty_batch_gives_an_empty_result_without_a_launch():
    # As a digital layer: (G, 0, N), for any IO (no kernel runs: a grid of 0 blocks is invalid).
    from fxanalog.triton_kernels.tile_mvm import launch, supports

    c = CASES["bm-rounds-absmax"]
    io = TileIO.unpack(c["io"])
    x = c["x"][:, :0]
    assert supports(x, c["tiles"], io)
    out = launch(x, c["tiles"], c["in_sizes"], c["out_sizes"], io, c["col_scale"], c["bias"])
    assert out.shape == (2, 0, 23) and out.dtype == torch.float32


def test_ir_drop_and_float64_go_to_the_torch_path():
    from fxanalog.triton_kernels.tile_mvm import launch, supports

    c = case(quiet(ir_drop=1.0, inp_res=1 / 126))
    io = TileIO.unpack(c["io"])
    plain = TileIO.unpack(TileIO.pack(IOParameters(**quiet(inp_res=1 / 126))))
    x64, t64 = c["x"].double(), c["tiles"].double()
    cases = [(c["x"], c["tiles"], io), (x64, t64, plain)]
    assert supports(c["x"], c["tiles"], plain)  # the plain case itself is the kernel's
    dispatch.force_implementation("triton")  # even forced, the dispatch keeps these on the torch path
    try:
        for x, tiles, cio in cases:
            assert not supports(x, tiles, cio)
            assert dispatch.select("tile_mvm", x, x, tiles, cio).name == "torch"
            with pytest.raises(ValueError, match="supports"):
                launch(x, tiles, c["in_sizes"], c["out_sizes"], cio)
    finally:
        dispatch.force_implementation(None)
    # ir_drop changes the result, so the torch path really computes it
    ref = tile_forward(c["x"], c["tiles"], c["in_sizes"], c["out_sizes"], io)
    assert not torch.allclose(ref, tile_forward(c["x"], c["tiles"], c["in_sizes"], c["out_sizes"], plain))


def test_bad_shapes_raise_clear_errors():
    from fxanalog.triton_kernels.tile_mvm import launch

    c = CASES["ABS_MAX-NONE"]
    io = TileIO.unpack(c["io"])
    with pytest.raises(ValueError, match="in_sizes"):
        launch(c["x"], c["tiles"], [10, 27], c["out_sizes"], io)
    with pytest.raises(ValueError, match=r"expected \(G, B, K\)"):
        launch(c["x"][0], c["tiles"], c["in_sizes"], c["out_sizes"], io)


def test_precision_setting():
    from fxanalog.triton_kernels.tile_mvm import get_precision, set_precision

    if "FXANALOG_TRITON_PRECISION" not in os.environ:
        before = torch.get_float32_matmul_precision()
        try:  # follows torch's float32 matmul setting, like cuBLAS
            torch.set_float32_matmul_precision("highest")
            assert get_precision() == "fp32"
            torch.set_float32_matmul_precision("high")
            assert get_precision() == "tf32"
        finally:
            torch.set_float32_matmul_precision(before)
    set_precision("ieee")
    try:
        assert get_precision() == "ieee"
    finally:
        set_precision(None)
    with pytest.raises(ValueError, match="expected one of"):
        set_precision("bf16")


def test_block_heuristic():
    from fxanalog.triton_kernels.utils import tile_blocks

    big = tile_blocks(4096, 4096, 512, 512)
    assert (big.block_m, big.block_n, big.block_k, big.num_warps) == (128, 64, 32, 8)
    small = tile_blocks(1, 23, 13, 10)
    assert (small.block_m, small.block_n, small.block_k) == (16, 32, 16)
    with pytest.raises(ValueError, match="power of two"):
        tile_blocks(10, 10, 10, 10, block_m=24)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
