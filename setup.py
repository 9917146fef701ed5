"""The C extensions: fxanalog._normal, the CPU normal generator of
fxanalog/_rng.py, and fxanalog._pulsed, the CPU kernel of the pulsed update
(fxanalog/ops/tile_update_torch.py). Everything else is in pyproject.toml.
Both are optional: without a C compiler the install goes on, the draws use
torch's generator (fxanalog._rng.native is then None) and the update runs
its Python loop (fxanalog.ops.tile_update_torch.native is None)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fxanalog._normal",
            sources=["fxanalog/_normal.c"],
            # -ffp-contract=off: no fused multiply-adds, so that every CPU
            # (and the tests' Python reference) rounds alike.
            extra_compile_args=["-O3", "-ffp-contract=off"],
            optional=True,
        ),
        Extension(
            "fxanalog._pulsed",
            sources=["fxanalog/_pulsed.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"],
            optional=True,
        ),
    ]
)
