"""Build the Cython extensions: every ``native/*.pyx`` becomes ``native.<name>``.

One directive dictionary for all modules; per-module overrides (boundscheck,
wraparound) live in each module's header. Environment switches:

- ``EXCHANGE_ANNOTATE=1``: write Cython's HTML annotation next to each .pyx.
- ``EXCHANGE_PROFILE=1``: compile with profiling and line tracing hooks.

Before cythonizing, ``native/constants.pxd`` is generated from the engine's constants
(`write_constants`), so a value is written once, in Python, and the native book's
compile-time constants follow it.
"""

import ast
import os
import sysconfig
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

PROFILE = os.environ.get("EXCHANGE_PROFILE") == "1"
ANNOTATE = os.environ.get("EXCHANGE_ANNOTATE") == "1"
ROOT = Path(__file__).resolve().parent

GCC_INLINING = ["--param=max-inline-insns-single=2000", "--param=large-function-growth=1000",
                "--param=inline-unit-growth=1000"]
"""With GCC, let it inline the book's short helpers (taking a slot for an order, placing it on its
level, dropping it) into the long command functions that call them on every message: its default
growth limits stop short of that, which costs the batch replay about 4% (measured on the standard
workload). Other compilers get their defaults."""


def _compiler_is_gcc() -> bool:
    command = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "").split()
    return bool(command) and os.path.basename(command[0]).startswith(("gcc", "x86_64-linux-gnu-gcc"))


DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
    "cdivision": True,
    "initializedcheck": False,
    "profile": PROFILE,
    "linetrace": PROFILE,
}

# ---------------------------------------------------------------- native/constants.pxd

CONSTANTS = ROOT / "native" / "constants.pxd"
TYPES, STREAM, SNAPSHOT = (ROOT / "engine" / name for name in ("types.py", "stream.py", "snapshot.py"))
SNAPSHOT_NAMES = {"SEED": "HASH_SEED", "ID_SALT": "ID_SALT"}
"""engine/snapshot.py's constants that the native book needs, by the name it gives them."""

_OPERATORS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b, ast.Pow: lambda a, b: a**b, ast.LShift: lambda a, b: a << b,
    ast.RShift: lambda a, b: a >> b, ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b,
    ast.BitXor: lambda a, b: a ^ b,
}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: a, ast.Invert: lambda a: ~a}


def _integer(node: ast.expr, known: dict[str, int]) -> int | None:
    """The value of an integer expression of literals and names already ``known``; None if not one."""
    if isinstance(node, ast.Constant):
        return node.value if type(node.value) is int else None
    if isinstance(node, ast.Name):
        return known.get(node.id)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        value = _integer(node.operand, known)
        return None if value is None else _UNARY[type(node.op)](value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _integer(node.left, known), _integer(node.right, known)
        return None if left is None or right is None else _OPERATORS[type(node.op)](left, right)
    return None


def _assignments(body: list[ast.stmt]) -> list[tuple[str, ast.expr]]:
    """``NAME = value``, ``NAME: type = value`` and ``A, B = x, y`` statements of a module or class
    body, in order."""
    out = []
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out.append((node.target.id, node.value))
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            if isinstance(target, ast.Name):
                out.append((target.id, value))
            elif (isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
                  and len(target.elts) == len(value.elts) and all(isinstance(t, ast.Name) for t in target.elts)):
                out.extend((t.id, v) for t, v in zip(target.elts, value.elts, strict=True))
    return out


def _module_integers(path: Path) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The integer constants at module level of ``path`` and the members of its IntEnum and IntFlag
    classes, read from its source (the build runs before the project's dependencies are installed,
    so nothing of `engine` is imported). A member that is not an integer expression fails."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    constants: dict[str, int] = {}
    enums: dict[str, dict[str, int]] = {}
    for name, node in _assignments(tree.body):
        value = _integer(node, constants)
        if value is not None:
            constants[name] = value
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                (base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)) in ("IntEnum", "IntFlag")
                for base in node.bases):
            members = enums[node.name] = {}
            for name, value_node in _assignments(node.body):
                value = _integer(value_node, {**constants, **members})
                if value is None:
                    raise SystemExit(f"{path}: {node.name}.{name} is not an integer expression the build can "
                                     f"read; native/constants.pxd needs every member's value")
                members[name] = value
    return constants, enums


def _c_literal(value: int, unsigned: bool) -> tuple[str, str]:
    """(C type, C literal) of a 64-bit constant: int64_t unless ``unsigned`` or too large for it."""
    if unsigned or value >= 2**63:
        if not 0 <= value < 2**64:
            raise SystemExit(f"native/constants.pxd: {value} does not fit 64 unsigned bits")
        return "uint64_t", f"0x{value:X}ULL"
    if not -(2**63) <= value < 2**63:
        raise SystemExit(f"native/constants.pxd: {value} does not fit 64 bits")
    return "int64_t", f"({value + 1}LL - 1)" if value == -(2**63) else f"{value}LL"   # -2**63 has no literal


def constants_text() -> str:
    """The text of native/constants.pxd, from engine/types.py (its IntEnum and IntFlag members and
    integer constants, by their names), engine/stream.py (its integer constants, the message kinds, as
    STREAM_<name>) and engine/snapshot.py (`SNAPSHOT_NAMES`)."""
    type_constants, enums = _module_integers(TYPES)
    stream_constants, _ = _module_integers(STREAM)
    snapshot_constants, _ = _module_integers(SNAPSHOT)
    groups: list[tuple[str, dict[str, int], bool]] = [   # (origin, values, 64-bit unsigned words)
        (f"engine.types.{name}", members, False) for name, members in enums.items()]
    groups.append(("engine.types (module constants)", type_constants, False))
    groups.append(("engine.stream message kinds", {f"STREAM_{k}": v for k, v in stream_constants.items()}, False))
    missing = SNAPSHOT_NAMES.keys() - snapshot_constants.keys()
    if missing:
        raise SystemExit(f"{SNAPSHOT}: no integer constant {', '.join(sorted(missing))} (setup.py SNAPSHOT_NAMES)")
    groups.append(("engine.snapshot", {SNAPSHOT_NAMES[k]: snapshot_constants[k] for k in SNAPSHOT_NAMES}, True))

    seen: dict[str, str] = {}
    small, large = [], []
    for origin, values, unsigned in groups:
        heading = False
        for name, value in values.items():
            if name in seen:
                raise SystemExit(f"native/constants.pxd: {name} is both in {seen[name]} and in {origin}")
            seen[name] = origin
            if not unsigned and -(2**31) <= value < 2**31:
                if not heading:
                    small.append(f"    # {origin}")
                    heading = True
                small.append(f"    {name} = {value}")
            else:
                large.append((origin, name, *_c_literal(value, unsigned)))
    lines = [
        "# GENERATED by setup.py from engine/types.py, engine/stream.py and engine/snapshot.py: do not edit.",
        "# Change a value there and rebuild (`make build`); `make clean` deletes this file and git ignores it",
        "# (native/.gitignore).",
        "#",
        "# Invariant: every name has the value of the engine constant it is named after (IntEnum and IntFlag",
        "# members by their own names, engine.stream's constants as STREAM_<name>, engine.snapshot's SEED as",
        "# HASH_SEED), so the native book restates none of them. Values that fit a C int are enum",
        "# constants (usable as array sizes and in nogil code); larger ones are 64-bit macros.",
        "",
        "from libc.stdint cimport int64_t, uint64_t",
        "",
        "cdef enum:",
        *small,
    ]
    if large:
        lines += ["", "cdef extern from *:", '    """', "    #include <stdint.h>"]
        lines += [f"    #define EXCHANGE_CONSTANT_{name} {literal}" for _, name, _, literal in large]
        lines += ['    """']
        lines += [f'    {ctype} {name} "EXCHANGE_CONSTANT_{name}"   # {origin}'
                  for origin, name, ctype, _ in large]
    return "\n".join(lines) + "\n"


def write_constants() -> None:
    """Write native/constants.pxd if its text changed (an unchanged file keeps its time, so
    cythonize does not rebuild what depends on it)."""
    text = constants_text()
    if not CONSTANTS.exists() or CONSTANTS.read_text(encoding="utf-8") != text:
        CONSTANTS.write_text(text, encoding="utf-8")


write_constants()

LIBRARIES = {"framing": ["z"]}
"""The C libraries an extension links: the journal's framing computes zlib's CRC-32 (folded, with zlib for what
is left over and on CPUs that cannot fold: native/crc32.h)."""

extensions = [
    Extension(
        f"native.{path.stem}",
        [str(path)],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("CYTHON_TRACE_NOGIL", "1")] if PROFILE else []),
        extra_compile_args=["-O3"] + (GCC_INLINING if _compiler_is_gcc() else []),
        libraries=LIBRARIES.get(path.stem, []),
    )
    for path in sorted(Path("native").glob("*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES, annotate=ANNOTATE))
