"""The C extensions: fxanalog._normal, the CPU normal generator of
fxanalog/_rng.py, and fxanalog._pulsed, the CPU kernel of the pulsed update
(fxanalog/ops/tile_update_torch.py), which share fxanalog/_ziggurat.h; and
fxanalog._periphery, the DAC and ADC passes of the tile MVM's torch path
(fxanalog/ops/tile_mvm_torch.py). Everything else is in pyproject.toml.
All are optional: without a C compiler the install goes on, the draws use
torch's generator (fxanalog._rng.native is then None), the update runs its
Python loop (fxanalog.ops.tile_update_torch.native is None) and the MVM's
periphery runs as torch ops (fxanalog.ops.tile_mvm_torch.native is None).
fxanalog._pulsed and fxanalog._periphery are built with OpenMP where the
compiler has it (to share torch's threads, see fxanalog/_pulsed.c); else
_pulsed uses POSIX threads and _periphery the calling thread."""

import copy

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# -ffp-contract=off: no fused multiply-adds, so that every CPU (and the
# tests' Python reference) rounds alike.
FLAGS = ["-O3", "-ffp-contract=off"]


class BuildExt(build_ext):
    def build_extension(self, ext):
        if ext.name in ("fxanalog._pulsed", "fxanalog._periphery"):
            with_openmp = copy.deepcopy(ext)
            with_openmp.extra_compile_args = ext.extra_compile_args + ["-fopenmp"]
            with_openmp.extra_link_args = ext.extra_link_args + ["-fopenmp"]
            try:
                return super().build_extension(with_openmp)
            except Exception as e:  # no OpenMP in this compiler: POSIX threads
                print(f"{ext.name}: building without OpenMP ({e})")
        return super().build_extension(ext)


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension("fxanalog._normal", sources=["fxanalog/_normal.c"], depends=["fxanalog/_ziggurat.h"],
                  extra_compile_args=FLAGS, optional=True),
        Extension("fxanalog._pulsed", sources=["fxanalog/_pulsed.c"], depends=["fxanalog/_ziggurat.h"],
                  extra_compile_args=FLAGS, extra_link_args=["-pthread"], optional=True),
        Extension("fxanalog._periphery", sources=["fxanalog/_periphery.c"], extra_compile_args=FLAGS, optional=True),
    ],
)
