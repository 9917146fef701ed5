"""Forward time of one analog linear layer against F.linear, on CPU.

Prints, for (in, out, batch) = (512, 512, 256), (2048, 2048, 256),
(4096, 4096, 64), with the default InferenceRPUConfig (7-bit DAC, 9-bit ADC,
output noise, abs-max noise management, iterative bound management), eval
mode under torch.no_grad():

- digital: F.linear on the same shapes (ms);
- the analog layer as one tile (max sizes 0), as a ratio to digital;
- the analog layer as 512 x 512 tiles, as a ratio to digital and to its floor:
  the matmul plus drawing, with torch.randn, the normals that the case needs
  (every tile draws its own output noise);
- peak extra memory of the analog forward relative to the digital forward;
- the output-noise generator (fxanalog._rng): its draw of 0.5 M float32
  normals against torch.randn of the same size, both on one thread.

Run: python bench/bench_tile.py [--threads 2] [--repeat 20] [--isa scalar|avx2|avx512] [--no-native]
(--isa: the instruction set of the native generator; default the widest the
CPU runs. Every one draws the same numbers. --no-native: draw float32 noise
as without the C extension, with plain torch.randn on one thread.)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import fxanalog
from fxanalog import _rng
from fxanalog.nn import AnalogLinear
from fxanalog.geometry import split_sizes

CASES = [(512, 512, 256), (2048, 2048, 256), (4096, 4096, 64)]


def timeit(fns: dict, repeat: int) -> dict:
    """Best time of each function, measured round-robin so that a busy
    machine slows all of them alike (the minimum is the least disturbed run)."""
    for fn in fns.values():
        fn()
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def peak_bytes(fn) -> int:
    """Peak of the bytes that fn allocates and holds at once (torch's profiler
    memory timeline: every tensor storage created and destroyed)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    current = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE:
            current += size
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--isa", default=None, help="the native generator's instruction set (scalar, avx2, avx512)")
    ap.add_argument("--no-native", action="store_true", help="draw as without the C extension (plain torch.randn)")
    args = ap.parse_args()
    if args.no_native:
        _rng.native = None
    elif args.isa is not None:
        if _rng.native is None:
            ap.error("--isa: the native generator (fxanalog._normal) is not built")
        try:
            _rng.native.isa(args.isa)
        except ValueError as exc:
            ap.error(f"--isa: {exc}")
    torch.set_num_threads(args.threads)
    fxanalog.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.repeat} (round-robin)")
    header = (
        f"{'in x out x batch':>18} | {'digital ms':>10} | {'1 tile':>7} | {'512-tiles':>9} | "
        f"{'floor':>6} | {'vs floor':>8} | {'mem 1 tile':>10} | {'mem tiles':>9}"
    )
    print(header)
    print("-" * len(header))
    for n_in, n_out, batch in CASES:
        lin = torch.nn.Linear(n_in, n_out)
        x = torch.randn(batch, n_in)
        one = fxanalog.InferenceRPUConfig()
        one.mapping.max_input_size = one.mapping.max_output_size = 0
        tiled = fxanalog.InferenceRPUConfig()
        a_one = AnalogLinear.from_digital(lin, one).eval()
        a_tiled = AnalogLinear.from_digital(lin, tiled).eval()
        n_draws = len(split_sizes(n_in, 512)) * batch * n_out  # output noise of every tile
        noise = torch.empty(n_draws)
        with torch.no_grad():
            t = timeit(
                {
                    "digital": lambda: F.linear(x, lin.weight, lin.bias),
                    "one": lambda: a_one(x),
                    "tiled": lambda: a_tiled(x),
                    "floor": lambda: (F.linear(x, lin.weight, lin.bias), torch.randn(n_draws, out=noise)),
                },
                args.repeat,
            )
            t_dig, t_one, t_tiled, t_floor = t["digital"], t["one"], t["tiled"], t["floor"]
            m_dig = peak_bytes(lambda: F.linear(x, lin.weight, lin.bias))
            m_one = peak_bytes(lambda: a_one(x))
            m_tiled = peak_bytes(lambda: a_tiled(x))
        print(
            f"{f'{n_in}x{n_out}x{batch}':>18} | {t_dig * 1e3:10.2f} | {t_one / t_dig:6.2f}x | "
            f"{t_tiled / t_dig:8.2f}x | {t_floor / t_dig:5.2f}x | {t_tiled / t_floor:7.2f}x | "
            f"{m_one / m_dig:9.2f}x | {m_tiled / m_dig:8.2f}x"
        )
    print("targets: 1 tile <= 1.2x digital at 2048 and 4096; 512-tiles <= 1.15x floor")
    print_generator(args.repeat)


def print_generator(repeat: int) -> None:
    """The draw of the tile's output noise against torch.randn, one thread."""
    n = 2048 * 256
    buf = torch.empty(n)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = timeit({"torch": lambda: torch.randn(n, out=buf), "fxanalog": lambda: _rng.normal_(buf)}, repeat)
    finally:
        torch.set_num_threads(before)
    native = _rng.native
    name = f"native, {native.isa()}" if native is not None else "torch.randn (no native extension)"
    print(
        f"output noise, 0.5 M float32 normals on 1 thread: torch.randn {t['torch'] * 1e3:.2f} ms, "
        f"fxanalog._rng ({name}) {t['fxanalog'] * 1e3:.2f} ms ({t['torch'] / t['fxanalog']:.1f}x faster)"
    )


if __name__ == "__main__":
    main()
