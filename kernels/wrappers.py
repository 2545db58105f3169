"""The kernel ABI made concrete: args structs, packed args and entry points.

Owns everything docs/architecture.md "Kernel ABI" fixes: the C struct
`<name>_args` generated from a catalog spec, the same layout packed on the host
with ctypes, the entry-point names, the C source of the plain, preemptible and
padded entry points around a body, and the assembly of one translation unit
(common header + args structs + body files + entry points) for NVRTC.

Imports the standard library, reefd.errors and this package's spec, catalog and
nvrtc modules only; it never touches a device.
"""

from __future__ import annotations

import ctypes
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reefd.errors import CompileError, GraphError
from reefd.kernels import catalog, nvrtc
from reefd.kernels.spec import KernelSpec, Params

Form = Literal["plain", "preemptible", "padded"]
FORMS: tuple[Form, ...] = ("plain", "preemptible", "padded")

SRC_DIR = Path(__file__).parent / "src"
COMMON_HEADER = "reef_common.cuh"
CTA_THREADS = 256
"""blockDim.x of every entry point (REEF_CTA_THREADS in the common header)."""

_C_POINTEE = {
    "float32": "float",
    # Half types are raw 16-bit words (NVRTC finds no cuda_fp16.h without an
    # include path); bodies convert with inline PTX (see src/tc_gemm.cuh).
    "float16": "unsigned short",
    "bfloat16": "unsigned short",
    "int32": "int",
    "int64": "long long",
}
_CTYPE = {"ptr": ctypes.c_void_p, "int": ctypes.c_int32, "float": ctypes.c_float}
_BODY = re.compile(r"[A-Za-z_]\w*(<[\w\s,.+\-*/()]*>)?")
_INT32 = (-(2**31), 2**31 - 1)


# --- args struct ---------------------------------------------------------------


def param_field(spec: KernelSpec, name: str) -> str:
    """The C field of param `name`: its name, or `<name>_` when an operand has
    that name (conv2d's width `w` beside its weights `w` is the field `w_`)."""
    return f"{name}_" if any(op.name == name for op in spec.operands) else name


def _fields(spec: KernelSpec) -> list[tuple[str, str, str]]:
    """(field name, kind 'ptr'|'int'|'float', C declaration type) in ABI order."""
    out = []
    restrict = "" if spec.inplace_ok else " __restrict__"
    for op in spec.operands:
        if len(op.dtypes) != 1 or op.dtypes[0] not in _C_POINTEE:
            raise ValueError(
                f"kernel {spec.name!r}: operand {op.name!r} dtypes {op.dtypes} "
                f"have no single C type (known: {sorted(_C_POINTEE)})"
            )
        const = "const " if op.access == "read" else ""
        out.append((op.name, "ptr", f"{const}{_C_POINTEE[op.dtypes[0]]}*{restrict}"))
    for p in spec.params:
        field = param_field(spec, p.name)
        if p.kind == "ints":
            out += [(f"{field}_{i}", "int", "int") for i in range(p.size)]
        elif p.kind == "float":
            out.append((field, "float", "float"))
        elif p.kind == "str" and not p.choices:
            raise ValueError(
                f"kernel {spec.name!r}: str param {p.name!r} has no choices"
            )
        else:
            out.append((field, "int", "int"))
    names = [name for name, _, _ in out]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"kernel {spec.name!r}: args fields {dupes} collide")
    return out


def args_struct(spec: KernelSpec) -> str:
    """The C definition of `struct <name>_args` for `spec`.

    Operands first (spec order), then params (spec order); a param named like an
    operand is the field `<name>_` (see `param_field`).
    """
    lines = [f"struct {spec.name}_args {{"]
    lines += [f"  {ctype} {name};" for name, _, ctype in _fields(spec)]
    lines.append("};")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ArgsLayout:
    """The host-side twin of `<name>_args`: a ctypes struct with the same layout."""

    kernel: str
    fields: tuple[tuple[str, str], ...]
    """(field name, kind) in order; kind is 'ptr', 'int' or 'float'."""
    struct: type[ctypes.Structure]

    @property
    def size_bytes(self) -> int:
        return ctypes.sizeof(self.struct)


@functools.cache
def args_layout(spec: KernelSpec) -> ArgsLayout:
    fields = tuple((name, kind) for name, kind, _ in _fields(spec))
    struct = type(
        f"{spec.name}_args",
        (ctypes.Structure,),
        {"_fields_": [(name, _CTYPE[kind]) for name, kind in fields]},
    )
    return ArgsLayout(spec.name, fields, struct)


def struct_size(spec: KernelSpec) -> int:
    """sizeof(<name>_args) in bytes (natural alignment, as the C compiler lays it)."""
    return args_layout(spec).size_bytes


def _param_values(spec: KernelSpec, params: Params) -> dict[str, int | float]:
    """Each scalar field's value: str params as choice index, bools as 0/1."""
    values: dict[str, int | float] = {}
    for p in spec.params:
        value = params[p.name]
        field = param_field(spec, p.name)
        if p.kind == "ints":
            if len(value) != p.size:
                raise GraphError(
                    f"kernel {spec.name!r}: param {p.name!r}={list(value)} must "
                    f"hold {p.size} ints"
                )
            values.update({f"{field}_{i}": v for i, v in enumerate(value)})
        elif p.kind == "str":
            values[field] = p.choices.index(value)
        elif p.kind == "float":
            values[field] = float(value)
        else:
            values[field] = int(value)
    for name, value in values.items():
        if isinstance(value, int) and not _INT32[0] <= value <= _INT32[1]:
            raise GraphError(
                f"kernel {spec.name!r}: {name}={value} does not fit a 32-bit int"
            )
    return values


def pack_args(spec: KernelSpec, params: Params, pointers: Mapping[str, int]) -> bytes:
    """The raw bytes of `<name>_args` for one call.

    `pointers` maps operand names to device addresses; an optional operand left
    out is a null pointer. Params are completed with their defaults first.
    """
    params = spec.with_defaults(params)
    names = {op.name for op in spec.operands}
    if unknown := sorted(set(pointers) - names):
        raise GraphError(f"kernel {spec.name!r}: no operands named {unknown}")
    values: dict[str, int | float] = _param_values(spec, params)
    for op in spec.operands:
        if op.name not in pointers and not op.optional:
            raise GraphError(f"kernel {spec.name!r}: operand {op.name!r} not bound")
        values[op.name] = pointers.get(op.name) or 0
    layout = args_layout(spec)
    struct = layout.struct(**{name: values[name] for name, _ in layout.fields})
    return bytes(struct)


# --- entry points --------------------------------------------------------------


def _body(spec: KernelSpec, params: Params) -> str:
    body = spec.body(params)
    if not _BODY.fullmatch(body):
        raise ValueError(f"kernel {spec.name!r}: variant {body!r} is not a body call")
    if spec.cta_threads != CTA_THREADS:
        raise ValueError(
            f"kernel {spec.name!r}: cta_threads={spec.cta_threads}, but every "
            f"entry point runs {CTA_THREADS} threads"
        )
    return body


def variant_tag(spec: KernelSpec, params: Params) -> str:
    """The body's template args as [A-Za-z0-9_] ('default' with none).

    `linear_body<64, 64, 16>` -> `64_64_16`. A body not named `<kernel>_body`
    keeps its distinct part in front: `conv2d_dw_body<3>` -> `dw_3`.
    """
    body = _body(spec, params)
    base, _, targs = body.partition("<")
    parts = []
    if base != f"{spec.name}_body":
        parts.append(base.removeprefix(f"{spec.name}_").removesuffix("_body"))
    if args := re.sub(r"[^A-Za-z0-9_]+", "_", targs.rstrip(">")).strip("_"):
        parts.append(args)
    return "_".join(p for p in parts if p) or "default"


def entry_name(spec: KernelSpec, params: Params, form: Form) -> str:
    """`reef_<kernel>_<variant tag>_<form>` for the plain and preemptible forms."""
    if form not in ("plain", "preemptible"):
        raise ValueError(f"entry_name takes 'plain' or 'preemptible', not {form!r}")
    return f"reef_{spec.name}_{variant_tag(spec, params)}_{form}"


def padded_name(
    rt_spec: KernelSpec, rt_params: Params, be_spec: KernelSpec, be_params: Params
) -> str:
    """`reef_pad__<rt kernel>_<rt tag>__<be kernel>_<be tag>`."""
    rt = f"{rt_spec.name}_{variant_tag(rt_spec, rt_params)}"
    return f"reef_pad__{rt}__{be_spec.name}_{variant_tag(be_spec, be_params)}"


_HEAD = 'extern "C" __global__ void __launch_bounds__(REEF_CTA_THREADS)\n{name}(\n'
_SMEM = "  extern __shared__ __align__(16) char reef_smem[];\n"

# Thread 0 claims; the other threads read the claim between two barriers, so no
# thread can still be reading reef_vb when thread 0 writes the next claim.
_CLAIM_LOOP = """\
  __shared__ int reef_vb;
  for (;;) {{
    if (threadIdx.x == 0) {{
      int claim = -1;
      if (!*preempt{budget}) {{
        claim = atomicAdd({next}, 1);
      }}
      reef_vb = claim;
    }}
    __syncthreads();
    const int vb = reef_vb;
    __syncthreads();
    if (vb < 0 || vb >= {n_vb}) {{
      return;
    }}
    {body}(vb, {args}, reef_smem);
  }}
"""


def plain_entry(spec: KernelSpec, params: Params) -> str:
    """One CTA per virtual block: `(args a)`, vb = blockIdx.x."""
    return (
        _HEAD.format(name=entry_name(spec, params, "plain"))
        + f"    const __grid_constant__ {spec.name}_args a) {{\n"
        + _SMEM
        + f"  {_body(spec, params)}((int)blockIdx.x, a, reef_smem);\n}}\n"
    )


def preemptible_entry(spec: KernelSpec, params: Params) -> str:
    """Persistent CTAs claiming virtual blocks until the flag or `n_vb`."""
    loop = _CLAIM_LOOP.format(
        budget="", next="next_vb", n_vb="n_vb", body=_body(spec, params), args="a"
    )
    return (
        _HEAD.format(name=entry_name(spec, params, "preemptible"))
        + f"    const __grid_constant__ {spec.name}_args a, int n_vb, int* next_vb,\n"
        + "    const volatile int* preempt) {\n"
        + _SMEM
        + loop
        + "}\n"
    )


def padded_entry(
    rt_spec: KernelSpec, rt_params: Params, be_spec: KernelSpec, be_params: Params
) -> str:
    """CTAs below `rt_n_vb` run RT blocks; the rest claim BE blocks on a budget."""
    loop = _CLAIM_LOOP.format(
        budget=" && atomicAdd(be_claims, 1) < be_budget",
        next="be_next",
        n_vb="be_n_vb",
        body=_body(be_spec, be_params),
        args="ba",
    )
    name = padded_name(rt_spec, rt_params, be_spec, be_params)
    return (
        _HEAD.format(name=name)
        + f"    const __grid_constant__ {rt_spec.name}_args ra, int rt_n_vb,\n"
        + f"    const __grid_constant__ {be_spec.name}_args ba, int be_n_vb,\n"
        + "    int* be_next, int* be_claims, int be_budget,\n"
        + "    const volatile int* preempt) {\n"
        + _SMEM
        + "  if ((int)blockIdx.x < rt_n_vb) {\n"
        + f"    {_body(rt_spec, rt_params)}((int)blockIdx.x, ra, reef_smem);\n"
        + "    return;\n  }\n"
        + loop
        + "}\n"
    )


@dataclass(frozen=True, eq=False)
class EntryPoint:
    """One entry point to generate: a form of one call (padded: of two calls)."""

    form: Form
    spec: KernelSpec
    params: dict[str, Any]
    be_spec: KernelSpec | None = None
    be_params: dict[str, Any] | None = None

    @classmethod
    def plain(cls, spec: KernelSpec, params: Params) -> EntryPoint:
        return cls("plain", spec, spec.with_defaults(params))

    @classmethod
    def preemptible(cls, spec: KernelSpec, params: Params) -> EntryPoint:
        return cls("preemptible", spec, spec.with_defaults(params))

    @classmethod
    def padded(
        cls,
        rt_spec: KernelSpec,
        rt_params: Params,
        be_spec: KernelSpec,
        be_params: Params,
    ) -> EntryPoint:
        rt, be = rt_spec.with_defaults(rt_params), be_spec.with_defaults(be_params)
        return cls("padded", rt_spec, rt, be_spec, be)

    def calls(self) -> list[tuple[KernelSpec, dict[str, Any]]]:
        """The (spec, params) this entry runs: one, or RT then BE when padded."""
        if self.be_spec is None or self.be_params is None:
            return [(self.spec, self.params)]
        return [(self.spec, self.params), (self.be_spec, self.be_params)]

    @property
    def name(self) -> str:
        if self.form == "padded":
            return padded_name(*(x for call in self.calls() for x in call))
        return entry_name(self.spec, self.params, self.form)

    def source(self) -> str:
        if self.form == "padded":
            return padded_entry(*(x for call in self.calls() for x in call))
        if self.form == "preemptible":
            return preemptible_entry(self.spec, self.params)
        return plain_entry(self.spec, self.params)

    def dynamic_smem_bytes(self) -> int:
        """Dynamic shared memory to launch with: the max of its bodies' needs."""
        return max(spec.dynamic_smem_bytes(p) for spec, p in self.calls())


# --- translation unit ----------------------------------------------------------


def common_header() -> str:
    return (SRC_DIR / COMMON_HEADER).read_text()


def src_headers() -> dict[str, str]:
    """Every `kernels/src/*.cuh` by name, for `#include "x.cuh"` in body files
    (the common header and shared tile code such as tc_gemm.cuh)."""
    return {p.name: p.read_text() for p in sorted(SRC_DIR.glob("*.cuh"))}


def _unique(items: Iterable[Any], key: Any) -> list[Any]:
    seen: dict[Any, Any] = {}
    for item in items:
        seen.setdefault(key(item), item)
    return list(seen.values())


def _chunk(file: str, text: str) -> str:
    return f'#line 1 "{file}"\n{text.rstrip()}\n'


def module_source(
    entries: Iterable[EntryPoint], sources: Mapping[str, str] | None = None
) -> str:
    """One translation unit holding `entries` and everything they need.

    Order: the common header, each needed args struct once (also those of
    catalog kernels sharing a body file, which that file may use), each body file
    once, then the entry points. `sources` overrides body files by name (for
    bodies outside kernels/src, as in tests).
    """
    entries = _unique(entries, key=lambda e: e.name)
    specs = _unique(
        (spec for e in entries for spec, _ in e.calls()), key=lambda s: s.name
    )
    if missing := [s.name for s in specs if not s.source]:
        raise ValueError(f"kernels without a CUDA body yet: {missing}")
    files = _unique((s.source for s in specs), key=lambda f: f)
    companions = [s for s in catalog.all_specs() if s.source in files]
    structs = _unique([*specs, *companions], key=lambda s: s.name)
    sources = sources or {}
    parts = [
        "// Generated by reefd.kernels.wrappers from the catalog: do not edit.\n",
        _chunk(COMMON_HEADER, common_header()),
        _chunk("<args structs>", "\n".join(args_struct(s) for s in structs)),
        *(
            _chunk(f, sources[f] if f in sources else (SRC_DIR / f).read_text())
            for f in files
        ),
        _chunk("<entry points>", "\n".join(e.source() for e in entries)),
    ]
    return "\n".join(parts)


def build_module(
    entries: Iterable[EntryPoint],
    arch: str = "sm_90",
    options: tuple[str, ...] = (),
    sources: Mapping[str, str] | None = None,
) -> nvrtc.Compiled:
    """Generate and compile a module; every entry must show up in ptxas's log."""
    entries = list(entries)
    source = module_source(entries, sources)
    name = f"{entries[0].name}.cu" if entries else "reef_empty.cu"
    compiled = nvrtc.compile_cuda(source, name, arch, options, headers=src_headers())
    if missing := [e.name for e in entries if e.name not in compiled.functions]:
        raise CompileError(
            f"{name}: ptxas reported no entry function {missing}", compiled.log
        )
    return compiled
