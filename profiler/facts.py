"""Static facts of every kernel call of a graph, known before anything runs.

Owns, per call: the body variant, virtual blocks, FLOPs and bytes moved (from
the catalog spec), and the registers, shared memory and CTAs per SM of its
entry point. Those come from compiling the entry with NVRTC for a GPU arch
(no GPU needed; modules are grouped and cached exactly as `python -m
reefd.kernels check` and the launcher build them, so they are usually disk
cache hits) and from `ctas_per_sm` with that arch's SM limits. Without NVRTC,
or with resources turned off, those three facts are None.

Imports the standard library, reefd's graph, errors and kernel library only; no
device.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from reefd.errors import CompileError, ConfigError, GraphError, ReefError
from reefd.graph import KernelGraph
from reefd.kernels import catalog
from reefd.kernels.__main__ import SM_LIMITS, ctas_per_sm
from reefd.kernels.nvrtc import FunctionResources, nvrtc_version
from reefd.kernels.spec import KernelSpec, Params
from reefd.kernels.wrappers import EntryPoint, build_module
from reefd.profiler.identity import canonical_params
from reefd.profiler.records import CallFacts

FORMS = ("plain", "preemptible")


@dataclass(frozen=True)
class EntryResources:
    """What one compiled entry needs per CTA, and how many fit on an SM."""

    registers: int
    smem_bytes: int
    ctas_per_sm: int


class Resources:
    """Registers and shared memory of entry points, compiled once each for `arch`.

    `arch` None turns compiling off. A missing NVRTC turns it off too, with one
    note through `note`; a kernel that fails to compile gets None and a note.
    """

    def __init__(
        self, arch: str | None, note: Callable[[str], None] = lambda _: None
    ) -> None:
        if arch is not None and not re.fullmatch(r"sm_\d+[a-z]?", arch):
            raise ConfigError(f"--arch {arch!r}: want a GPU arch like sm_90")
        if arch is not None and arch not in SM_LIMITS:
            note(f"no SM limits known for {arch}; CTAs/SM use sm_90's")
        self.arch = arch
        self.limits = SM_LIMITS.get(arch or "sm_90", SM_LIMITS["sm_90"])
        self._note = note
        self._found: dict[str, FunctionResources | None] = {}
        self.compiled = 0
        self.cached = 0
        if arch is not None:
            try:
                nvrtc_version()
            except CompileError as exc:
                note(f"registers and shared memory not recorded: {exc}")
                self.arch = None

    @staticmethod
    def group(spec: KernelSpec, params: Params) -> list[EntryPoint]:
        """The entries compiled together as one module (the check's grouping)."""
        return [getattr(EntryPoint, f)(spec, params) for f in FORMS if f in spec.forms]

    def of(self, spec: KernelSpec, params: Params, form: str) -> EntryResources | None:
        if self.arch is None or not spec.source:
            return None
        group = self.group(spec, params)
        entry = next((e for e in group if e.form == form), group[0])
        if entry.name not in self._found:
            try:
                compiled = build_module(group, self.arch)
            except (ReefError, OSError, ValueError) as exc:
                self._note(f"{entry.name}: not compiled ({str(exc).splitlines()[0]})")
                for e in group:
                    self._found[e.name] = None
            else:
                self.cached += compiled.from_cache
                self.compiled += not compiled.from_cache
                for e in group:
                    self._found[e.name] = compiled.functions.get(e.name)
        res = self._found[entry.name]
        if res is None:
            return None
        smem = res.static_smem_bytes + entry.dynamic_smem_bytes()
        ctas = ctas_per_sm(res.registers, smem, self.limits)
        return EntryResources(res.registers, smem, ctas)


def call_facts(graph: KernelGraph, resources: Resources, form: str) -> list[CallFacts]:
    """The facts of every call of `graph`, in call order."""
    dtypes = {b.name: b.dtype for b in graph.buffers}
    facts = []
    for index, call in enumerate(graph.calls):
        spec = catalog.get(call.kernel)
        params = spec.with_defaults(call.params)
        bound = {op: dtypes[buf] for op, buf in call.args.items()}
        try:
            variant = spec.body(params)
        except (GraphError, KeyError, ValueError):
            variant = f"{spec.name}_body"
        res = resources.of(spec, params, form)
        used_form = form if form in spec.forms else "plain"
        facts.append(
            CallFacts(
                call_index=index,
                kernel=spec.name,
                variant=variant,
                form=used_form,
                params=canonical_params(spec.name, params),
                n_vb=spec.virtual_blocks(params),
                flops=int(spec.flops(params)),
                bytes_moved=spec.bytes_moved(params, bound),
                registers=res.registers if res else None,
                smem_bytes=res.smem_bytes if res else None,
                ctas_per_sm=res.ctas_per_sm if res else None,
            )
        )
    return facts
