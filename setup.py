"""Build of the one compiled module; everything else is in pyproject.toml.

``sedma.compute.crossbar._xbar`` is the crossbar simulator's read path in C (see its source and
``sedma.compute.crossbar.kernel``). It needs only a C compiler and Python's headers. It is
optional: where it cannot be built, the install goes on and the simulator uses its numpy
read path (same model, slower; ``sedma.compute.crossbar.kernel.AVAILABLE`` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sedma.compute.crossbar._xbar",
            sources=[
                "src/sedma/compute/crossbar/_xbar.c",
                "src/sedma/compute/crossbar/_xbar_sums.c",
                "src/sedma/compute/crossbar/_xbar_adc.c",
            ],
            depends=["src/sedma/compute/crossbar/_xbar.h"],
            # fast-math for vectorised reductions; finite-math stays off because the kernel
            # checks its inputs for inf and NaN itself. Compile flags only: linking with
            # -ffast-math (gcc 12) adds crtfastmath.o, which sets flush-to-zero for the whole
            # process when the module loads (tests/test_crossbar_fused.py checks it does not)
            extra_compile_args=["-O3", "-ffast-math", "-fno-finite-math-only", "-funroll-loops"],
            optional=True,
        )
    ]
)
