"""The NVRTC build: CUDA C source in, cubin plus per-entry resources out.

Owns the call into NVRTC (through `cuda.bindings.nvrtc`, no driver or GPU
needed), the parsing of ptxas's `-v` log into registers, shared memory, stack and
spill figures per entry function, and the on-disk cache of compiled modules keyed
by (source, headers, options, arch, NVRTC version).

Imports reefd.errors and the standard library only; `cuda.bindings` is imported
lazily, so this module loads on a machine without the NVRTC wheels and fails with
a CompileError only when asked to compile.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reefd.errors import CompileError

BASE_OPTIONS: tuple[str, ...] = ("-std=c++17", "-Xptxas=-v", "-default-device")
"""Options every compile gets after `--gpu-architecture` (no fast math)."""

CACHE_FORMAT = 1
"""Bumped whenever the cache entry layout changes; part of the cache key."""

_INSTALL_HINT = (
    "NVRTC is not available ({why}); install it with `pip install 'reefd[cuda]'` "
    "(or just the NVRTC wheels: `pip install 'reefd[nvrtc]'`, i.e. cuda-bindings "
    "and nvidia-cuda-nvrtc)"
)


@dataclass(frozen=True)
class FunctionResources:
    """What ptxas reports for one entry function."""

    registers: int = 0
    static_smem_bytes: int = 0
    stack_frame_bytes: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    barriers: int = 0

    @property
    def spill_bytes(self) -> int:
        return self.spill_store_bytes + self.spill_load_bytes


@dataclass(frozen=True)
class Compiled:
    """A compiled module: its cubin, the NVRTC log and each entry's resources."""

    cubin: bytes
    arch: str
    log: str
    functions: dict[str, FunctionResources]
    from_cache: bool = field(default=False, compare=False)
    """True when this result was read from the disk cache (not compared)."""


def _nvrtc() -> Any:
    """The `cuda.bindings.nvrtc` module, or a CompileError saying how to get it."""
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise CompileError(_INSTALL_HINT.format(why=exc)) from exc
    return nvrtc


def _check(result: tuple[Any, ...], what: str) -> tuple[Any, ...]:
    """Unpack an NVRTC call's (status, values...) tuple; raise on failure."""
    nvrtc = _nvrtc()
    status, *values = result
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, text = nvrtc.nvrtcGetErrorString(status)
        raise CompileError(f"{what} failed: {text.decode()}")
    return tuple(values)


@functools.cache
def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library that compiles."""
    nvrtc = _nvrtc()
    try:
        major, minor = _check(nvrtc.nvrtcVersion(), "nvrtcVersion")
    except CompileError:
        raise
    except Exception as exc:  # the bindings load, libnvrtc does not
        raise CompileError(_INSTALL_HINT.format(why=exc)) from exc
    return int(major), int(minor)


# --- ptxas log -----------------------------------------------------------------

_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_STACK = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)
_USED = re.compile(r"Used (\d+) registers")
_BARRIERS = re.compile(r"used (\d+) barriers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas_log(log: str) -> dict[str, FunctionResources]:
    """Resources of every entry function named in a `-Xptxas=-v` log."""
    entries: dict[str, dict[str, int]] = {}
    frames: dict[str, dict[str, int]] = {}
    entry = props = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            entry = m.group(1)
            entries[entry] = {}
        elif m := _PROPS.search(line):
            props = m.group(1)
        elif (m := _STACK.search(line)) and props is not None:
            frames[props] = {
                "stack_frame_bytes": int(m.group(1)),
                "spill_store_bytes": int(m.group(2)),
                "spill_load_bytes": int(m.group(3)),
            }
        elif (m := _USED.search(line)) and entry is not None:
            found = entries[entry]
            found["registers"] = int(m.group(1))
            if b := _BARRIERS.search(line):
                found["barriers"] = int(b.group(1))
            if s := _SMEM.search(line):
                found["static_smem_bytes"] = int(s.group(1))
    return {
        name: FunctionResources(**found, **frames.get(name, {}))
        for name, found in entries.items()
    }


# --- disk cache ----------------------------------------------------------------


def cache_dir() -> Path:
    """REEFD_KERNEL_CACHE, else $XDG_CACHE_HOME/reefd/kernels, else ~/.cache/..."""
    if explicit := os.environ.get("REEFD_KERNEL_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reefd" / "kernels"


def cache_key(
    source: str, options: tuple[str, ...], arch: str, headers: Mapping[str, str]
) -> str:
    blob = json.dumps(
        [CACHE_FORMAT, source, list(options), arch, sorted(headers.items())]
        + list(nvrtc_version())
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_cached(directory: Path, key: str) -> Compiled | None:
    """The cached entry for `key`, or None when absent or corrupt."""
    try:
        meta = json.loads((directory / f"{key}.json").read_text())
        cubin = (directory / f"{key}.cubin").read_bytes()
        if hashlib.sha256(cubin).hexdigest() != meta["cubin_sha256"]:
            return None
        functions = {
            name: FunctionResources(**res) for name, res in meta["functions"].items()
        }
        return Compiled(cubin, meta["arch"], meta["log"], functions, from_cache=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _store(directory: Path, key: str, compiled: Compiled) -> None:
    """Write a cache entry: the cubin first, then the JSON that commits it."""
    meta = {
        "arch": compiled.arch,
        "log": compiled.log,
        "functions": {n: asdict(r) for n, r in compiled.functions.items()},
        "cubin_sha256": hashlib.sha256(compiled.cubin).hexdigest(),
        "nvrtc_version": list(nvrtc_version()),
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(directory / f"{key}.cubin", compiled.cubin)
        _write_atomic(directory / f"{key}.json", json.dumps(meta).encode())
    except OSError:
        pass  # an unwritable cache only costs a recompile next time


# --- compiling -----------------------------------------------------------------


def _program_log(nvrtc: Any, prog: Any) -> str:
    (size,) = _check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
    buf = b" " * size
    _check(nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
    return buf.rstrip(b"\x00").decode(errors="replace").strip()


def _run_nvrtc(
    source: str,
    name: str,
    options: list[str],
    headers: Mapping[str, str],
) -> tuple[bytes, str]:
    """Compile once with NVRTC: (cubin, log); CompileError carries the log."""
    nvrtc = _nvrtc()
    (prog,) = _check(
        nvrtc.nvrtcCreateProgram(
            source.encode(),
            name.encode(),
            len(headers),
            [text.encode() for text in headers.values()],
            [include.encode() for include in headers],
        ),
        "nvrtcCreateProgram",
    )
    try:
        opts = [o.encode() for o in options]
        (status,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        log = _program_log(nvrtc, prog)
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            _, text = nvrtc.nvrtcGetErrorString(status)
            raise CompileError(f"NVRTC could not compile {name}: {text.decode()}", log)
        (size,) = _check(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = b" " * size
        _check(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin, log
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def compile_cuda(
    source: str,
    name: str,
    arch: str = "sm_90",
    options: tuple[str, ...] = (),
    *,
    headers: Mapping[str, str] | None = None,
    use_cache: bool = True,
) -> Compiled:
    """Compile `source` (program name `name`) to a cubin for `arch` (`sm_XX`).

    `headers` maps include names to their text, for `#include "name"` in the
    source (NVRTC sees no system headers). Results are cached on disk (see
    `cache_dir`); a corrupt cache entry is compiled again and overwritten.
    Raises CompileError carrying the NVRTC log when the source does not compile,
    or saying how to install NVRTC when it is missing.
    """
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise CompileError(f"arch {arch!r} is not a real GPU arch like 'sm_90'")
    headers = dict(headers or {})
    key = cache_key(source, options, arch, headers)
    directory = cache_dir()
    if use_cache and (hit := _load_cached(directory, key)) is not None:
        return hit
    all_options = [f"--gpu-architecture={arch}", *BASE_OPTIONS, *options]
    cubin, log = _run_nvrtc(source, name, all_options, headers)
    compiled = Compiled(cubin, arch, log, parse_ptxas_log(log))
    if use_cache:
        _store(directory, key, compiled)
    return compiled
