"""GPU benchmark of the fused Triton tile forward against cuBLAS and the torch path.

For (in, out, batch) = (4096, 4096, 4096), (8192, 8192, 2048), a
BERT-base-shaped encoder (12 layers, hidden 768, FFN 3072, 16 x 128 tokens)
and a ResNet-50-shaped CNN (bottlenecks [3, 4, 6, 3], 16 x 3 x 224 x 224),
with the default InferenceRPUConfig (7-bit DAC, 9-bit ADC, output noise,
abs-max noise management, iterative bound management), eval mode under
torch.no_grad(), two mappings: one tile per layer, and 512 x 512 tiles.
It prints, measured in the same run on the same GPU:

- digital: the plain torch model / F.linear (cuBLAS), in ms;
- triton: the analog model on the Triton path, as a ratio to digital
  (target <= 1.3);
- torch: the analog model on the torch path (``force_implementation("torch")``), as a
  ratio to the Triton path (target >= 3).

Times are medians of CUDA-event timings after warm-up (the warm-up compiles
the kernels). torch's default float32 matmul precision ("highest") applies to
both sides; a last line repeats the first layer with
``torch.set_float32_matmul_precision("high")`` (TF32 in cuBLAS and in the
kernel).

Run: python bench/bench_gpu.py [--repeat 10] [--quick] [--json figures.json]

Without a GPU, ``--compile-only`` compiles the kernels of the default
configuration for sm_90 (Triton's compiler and ptxas, no device needed) and
prints their registers and spill stack per thread.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def fail(msg: str) -> None:
    print(f"bench_gpu.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ----------------------------------------------------------------------------
# Models (plain torch modules)


class EncoderLayer(nn.Module):
    """A BERT-base encoder layer: q, k, v, o projections, FFN, two LayerNorms."""

    def __init__(self, d=768, heads=12, ffn=3072):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x):
        B, T, D = x.shape

        def split(t):
            return t.view(B, T, self.heads, D // self.heads).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        x = self.ln1(x + self.o(a.transpose(1, 2).reshape(B, T, D)))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


def bert_base() -> nn.Module:
    return nn.Sequential(*[EncoderLayer() for _ in range(12)])


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


def resnet50() -> nn.Module:
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
            cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers)


def to_analog(model: nn.Module, rpu_config) -> nn.Module:
    """A copy with every nn.Linear / nn.Conv2d replaced by its analog layer."""
    from fxanalog.nn import AnalogConv2d, AnalogLinear

    if isinstance(model, nn.Linear):
        return AnalogLinear.from_digital(model, rpu_config)
    if isinstance(model, nn.Conv2d):
        return AnalogConv2d.from_digital(model, rpu_config)
    model = copy.copy(model)  # a shallow copy with its own table of children
    model._modules = {name: to_analog(child, rpu_config) for name, child in model._modules.items()}
    return model


# ----------------------------------------------------------------------------
# Timing


def cuda_time(fn, repeat: int, warmup: int = 2) -> float:
    """Median seconds of fn() by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def count_launches(fn, op: str = "tile_mvm") -> int:
    """Calls of op's Triton launcher (``triton_kernels/<op>.py``) while fn() runs."""
    import importlib

    from fxanalog.ops import dispatch

    kernel = importlib.import_module(f"fxanalog.triton_kernels.{op}")
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return kernel.launch(*args, **kwargs)

    dispatch.register(op, "triton", counted, supports=kernel.supports)
    try:
        fn()
    finally:
        dispatch.register(op, "triton", kernel.launch, supports=kernel.supports)
    return len(calls)


def configs():
    import fxanalog

    one = fxanalog.InferenceRPUConfig()
    one.mapping.max_input_size = one.mapping.max_output_size = 0
    return [("1 tile", one), ("512-tiles", fxanalog.InferenceRPUConfig())]


def measure(name: str, digital: nn.Module, x: torch.Tensor, repeat: int, rows: list) -> None:
    from fxanalog.ops import force_implementation

    digital = digital.cuda().eval()
    with torch.no_grad():
        t_dig = cuda_time(lambda: digital(x), repeat)
        for label, cfg in configs():
            analog = to_analog(digital, cfg).eval()
            t0 = time.perf_counter()
            launches = count_launches(lambda: analog(x))  # also compiles the kernels for these shapes
            torch.cuda.synchronize()
            first = time.perf_counter() - t0
            if launches == 0:
                fail(f"{name}, {label}: the analog model did not reach the Triton kernels (forced torch path?)")
            t_tri = cuda_time(lambda: analog(x), repeat)
            force_implementation("torch")
            try:
                t_torch = cuda_time(lambda: analog(x), max(3, repeat // 3), warmup=1)
            finally:
                force_implementation(None)
            rows.append((name, label, t_dig, t_tri, t_torch))
            print(
                f"{name:>26} | {label:>9} | {t_dig * 1e3:10.3f} | {t_tri * 1e3:10.3f} | {t_tri / t_dig:7.2f}x | "
                f"{t_torch * 1e3:10.3f} | {t_torch / t_tri:7.2f}x | {first:6.1f}",
                flush=True,
            )
            del analog
            torch.cuda.empty_cache()


def kernel_report() -> None:
    """Registers and spills of the compiled kernels (Triton's cache; best effort)."""
    from fxanalog.triton_kernels import tile_mvm

    for kname in ("_dac_kernel", "_tile_forward_kernel", "_bound_management_kernel"):
        kern = getattr(tile_mvm, kname)
        seen = []
        try:
            for caches in getattr(kern, "device_caches", {}).values():
                table = caches[0] if isinstance(caches, tuple) else caches
                for compiled in getattr(table, "values", lambda: [])():
                    regs, spills = getattr(compiled, "n_regs", "?"), getattr(compiled, "n_spills", "?")
                    warps = getattr(getattr(compiled, "metadata", None), "num_warps", "?")
                    seen.append(f"regs {regs} spills {spills} warps {warps}")
        except Exception as exc:  # the cache layout differs between Triton versions
            seen.append(f"(not readable: {exc!r})")
        print(f"  {kname}: {len(seen)} compiled; " + "; ".join(sorted(set(seen))[:6]))


# Argument types of the kernels for an offline compile (pointers by name).
_PTR_TYPES = {
    "x_ptr": "*fp32", "a_ptr": "*fp32", "v_ptr": "*fp32", "w_ptr": "*fp32", "out_ptr": "*fp32", "alpha_ptr": "*fp32",
    "ssq_ptr": "*fp32", "cs_ptr": "*fp32", "bias_ptr": "*fp32", "s_ptr": "*i16", "nonzero_ptr": "*i32",
    "flags_ptr": "*i32", "seed_ptr": "*i64", "starts_ptr": "*i32", "sizes_ptr": "*i32", "piece_of_col_ptr": "*i32",
    "out_starts_ptr": "*i32", "out_sizes_ptr": "*i32",
}
_FLOAT_ARGS = {"ux", "uy", "alpha_const", "nm_thres", "inp_bound", "inp_noise", "out_noise", "w_noise", "nl",
               "out_bound", "out_scale", "out_sat"}


def compile_only(arch: int) -> None:
    """Compile the default-configuration kernels for sm_<arch> without a GPU
    and print registers / spill stack (cuobjdump of the cubin)."""
    import os
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fxanalog.triton_kernels import tile_mvm

    flags = dict(ALPHA_PER_ROW=True, GATE=True, QUANT_IN=True, STO_IN=False, INP_NOISE=False, RANDOM=True,
                 OUT_NOISE=True, W_NOISE=0, NONLIN=False, QUANT_OUT=True, STO_OUT=False, S_INT16=True, HAS_CS=False)
    kernels = [
        ("_dac_kernel", dict(flags, SIGNED_MAX=False, CAP=False, SSQ=False, CLIP_IN=True, ZERO_FLAGS=True,
                             BLOCK_R=32, BLOCK_C=128), 4),
        ("_tile_forward_kernel", dict(flags, A_PADDED=True, BOUNDED=True, BM_ITER=True, HAS_BIAS=True, PRECISION=2,
                                      A_EXACT=True, BIG=False, BLOCK_M=128, BLOCK_N=64, BLOCK_K=32, GROUP_M=8), 8),
        ("_bound_management_kernel", dict(flags, CLIP_IN=True, BLOCK_N=128, BLOCK_K=32), 4),
    ]
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    counts = {"n_in", "n_out", "GN", "n_rounds", "p_in"}
    for (name, consts, warps), aligned in [(k, True) for k in kernels] + [(kernels[1], False)]:
        kern = getattr(tile_mvm, name)
        sig, constexprs, attrs = {}, {}, {}
        for idx, arg in enumerate(kern.arg_names):
            if arg in consts:
                sig[arg], constexprs[arg] = "constexpr", consts[arg]
            elif arg in ("sxk", "sak", "swn", "scn"):
                sig[arg], constexprs[arg] = "constexpr", 1  # unit strides, as Triton specializes them
            elif arg in _PTR_TYPES:
                sig[arg] = _PTR_TYPES[arg]
                attrs[(idx,)] = [["tt.divisibility", 16]]
            else:
                sig[arg] = "fp32" if arg in _FLOAT_ARGS else "i32"
                if aligned and sig[arg] == "i32" and arg not in counts:  # sizes, strides multiples of 16
                    attrs[(idx,)] = [["tt.divisibility", 16]]
        t0 = time.perf_counter()
        compiled = triton.compile(
            ASTSource(kern, sig, constexprs=constexprs, attrs=attrs),
            target=GPUTarget("cuda", arch, 32),
            options=dict(num_warps=warps, num_stages=3),
        )
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(compiled.asm["cubin"])
            f.flush()
            usage = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True).stdout
        res = " ".join(w for line in usage.splitlines() if "REG" in line for w in line.split()[:2])
        shapes = "sizes multiple of 16" if aligned else "unaligned sizes"
        print(f"{name} ({shapes}): sm_{arch}, {warps} warps, {time.perf_counter() - t0:.1f} s: {res}", flush=True)


_UPDATE_PTR_TYPES = {
    "w_ptr": "*fp32", "touched_ptr": "*i8", "x_ptr": "*fp32", "d_ptr": "*fp32", "bl_ptr": "*i32", "a_ptr": "*fp32",
    "bx_ptr": "*fp32", "params_ptr": "*fp32", "x_given_ptr": "*i64", "d_given_ptr": "*i64", "seed_ptr": "*i64",
    "in_starts_ptr": "*i32", "in_sizes_ptr": "*i32", "out_starts_ptr": "*i32", "out_sizes_ptr": "*i32",
}

_UPDATE_FLOAT_ARGS = {"sd", "exp_a", "exp_b", "a_up", "a_down", "g_up", "g_down", "std_add", "std_slope"}


def compile_update_only(arch: int) -> None:
    """Compile the pulsed update kernel for every device kind for sm_<arch>
    without a GPU and print registers / spill stack."""
    import os
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fxanalog.devices import (CONSTANT_STEP, EXP_STEP, LINEAR_STEP, POW_STEP, PULSE_NAMES, ROUTE_BOTH,
                                  ROUTE_DOWN_AS_UP)
    from fxanalog.triton_kernels import tile_update

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    kern = tile_update._update_kernel
    variants = [(name, kind, ROUTE_BOTH, 0) for name, kind in (("constant", CONSTANT_STEP), ("linear", LINEAR_STEP),
                                                               ("exp", EXP_STEP), ("pow", POW_STEP))]
    variants += [("soft-bounds reference", LINEAR_STEP, ROUTE_BOTH, len(PULSE_NAMES[LINEAR_STEP])),
                 ("constant, one-sided g-", CONSTANT_STEP, ROUTE_DOWN_AS_UP, 0)]
    for name, kind, route, ref in variants:
        consts = dict(KIND=kind, NP=len(PULSE_NAMES[kind]) + (1 if ref else 0), MULT_NOISE=True,
                      COMPLEX_NOISE=kind == EXP_STEP, NOISY=True, FLIP=False, GIVEN=False, ROUTE=route, REF=ref,
                      BLOCK_I=32, BLOCK_J=32)
        sig, constexprs = {}, {}
        for arg in kern.arg_names:
            if arg in consts:
                sig[arg], constexprs[arg] = "constexpr", consts[arg]
            else:
                sig[arg] = _UPDATE_PTR_TYPES.get(arg, "fp32" if arg in _UPDATE_FLOAT_ARGS else "i32")
        t0 = time.perf_counter()
        compiled = triton.compile(ASTSource(kern, sig, constexprs=constexprs), target=GPUTarget("cuda", arch, 32),
                                  options=dict(num_warps=4))
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(compiled.asm["cubin"])
            f.flush()
            usage = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True).stdout
        res = " ".join(w for line in usage.splitlines() if "REG" in line for w in line.split()[:2])
        print(f"_update_kernel ({name}): sm_{arch}, 4 warps, {time.perf_counter() - t0:.1f} s: {res}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="the two layer shapes only")
    ap.add_argument("--compile-only", action="store_true", help="compile for sm_<arch> offline, no GPU needed")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.compile_only:
        compile_only(args.arch)
        compile_update_only(args.arch)
        return
    if not torch.cuda.is_available():
        fail("no CUDA device: this benchmark needs a GPU (see docs/triton.md; bench/bench_tile.py is the CPU one)")
    from fxanalog.ops.dispatch import triton_available

    if not triton_available():
        fail("triton cannot be imported: the Triton path is not available")
    from fxanalog.triton_kernels.tile_mvm import get_precision
    import triton

    import fxanalog

    fxanalog.manual_seed(0)
    dev = torch.cuda.get_device_name(0)
    print(f"{dev}, torch {torch.__version__}, triton {triton.__version__}, kernel precision {get_precision()}, "
          f"median of {args.repeat}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    header = (
        f"{'case':>26} | {'mapping':>9} | {'digital ms':>10} | {'triton ms':>10} | {'tri/dig':>8} | "
        f"{'torch ms':>10} | {'tor/tri':>8} | {'1st s':>6}"
    )
    print(header)
    print("-" * len(header))
    rows: list = []
    for n_in, n_out, batch in ((4096, 4096, 4096), (8192, 8192, 2048)):
        lin = nn.Linear(n_in, n_out)
        measure(f"linear {n_in}x{n_out}x{batch}", lin, torch.randn(batch, n_in, device="cuda"), args.repeat, rows)
    if not args.quick:
        measure("BERT-base 16x128 tokens", bert_base(), torch.randn(16, 128, 768, device="cuda"), args.repeat, rows)
        measure("ResNet-50 16x3x224x224", resnet50(), torch.randn(16, 3, 224, 224, device="cuda"), args.repeat, rows)

    # TF32 on both sides
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        print(f"with torch.set_float32_matmul_precision('high'): kernel precision {get_precision()}")
        measure("linear 4096x4096x4096 tf32", nn.Linear(4096, 4096), torch.randn(4096, 4096, device="cuda"),
                args.repeat, rows)
    finally:
        torch.set_float32_matmul_precision(before)

    print("targets: tri/dig <= 1.3 (Triton path within 1.3x of the digital model); "
          "tor/tri >= 3 (Triton >= 3x torch path)")
    worst_dig = max(r[3] / r[2] for r in rows)
    worst_tor = min(r[4] / r[3] for r in rows)
    print(f"worst tri/dig {worst_dig:.2f}x ({'met' if worst_dig <= 1.3 else 'MISSED'}), "
          f"worst tor/tri {worst_tor:.2f}x ({'met' if worst_tor >= 3 else 'MISSED'})")
    print("compiled kernels:")
    kernel_report()
    if args.json:
        import json

        keys = ("case", "mapping", "digital_ms", "triton_ms", "torch_ms")
        table = [dict(zip(keys, (r[0], r[1], r[2] * 1e3, r[3] * 1e3, r[4] * 1e3))) for r in rows]
        with open(args.json, "w") as f:
            json.dump(dict(gpu=dev, torch=torch.__version__, triton=triton.__version__, repeat=args.repeat,
                           rows=table, worst_triton_over_digital=worst_dig, worst_torch_over_triton=worst_tor), f,
                      indent=1)
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
