"""Build the Cython extensions: every ``native/*.pyx`` becomes ``native.<name>``.

One directive dictionary for all modules; per-module overrides (boundscheck,
wraparound) live in each module's header. Environment switches:

- ``EXCHANGE_ANNOTATE=1``: write Cython's HTML annotation next to each .pyx.
- ``EXCHANGE_PROFILE=1``: compile with profiling and line tracing hooks.
"""

import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

PROFILE = os.environ.get("EXCHANGE_PROFILE") == "1"
ANNOTATE = os.environ.get("EXCHANGE_ANNOTATE") == "1"

DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
    "cdivision": True,
    "initializedcheck": False,
    "profile": PROFILE,
    "linetrace": PROFILE,
}

extensions = [
    Extension(
        f"native.{path.stem}",
        [str(path)],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("CYTHON_TRACE_NOGIL", "1")] if PROFILE else []),
        extra_compile_args=["-O3"],
    )
    for path in sorted(Path("native").glob("*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES, annotate=ANNOTATE))
