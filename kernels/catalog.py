"""The catalog: every vetted kernel by name.

Specs are defined in the `ops_*` modules of this package (every one is imported
on first use) and registered here. The
daemon validates graphs against this table; the cpu backend runs the references.
"""

from __future__ import annotations

import importlib
import pkgutil

from reefd.kernels.spec import KernelSpec

_SPECS: dict[str, KernelSpec] = {}
_loaded = False


def register(spec: KernelSpec) -> KernelSpec:
    if spec.name in _SPECS:
        raise ValueError(f"kernel {spec.name!r} registered twice")
    _SPECS[spec.name] = spec
    return spec


def _load() -> None:
    global _loaded
    if _loaded:
        return
    import reefd.kernels as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("ops_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True


def get(name: str) -> KernelSpec:
    """The spec named `name`; KeyError if the catalog has no such kernel."""
    _load()
    return _SPECS[name]


def names() -> list[str]:
    _load()
    return sorted(_SPECS)


def all_specs() -> list[KernelSpec]:
    _load()
    return [_SPECS[n] for n in sorted(_SPECS)]
