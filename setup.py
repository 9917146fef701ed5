"""The one C extension: fxanalog._normal, the CPU normal generator of
fxanalog/_rng.py. Everything else is in pyproject.toml. The extension is
optional: without a C compiler the install goes on, and the draws use
torch's generator instead (fxanalog._rng.native is then None)."""

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
    ]
)
