"""The Triton kernel of the pulsed update (``fxanalog.triton_kernels.tile_update``)
against the torch path (``fxanalog.ops.tile_update_torch``) and against formulas.

On CPU the kernel runs in Triton's interpreter, in one subprocess (this file
run as a script with ``TRITON_INTERPRET=1``, as tests/test_triton_tile.py
explains): the test process builds every input, the subprocess only runs
the launcher, and every comparison is made here. Where CUDA is available
the same cases also run compiled (the ``gpu`` tests; ``bench/gpu_check.sh``).

What is compared:

* **Given trains** (the same bits for both): the kernel and the torch path's
  Python loop apply the same pulses in the same order per cross-point. Without
  cycle-to-cycle noise the weights agree exactly for the constant, linear and
  soft-bounds steps, to 1e-6 for the exponential and power steps (``exp``,
  ``exp2``/``log2`` against ``powf``) and on the GPU (fused multiply-adds);
  every device with and without device-to-device variation, tile arrays with
  uneven pieces, float32 and bfloat16 inputs, a negative learning rate.
* **Drawn trains** (Philox in the kernel, other generators in the torch
  path): in distribution. Pulse counts against BL p q (mean, variance, the
  covariance along a shared error line and a shared input line), weight
  changes against -lr d^T x and their variance against its formula, the
  per-pulse noise, and for every device the mean and variance of the weight
  changes against the torch path's on the same problem. Each statistic is
  checked within 4.5 to 5 standard errors (stated at each check), so a
  correct kernel fails for about one seed in 10^5; the tests are seeded.
* Deterministic cases (probabilities 1): saturation, asymmetry, tile arrays
  with their own maxima, exactly.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from dataclasses import replace

import pytest
import torch

from fxanalog import (
    ConstantStepDevice,
    ExpStepDevice,
    IdealDevice,
    LinearStepDevice,
    PowStepDevice,
    PulseType,
    SoftBoundsDevice,
    UpdateParameters,
)
from fxanalog.config import SoftBoundsReferenceDevice
from fxanalog.devices import CONSTANT_STEP, LINEAR_STEP, ROUTE_DOWN_AS_UP, ROUTE_UP, draw_state, rule_of
from fxanalog.ops import dispatch
from fxanalog.ops.dispatch import triton_available
from fxanalog.ops.tile_update_torch import PulsedUpdate, management, pack_rule, pack_update, pulse_trains, tile_update

pytestmark = pytest.mark.skipif(not triton_available(), reason="triton cannot be imported on this machine")

HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device: the compiled-kernel variants need a GPU")
DW = 1e-3
DEVICES = {"constant": ConstantStepDevice, "soft-bounds": SoftBoundsDevice, "linear": LinearStepDevice,
           "pow": PowStepDevice, "exp": ExpStepDevice}


def no_dtod(device, **kw):
    for name in ("dw_min_dtod", "w_max_dtod", "w_min_dtod", "up_down_dtod"):
        setattr(device, name, 0.0)
    for name, value in kw.items():
        setattr(device, name, value)
    return device


def make_device(name: str, dtod: bool = True, **kw):
    dev = DEVICES[name](**kw)
    if name == "linear":
        dev.gamma_up, dev.gamma_down = 0.5, 0.3
    return dev if dtod else no_dtod(dev)


def problem(device, G, B, N, K, in_sizes, out_sizes, lr=0.7, d_scale=0.05, seed=10, dtype=torch.float32,
            trains=True, w_spread=0.8) -> dict:
    """A launch's arguments (CPU tensors) and, with ``trains``, given pulse trains."""
    torch.manual_seed(seed)
    rule = rule_of(device)
    st = draw_state(device, (G, N, K))
    params = torch.stack([st[n] for n in rule.pulse_names], dim=-1).contiguous()
    x = torch.randn(G, B, K).to(dtype)
    d = (torch.randn(G, B, N) * d_scale).to(dtype)
    w0 = ((torch.rand(G, N, K) - 0.5) * w_spread).clamp(st["b_min"], st["b_max"])
    up = PulsedUpdate.of(UpdateParameters(), DW)
    c = dict(w=w0, x=x, d=d, lr=lr, up=up, rule=rule, params=params, in_sizes=in_sizes, out_sizes=out_sizes)
    if trains:
        c["trains"] = pulse_trains(x.float(), d.float(), abs(lr), up, in_sizes, out_sizes)[:2]
    return c


def torch_path(c: dict, use_native=None) -> tuple[torch.Tensor, torch.Tensor]:
    w = c["w"].clone()
    touched = tile_update(w, c["x"].float(), c["d"].float(), c["lr"], c["up"], c["rule"], c["params"],
                          c["in_sizes"], c["out_sizes"], trains=c.get("trains"),
                          use_native=False if "trains" in c else use_native)
    return diagonal(w, c), diagonal(touched, c)


def _launch(c: dict, device: str, block=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel on case ``c``; ``block`` (default: the case's own, else 16)
    sets both block sizes. A block-diagonal case (``"R"`` in it) returns its
    R diagonal blocks as (R, n, k) weights."""
    from fxanalog.triton_kernels.tile_update import launch

    def on(t):
        return t.to(device)

    block = block or c.get("block", 16)
    w = on(c["w"].clone())
    trains = None if "trains" not in c else (on(c["trains"][0]), on(c["trains"][1]))
    touched = launch(w, on(c["x"]), on(c["d"]), c["lr"], c["up"], c["rule"], on(c["params"]), c["in_sizes"],
                     c["out_sizes"], trains, block_i=block, block_j=block)
    return diagonal(w.cpu(), c), diagonal(touched.cpu(), c)


def diagonal(t: torch.Tensor, c: dict) -> torch.Tensor:
    """The R diagonal (n, k) blocks of a block-diagonal case's (1, R n, R k)
    result, as (R, n, k); other results unchanged."""
    if "R" not in c:
        return t
    R, n, k = c["R"], c["n"], c["k"]
    r = torch.arange(R)
    return t.reshape(R, n, R, k).permute(0, 2, 1, 3)[r, r]


# ----------------------------------------------------------------------------
# Cases

def given_cases() -> dict:
    cases = {}
    for name in DEVICES:
        for dtod in (True, False):
            cases[f"{name}-dtod{int(dtod)}"] = problem(make_device(name, dtod, dw_min_std=0.0), 2, 4, 21, 23,
                                                       [12, 11], [16, 5], lr=0.15)
    cases["constant-bf16"] = problem(make_device("constant", dw_min_std=0.0), 2, 3, 9, 11, [6, 5], [5, 4],
                                     dtype=torch.bfloat16, lr=0.15)
    cases["soft-bounds-negative-lr"] = problem(make_device("soft-bounds", dw_min_std=0.0), 1, 4, 9, 11, [11], [9],
                                               lr=-0.15)
    cases["constant-long-trains"] = problem(make_device("constant", dw_min_std=0.0), 1, 2, 8, 9, [9], [8],
                                            d_scale=2.0)  # k > desired_bl: BL = 31
    cases["stack-one-sided"] = stack_problem()
    cases["soft-bounds-reference"] = problem(
        SoftBoundsReferenceDevice(dw_min_std=0.0, reference_std=0.1, subtract_symmetry_point=True, up_down=0.2),
        2, 4, 21, 23, [12, 11], [16, 5], lr=0.15)
    return cases


def stack_problem() -> dict:
    """A stack of two devices of different kinds sharing the trains, routed
    as a one-sided pair (soft bounds: up pulses; constant step: down pulses
    as up pulses), parameters padded to the longer of the two."""
    c = problem(make_device("soft-bounds", dw_min_std=0.0), 2, 3, 9, 11, [6, 5], [5, 4], lr=0.15)
    other = make_device("constant", dw_min_std=0.0)
    rule = rule_of(other)
    st = draw_state(other, (2, 9, 11))
    p = torch.stack([st[n] for n in rule.pulse_names], dim=-1)
    p = torch.nn.functional.pad(p, (0, c["params"].shape[-1] - p.shape[-1]))
    c["rule"] = (replace(c["rule"], route=ROUTE_UP), replace(rule, route=ROUTE_DOWN_AS_UP))
    c["params"] = torch.stack([c["params"], p]).contiguous()
    c["w"] = torch.stack([c["w"], c["w"].clamp(st["b_min"], st["b_max"])]).contiguous()
    return c


def block_diagonal(device, x: torch.Tensor, d: torch.Tensor, lr: float, R: int, w0=None, state=None) -> dict:
    """R independent repetitions of the update of one n x k tile with the rows
    ``x`` (B, k) and ``d`` (B, n), as the R diagonal blocks of one (R n) x (R k)
    tile: block r has input lines r k .. r k + k - 1 and error lines
    r n .. r n + n - 1 of its own, so the blocks draw independent trains; every
    row's largest |x| and |d| are those of the small problem, so the
    management is the same. The (n, k) pattern of weights and device
    parameters (one draw of the device's spread, or the given ``state``) is
    repeated over the whole tile. ``_launch`` returns the R blocks."""
    rule = rule_of(device)
    B, k = x.shape
    n = d.shape[1]
    st = state if state is not None else draw_state(device, (1, n, k))
    params = torch.stack([st[name][0] for name in rule.pulse_names], -1)  # (n, k, P)
    w0 = torch.zeros(n, k) if w0 is None else w0
    return dict(w=w0.repeat(R, R)[None].contiguous(), x=x.repeat(1, R)[None].contiguous(),
                d=d.repeat(1, R)[None].contiguous(), lr=lr, up=PulsedUpdate.of(UpdateParameters(), DW), rule=rule,
                params=params.repeat(R, R, 1)[None].contiguous(), in_sizes=[R * k], out_sizes=[R * n], R=R, n=n,
                k=k, block=256, small=dict(x=x, d=d, w0=w0, params=params))


def _count_case(R=1000) -> dict:
    """R repetitions of one row, a ConstantStep device without noise, spread
    or bounds in reach: |dw| / DW counts pulses."""
    dev = no_dtod(ConstantStepDevice(dw_min_std=0.0), w_max=100.0, w_min=-100.0)
    return block_diagonal(dev, torch.tensor([[0.9, 0.5, -0.3]]), torch.tensor([[0.02, -0.01]]), 0.1, R)


def _mean_case(R=400) -> dict:
    """R repetitions of a 3-row update of a 4 x 5 tile with noise (no spread)."""
    dev = no_dtod(ConstantStepDevice(dw_min_std=0.3), w_max=100.0, w_min=-100.0)
    g = torch.Generator().manual_seed(9)
    x, d = torch.randn(3, 5, generator=g), torch.randn(3, 4, generator=g) * 0.05
    return block_diagonal(dev, x, d, 0.02, R)


PULSES = 25


def _noise_case(rows=PULSES) -> dict:
    """One up pulse per row and cross-point (x = 1, d = -DW, lr 1: k = 1, BL = 1,
    probabilities 1), ``rows`` rows on 64 x 64 cross-points with dw_min_std 0.3."""
    dev = no_dtod(ConstantStepDevice(dw_min_std=0.3), w_max=10.0, w_min=-10.0)
    rule = rule_of(dev)
    st = draw_state(dev, (1, 64, 64))
    return dict(w=torch.zeros(1, 64, 64), x=torch.ones(1, rows, 64), d=-torch.ones(1, rows, 64) * DW, lr=1.0,
                up=PulsedUpdate.of(UpdateParameters(), DW), rule=rule,
                params=torch.stack([st[n] for n in rule.pulse_names], -1).contiguous(), in_sizes=[64],
                out_sizes=[64], block=64)


def _device_case(name: str, R=400) -> dict:
    """R repetitions of a 2-row update of a 3 x 4 tile on the named device
    with its default noise and one fixed draw of its spread (k about 4, so
    BL about 4)."""
    dev = make_device(name)
    torch.manual_seed(21)
    st = draw_state(dev, (1, 3, 4))
    g = torch.Generator().manual_seed(22)
    x, d = torch.randn(2, 4, generator=g), torch.randn(2, 3, generator=g) * 0.1
    w0 = ((torch.rand(3, 4, generator=g) - 0.5) * 0.4).clamp(st["b_min"][0], st["b_max"][0])
    return block_diagonal(dev, x, d, 0.01, R, w0=w0, state=st)


def _deterministic_cases() -> dict:
    up = PulsedUpdate.of(UpdateParameters(), DW)
    soft = no_dtod(SoftBoundsDevice(dw_min_std=0.0))
    asym = no_dtod(ConstantStepDevice(dw_min_std=0.0), up_down=-0.2)
    const = no_dtod(ConstantStepDevice(dw_min_std=0.0))

    def case(dev, x, d, lr, in_sizes, out_sizes):
        rule = rule_of(dev)
        G, B, K = x.shape
        N = d.shape[-1]
        st = draw_state(dev, (G, N, K))
        return dict(w=torch.zeros(G, N, K), x=x, d=d, lr=lr, up=up, rule=rule, in_sizes=in_sizes,
                    out_sizes=out_sizes, params=torch.stack([st[n] for n in rule.pulse_names], -1).contiguous())

    n = 50
    return {
        # 200 up pulses (k = 1: BL 1, p = q = 1): b_max - w_n = (b_max - w_0)(1 - dw / b_max)^n
        "saturation": case(soft, torch.ones(1, 200, 1), -torch.ones(1, 200, 1) * DW, 1.0, [1], [1]),
        # alternately up and down: drift -0.2 n dw
        "asymmetry": case(asym, torch.ones(1, 2 * n, 1), torch.tensor([-DW, DW] * n).reshape(1, 2 * n, 1), 1.0,
                          [1], [1]),
        # two input pieces with their own maxima: BL 10 and 1, probabilities 1 (see test_training.py)
        "own-maxima": case(const, torch.tensor([[[1.0, 1.0, 0.1, 0.1]]]), torch.tensor([[[-0.01]]]), 1.0, [2, 2],
                           [1]),
    }


GIVEN = given_cases()
DETERMINISTIC = _deterministic_cases()
DEVICE_CASES = {name: _device_case(name) for name in DEVICES}


def stream_keys() -> list:
    """(rnd, stream, tiles, tile) combinations whose keys must all differ."""
    return [(r, s, 6, t) for r in (0, 1, 70000) for s in range(8) for t in (0, 5)]


if triton_available():  # at module level: the interpreter resolves a kernel's names in its globals
    import triton
    import triton.language as tl

    from fxanalog.triton_kernels.streams import stream_key

    @triton.jit
    def _keys_kernel(seed_ptr, args_ptr, out_ptr):
        i = tl.program_id(0)
        rnd, stream = tl.load(args_ptr + 4 * i), tl.load(args_ptr + 4 * i + 1)
        tiles, tile = tl.load(args_ptr + 4 * i + 2), tl.load(args_ptr + 4 * i + 3)
        tl.store(out_ptr + i, stream_key(tl.load(seed_ptr), rnd, stream, tiles, tile))


def _worker(inp: str, outp: str) -> None:
    """Subprocess entry: run every case through the interpreted kernel."""
    import fxanalog.triton_kernels.tile_update as kernels

    jobs = torch.load(inp, weights_only=False)
    results = {"interpreted": type(kernels._update_kernel).__name__ == "InterpretedFunction"}
    for key, c in jobs.items():
        if key == "keys":
            args = torch.tensor(c, dtype=torch.int32).reshape(-1)
            out = torch.zeros(len(c), dtype=torch.int64)
            _keys_kernel[(len(c),)](torch.tensor([12345]), args, out)
            results[key] = out
        elif key == "repro":
            torch.manual_seed(77)
            a = _launch(c, "cpu")
            b = _launch(c, "cpu")
            torch.manual_seed(77)
            results[key] = (a, b, _launch(c, "cpu"))
        elif key == "op":  # through fxanalog::tile_update, the dispatch forced to Triton
            launches = []
            dispatch.register("tile_update", "triton",
                              lambda *a, **k: launches.append(1) or kernels.launch(*a, **k), supports=kernels.supports)
            dispatch.force_implementation("triton")
            w = c["w"].clone()
            touched = torch.ops.fxanalog.tile_update(w, c["x"], c["d"], c["params"], c["lr"], pack_update(c["up"]),
                                                     pack_rule(c["rule"]), c["in_sizes"], c["out_sizes"])
            dispatch.force_implementation(None)
            results[key] = (w, touched, len(launches))
        else:
            torch.manual_seed(0)
            results[key] = _launch(c, "cpu")
    torch.save(results, outp)


@pytest.fixture(scope="module")
def interpreted():
    jobs = {f"given:{k}": v for k, v in GIVEN.items()}
    jobs.update({f"det:{k}": v for k, v in DETERMINISTIC.items()})
    jobs.update({f"device:{k}": v for k, v in DEVICE_CASES.items()})
    jobs.update({"counts": _count_case(), "mean": _mean_case(), "noise": _noise_case(), "keys": stream_keys(),
                 "repro": _noise_case(), "op": DETERMINISTIC["saturation"]})
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = os.path.join(tmp, "in.pt"), os.path.join(tmp, "out.pt")
        torch.save(jobs, inp)
        env = dict(os.environ, TRITON_INTERPRET="1")
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), inp, outp], env=env, capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"interpreted kernel run failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
        results = torch.load(outp, weights_only=False)
    assert results.pop("interpreted"), "the subprocess did not run Triton's interpreter"
    return results


# ----------------------------------------------------------------------------
# Checks (shared by the interpreted and the GPU runs)

def check_given(name: str, c: dict, result: tuple, atol_exact: float = 0.0) -> None:
    w_ref, t_ref = torch_path(c)
    w, touched = result
    assert torch.equal(touched, t_ref) and bool(t_ref.any()), name
    rules = c["rule"] if isinstance(c["rule"], tuple) else (c["rule"],)
    atol = atol_exact if all(r.kind in (CONSTANT_STEP, LINEAR_STEP) for r in rules) else 1e-6
    torch.testing.assert_close(w, w_ref, atol=atol, rtol=0, msg=name)


def check_counts(w: torch.Tensor, c: dict) -> None:
    R = w.shape[0]
    counts = (w.double().abs() / DW).round()  # (R, N, K)
    x, d = c["small"]["x"][0], c["small"]["d"][0]
    BL, A, B = management(x.abs().max()[None], d.abs().max()[None], c["lr"], c["up"])
    bl = BL.item()
    assert bl == math.ceil(c["lr"] * 0.9 * 0.02 / DW)
    p, q = (B * x.abs()).clamp(max=1).double(), (A * d.abs()).clamp(max=1).double()
    pq = q[:, None] * p[None, :]
    var = bl * pq * (1 - pq)
    assert bool(((counts.mean(0) - bl * pq).abs() < 4.5 * torch.sqrt(var / R)).all())  # 4.5 standard errors
    assert bool(((counts.var(0) / var - 1).abs() < 0.2).all())  # the variance's standard error is ~0.04 here
    for a, b, expected in ((counts[:, 0, 0], counts[:, 0, 1], bl * q[0] * (1 - q[0]) * p[0] * p[1]),  # error line 0
                           (counts[:, 0, 0], counts[:, 1, 0], bl * p[0] * (1 - p[0]) * q[0] * q[1])):  # input line 0
        cov = ((a - a.mean()) * (b - b.mean())).mean().item()
        assert expected.item() > 0.01 and abs(cov / expected.item() - 1) < 0.25


def check_mean(w: torch.Tensor, c: dict) -> None:
    # E[dW] = -lr d^T x; Var(dW_ij) = sum_b dw^2 (Var n_b + E n_b sd^2), n_b ~ Binomial(BL_b, p_j q_i)
    R = w.shape[0]
    x, d, lr, up = c["small"]["x"], c["small"]["d"], c["lr"], c["up"]
    target = -lr * d.double().T @ x.double()
    var = torch.zeros(4, 5, dtype=torch.float64)
    for b in range(x.shape[0]):
        BL, A, B = management(x[b].abs().max()[None], d[b].abs().max()[None], lr, up)
        pq = ((A * d[b].abs()).clamp(max=1)[:, None] * (B * x[b].abs()).clamp(max=1)[None, :]).double()
        n_mean, n_var = BL.item() * pq, BL.item() * pq * (1 - pq)
        var += DW**2 * (n_var + n_mean * 0.3**2)
    mean = w.double().mean(0)
    assert bool(((mean - target).abs() < 4.5 * torch.sqrt(var / R)).all())  # 4.5 standard errors
    # the sample variance of R draws: standard error about sqrt(2 / R) relative (0.071 for R = 400): 5 of them
    assert bool(((w.double().var(0) / var - 1).abs() < 5 * math.sqrt(2 / R)).all())


def check_noise(w: torch.Tensor) -> None:
    # PULSES pulses dw (1 + 0.3 xi) per cross-point: mean PULSES dw, std 0.3 dw sqrt(PULSES), over 4096
    # cross-points (4.5 and 5 standard errors)
    delta = w.double().flatten() / DW
    M, sd = delta.numel(), 0.3 * math.sqrt(PULSES)
    assert abs(delta.mean().item() - PULSES) < 4.5 * sd / math.sqrt(M)
    assert abs(delta.std().item() / sd - 1) < 5 / math.sqrt(2 * M)


def check_device(name: str, w: torch.Tensor, c: dict) -> None:
    # the kernel and the torch path on the same problem: per cross-point means within 5 standard errors of
    # their difference, and standard deviations within 25% (the ratio's standard error is ~0.05 for R = 400)
    ref, _ = torch_path(c)
    k, r = w.double(), ref.double()
    R = k.shape[0]
    se = torch.sqrt((k.var(0) + r.var(0)) / R) + 1e-9
    assert bool(((k.mean(0) - r.mean(0)).abs() < 5 * se).all()), name
    moving = r.std(0) > 1e-6
    assert bool(moving.any()), name
    ratio = k.std(0)[moving] / r.std(0)[moving]
    assert bool(((ratio - 1).abs() < 0.25).all()), (name, ratio)


def check_deterministic(name: str, w: torch.Tensor) -> None:
    if name == "saturation":
        assert math.isclose(w.item(), 0.6 - 0.6 * (1 - DW / 0.6) ** 200, rel_tol=1e-5)
    elif name == "asymmetry":
        assert math.isclose(w.item(), -0.2 * 50 * DW, rel_tol=1e-5, abs_tol=1e-9)
    else:
        torch.testing.assert_close(w, torch.tensor([[[10 * DW, 10 * DW, DW, DW]]]), atol=1e-7, rtol=0)


# ----------------------------------------------------------------------------
# Interpreted (CPU, in CI)

@pytest.mark.parametrize("name", list(GIVEN))
def test_given_trains_match_the_torch_path_interpreted(name, interpreted):
    check_given(name, GIVEN[name], interpreted[f"given:{name}"])


def test_pulse_counts_interpreted(interpreted):
    check_counts(interpreted["counts"][0], _count_case())


def test_mean_and_variance_of_the_weight_change_interpreted(interpreted):
    check_mean(interpreted["mean"][0], _mean_case())


def test_pulse_noise_interpreted(interpreted):
    check_noise(interpreted["noise"][0])


@pytest.mark.parametrize("name", list(DEVICE_CASES))
def test_every_device_in_distribution_interpreted(name, interpreted):
    check_device(name, interpreted[f"device:{name}"][0], DEVICE_CASES[name])


@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_deterministic_cases_interpreted(name, interpreted):
    check_deterministic(name, interpreted[f"det:{name}"][0])


def test_seeded_and_fresh_draws_interpreted(interpreted):
    a, b, again = interpreted["repro"]
    assert torch.equal(a[0], again[0])  # torch.manual_seed reproduces a call
    assert not torch.equal(a[0], b[0])  # every call draws anew


def test_stream_keys_differ_interpreted(interpreted):
    keys = interpreted["keys"].tolist()
    expected = [12345 + (((r * 8 + s) * tiles + t) << 32) for r, s, tiles, t in stream_keys()]
    assert keys == expected and len(set(keys)) == len(keys)


def test_the_op_dispatches_to_the_kernel_interpreted(interpreted):
    w, touched, launches = interpreted["op"]
    assert launches == 1
    check_deterministic("saturation", w)
    assert bool(touched.all())


# ----------------------------------------------------------------------------
# Compiled on a GPU (bench/gpu_check.sh)

@gpu
@pytest.mark.parametrize("name", list(GIVEN))
def test_given_trains_match_the_torch_path_gpu(name):
    check_given(name, GIVEN[name], _launch(GIVEN[name], "cuda", block=32), atol_exact=1e-6)


@gpu
def test_statistics_gpu():
    check_counts(_launch(_count_case(), "cuda", block=32)[0], _count_case())
    check_mean(_launch(_mean_case(), "cuda", block=32)[0], _mean_case())
    check_noise(_launch(_noise_case(), "cuda", block=32)[0])
    for name, c in DEVICE_CASES.items():
        check_device(name, _launch(c, "cuda", block=32)[0], c)
    for name, c in DETERMINISTIC.items():
        check_deterministic(name, _launch(c, "cuda", block=32)[0])


@gpu
def test_pulsed_training_step_on_the_gpu():
    # A layer trained on CUDA takes the kernel (the dispatch's default) and moves like the torch path in
    # expectation: one step's change against -lr d^T x within 5 standard errors over 64 repetitions.
    from fxanalog import SingleRPUConfig
    from fxanalog.nn import AnalogLinear
    from fxanalog.optim import AnalogSGD

    cfg = SingleRPUConfig(device=no_dtod(ConstantStepDevice(), w_max=10.0, w_min=-10.0))
    cfg.forward.is_perfect = cfg.backward.is_perfect = True
    torch.manual_seed(3)
    layer = AnalogLinear(40, 30, bias=False, rpu_config=cfg).cuda()
    x = torch.randn(16, 40, device="cuda")
    y = torch.randn(16, 30, device="cuda")
    w0 = layer.weight.detach().clone()
    grad = torch.func.grad(lambda w: torch.nn.functional.mse_loss(x @ w.T, y))(w0)
    changes = []
    for _ in range(64):
        with torch.no_grad():
            layer.weight.copy_(w0)
        opt = AnalogSGD(layer.parameters(), lr=0.5)
        torch.nn.functional.mse_loss(layer(x), y).backward()
        opt.step()
        changes.append(layer.weight.detach() - w0)
    c = torch.stack(changes).double()
    se = c.std(0) / 8 + 1e-6
    assert bool(((c.mean(0) + 0.5 * grad.double()).abs() < 5 * se).all())


# ----------------------------------------------------------------------------
# In-process checks that launch no kernel

def test_other_cases_go_to_the_torch_path():
    from fxanalog.triton_kernels.tile_update import launch, supports

    c = problem(make_device("constant"), 1, 3, 4, 5, [5], [4], trains=False)
    args = (c["w"], c["x"], c["d"], c["lr"], c["up"], c["rule"], c["in_sizes"], c["out_sizes"])
    assert supports(*args)
    variants = {
        "res": dict(up=PulsedUpdate.of(UpdateParameters(res=0.1), DW)),
        "mean-count": dict(up=PulsedUpdate.of(UpdateParameters(pulse_type=PulseType.MEAN_COUNT), DW)),
        "none": dict(up=PulsedUpdate.of(UpdateParameters(pulse_type=PulseType.NONE), DW)),
        "ideal": dict(rule=rule_of(IdealDevice())),
        "empty-batch": dict(x=c["x"][:, :0], d=c["d"][:, :0]),
        "lr-0": dict(lr=0.0),
        "float64": dict(x=c["x"].double(), d=c["d"].double()),
    }
    names = ("w", "x", "d", "lr", "up", "rule", "in_sizes", "out_sizes")
    dispatch.force_implementation("triton")  # even forced, the dispatch keeps these on the torch path
    try:
        for name, change in variants.items():
            v = dict(zip(names, args), **change)
            assert not supports(*(v[n] for n in names)), name
            assert dispatch.select("tile_update", v["w"], *(v[n] for n in names)).name == "torch", name
            with pytest.raises(ValueError, match="supports"):
                launch(v["w"], v["x"], v["d"], v["lr"], v["up"], v["rule"], c["params"], v["in_sizes"],
                       v["out_sizes"])
    finally:
        dispatch.force_implementation(None)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
