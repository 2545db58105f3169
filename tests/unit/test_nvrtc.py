"""reefd.kernels.nvrtc: compiling, ptxas log parsing and the disk cache.

Compiles with the NVRTC wheel (no GPU needed); skipped only where
cuda.bindings.nvrtc cannot be imported.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from reefd.errors import CompileError
from reefd.kernels import nvrtc

TINY = """
extern "C" __global__ void tiny(float* y, const float* x, int n) {
  __shared__ float s[256];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  s[threadIdx.x] = i < n ? x[i] : 0.0f;
  __syncthreads();
  if (i < n) y[i] = 2.0f * s[(threadIdx.x + 1) % 256];
}
"""

LOG = """\
ptxas info    : 0 bytes gmem
ptxas info    : Function properties for _Z6helperv
ptxas         .     16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function 'reef_a_plain' for 'sm_90'
ptxas info    : Function properties for reef_a_plain
ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 1040 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'reef_b_plain' for 'sm_90'
ptxas info    : Function properties for reef_b_plain
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 0 barriers
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip(
        "cuda.bindings.nvrtc", reason="cuda.bindings.nvrtc not installed"
    )
    directory = tmp_path / "kernels"
    monkeypatch.setenv("REEFD_KERNEL_CACHE", str(directory))
    return directory


def test_parse_ptxas_log_reads_every_entry() -> None:
    funcs = nvrtc.parse_ptxas_log(LOG)
    assert set(funcs) == {"reef_a_plain", "reef_b_plain"}
    assert funcs["reef_a_plain"] == nvrtc.FunctionResources(
        registers=40,
        static_smem_bytes=1040,
        stack_frame_bytes=8,
        spill_store_bytes=4,
        spill_load_bytes=12,
        barriers=1,
    )
    assert funcs["reef_a_plain"].spill_bytes == 16
    assert funcs["reef_b_plain"] == nvrtc.FunctionResources(registers=12)


def test_cache_dir_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REEFD_KERNEL_CACHE", str(tmp_path / "explicit"))
    assert nvrtc.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("REEFD_KERNEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert nvrtc.cache_dir() == tmp_path / "xdg" / "reefd" / "kernels"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert nvrtc.cache_dir() == tmp_path / "home" / ".cache" / "reefd" / "kernels"


def test_compile_reports_resources(cache: Path) -> None:
    compiled = nvrtc.compile_cuda(TINY, "tiny.cu", "sm_90")
    assert compiled.cubin.startswith(b"\x7fELF")
    assert compiled.arch == "sm_90"
    assert "Compiling entry function 'tiny'" in compiled.log
    tiny = compiled.functions["tiny"]
    assert tiny.registers > 0
    assert tiny.static_smem_bytes == 256 * 4
    assert tiny.barriers == 1
    assert tiny.spill_bytes == 0
    assert not compiled.from_cache
    assert nvrtc.nvrtc_version() >= (12, 0)


def test_second_compile_is_a_fast_identical_cache_hit(cache: Path) -> None:
    started = time.perf_counter()
    first = nvrtc.compile_cuda(TINY, "tiny.cu", "sm_90")
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    second = nvrtc.compile_cuda(TINY, "tiny.cu", "sm_90")
    warm_s = time.perf_counter() - started
    assert second.from_cache and not first.from_cache
    assert second == first
    assert warm_s < max(cold_s / 2, 0.005)
    assert len(list(cache.glob("*.cubin"))) == 1


def test_options_and_arch_are_part_of_the_key(cache: Path) -> None:
    nvrtc.compile_cuda(TINY, "tiny.cu", "sm_90")
    other = nvrtc.compile_cuda(TINY, "tiny.cu", "sm_90", ("-DREEF_TEST=1",))
    assert not other.from_cache
    assert not nvrtc.compile_cuda(TINY, "tiny.cu", "sm_80").from_cache


def test_syntax_error_raises_with_the_nvrtc_log(cache: Path) -> None:
    with pytest.raises(CompileError) as info:
        nvrtc.compile_cuda(TINY + "\nthis is not cuda;\n", "broken.cu")
    assert "broken.cu" in info.value.log
    assert "error" in info.value.log
    assert "NVRTC_ERROR_COMPILATION" in str(info.value)
    assert not list(cache.glob("*.cubin"))


@pytest.mark.parametrize("damage", ["cubin", "json", "missing_cubin"])
def test_corrupt_cache_entry_is_recompiled(cache: Path, damage: str) -> None:
    good = nvrtc.compile_cuda(TINY, "tiny.cu")
    (cubin,) = cache.glob("*.cubin")
    meta = cubin.with_suffix(".json")
    if damage == "cubin":
        cubin.write_bytes(b"\x7fELF truncated")
    elif damage == "json":
        meta.write_text("{not json")
    else:
        cubin.unlink()
    again = nvrtc.compile_cuda(TINY, "tiny.cu")
    assert not again.from_cache
    assert (again.cubin, again.functions) == (good.cubin, good.functions)
    repaired = nvrtc.compile_cuda(TINY, "tiny.cu")
    assert repaired.from_cache and repaired == again


def test_headers_are_includable(cache: Path) -> None:
    source = '#include "scale.cuh"\n' + TINY.replace("2.0f", "REEF_SCALE")
    compiled = nvrtc.compile_cuda(
        source, "inc.cu", headers={"scale.cuh": "#define REEF_SCALE 3.0f\n"}
    )
    assert "tiny" in compiled.functions


def test_bad_arch_is_refused(cache: Path) -> None:
    with pytest.raises(CompileError, match="sm_90"):
        nvrtc.compile_cuda(TINY, "tiny.cu", "compute_90")


def test_missing_nvrtc_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REEFD_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "cuda.bindings.nvrtc", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    nvrtc.nvrtc_version.cache_clear()
    try:
        with pytest.raises(CompileError, match=r"pip install 'reefd\[cuda\]'"):
            nvrtc.compile_cuda(TINY, "tiny.cu")
    finally:
        nvrtc.nvrtc_version.cache_clear()
