"""reefd.kernels.wrappers: args structs, packed args, entry names and modules.

The module tests compile with the NVRTC wheel (no GPU needed) against a dummy
body defined here, not a catalog body; skipped only where cuda.bindings.nvrtc
cannot be imported.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from reefd.errors import GraphError
from reefd.kernels import catalog, nvrtc, wrappers
from reefd.kernels.__main__ import (
    SM_LIMITS,
    ctas_per_sm,
    main,
    sample_params,
)
from reefd.kernels.spec import KernelSpec, Operand, Param
from reefd.kernels.wrappers import EntryPoint


def _noop(*_: object) -> None:
    return None


def dummy_spec(name: str = "dummy", **changes: object) -> KernelSpec:
    """A kernel outside the catalog, with every kind of param."""
    spec = KernelSpec(
        name=name,
        summary="test kernel",
        operands=(
            Operand("x", "read"),
            Operand("bias", "read", optional=True),
            Operand("y", "write"),
        ),
        params=(
            Param("n", "int"),
            Param("alpha", "float", required=False, default=1.0),
            Param("flag", "bool", required=False, default=False),
            Param(
                "act", "str", required=False, default="none", choices=("none", "relu")
            ),
            Param("win", "ints", required=False, default=(1, 2, 3), size=3),
        ),
        shapes=lambda p: {"x": (p["n"],), "bias": (p["n"],), "y": (p["n"],)},
        reference=_noop,
        flops=lambda p: p["n"],
        source="dummy.cu",
    )
    return dataclasses.replace(spec, **changes)


DUMMY_BODY = """
#include "reef_common.cuh"
template <int TILE>
__device__ void dummy_body(int vb, const dummy_args& a, char* smem) {
  float* tile = reinterpret_cast<float*>(smem);
  const int i = vb * REEF_CTA_THREADS + threadIdx.x;
  tile[threadIdx.x] = i < a.n ? a.x[i] * a.alpha : 0.0f;
  __syncthreads();
  if (i < a.n) {
    float v = tile[(threadIdx.x + TILE) % REEF_CTA_THREADS] + a.win_2;
    a.y[i] = reef_act(a.bias ? v + a.bias[i] : v, a.act);
  }
  __syncthreads();
}

__device__ void other_body(int vb, const other_args& a, char*) {
  const int i = reef_ceil_div(vb, 1) * REEF_CTA_THREADS + threadIdx.x;
  if (i < a.n) a.y[i] = a.x[i];
}
"""

DUMMY = dummy_spec(variant=lambda p: "dummy_body<64>", smem_bytes=lambda p: 1024)
OTHER = dummy_spec("other", inplace_ok=True)
SOURCES = {"dummy.cu": DUMMY_BODY}
P = {"n": 1000}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip(
        "cuda.bindings.nvrtc", reason="cuda.bindings.nvrtc not installed"
    )
    monkeypatch.setenv("REEFD_KERNEL_CACHE", str(tmp_path))
    return tmp_path


# --- args struct and packing ---------------------------------------------------


def test_linear_args_struct_follows_the_abi() -> None:
    assert wrappers.args_struct(catalog.get("linear")) == (
        "struct linear_args {\n"
        "  const float* __restrict__ x;\n"
        "  const float* __restrict__ w;\n"
        "  const float* __restrict__ bias;\n"
        "  float* __restrict__ y;\n"
        "  int m;\n"
        "  int n;\n"
        "  int k;\n"
        "  int act;\n"
        "  int precision;\n"
        "};\n"
    )
    assert wrappers.struct_size(catalog.get("linear")) == 56


def test_inplace_kernels_get_no_restrict_and_ints_expand() -> None:
    text = wrappers.args_struct(OTHER)
    assert "__restrict__" not in text
    assert "  const float* x;\n" in text and "  float* y;\n" in text
    assert "  float alpha;\n  int flag;\n  int act;\n" in text
    assert "  int win_0;\n  int win_1;\n  int win_2;\n" in text


def test_pack_args_lays_out_linear() -> None:
    spec = catalog.get("linear")
    raw = wrappers.pack_args(
        spec, {"m": 128, "n": 768, "k": 64, "act": "relu"}, {"x": 16, "w": 32, "y": 48}
    )
    assert len(raw) == wrappers.struct_size(spec)
    assert struct.unpack("<4Q5i4x", raw) == (16, 32, 0, 48, 128, 768, 64, 1, 0)


def test_pack_args_lays_out_every_param_kind() -> None:
    params = {"n": 7, "alpha": 0.5, "flag": True, "act": "relu", "win": (4, 5, 6)}
    raw = wrappers.pack_args(OTHER, params, {"x": 1, "bias": 2, "y": 3})
    # 3 pointers (24) + int, float, 2 ints, 3 ints (28) -> 52, padded to 56.
    assert len(raw) == 56
    assert struct.unpack("<3Qif5i4x", raw) == (1, 2, 3, 7, 0.5, 1, 1, 4, 5, 6)


def test_a_param_named_like_an_operand_gets_a_trailing_underscore() -> None:
    conv = catalog.get("conv2d")
    text = wrappers.args_struct(conv)
    assert "  const float* __restrict__ w;\n" in text
    assert "  int h;\n  int w_;\n" in text
    assert "  int stride_0;\n  int stride_1;\n" in text
    params = {
        "n": 1,
        "c_in": 2,
        "h": 5,
        "w": 6,
        "c_out": 3,
        "kh": 3,
        "kw": 3,
        "stride": (2, 1),
        "act": "relu",
    }
    raw = wrappers.pack_args(conv, params, {"x": 8, "w": 9, "y": 10})
    layout = wrappers.args_layout(conv).struct.from_buffer_copy(raw)
    assert (layout.w, layout.w_, layout.stride_0, layout.act) == (9, 6, 2, 1)


def test_pack_args_refuses_bad_calls() -> None:
    with pytest.raises(GraphError, match="'y' not bound"):
        wrappers.pack_args(OTHER, P, {"x": 1})
    with pytest.raises(GraphError, match="no operands named"):
        wrappers.pack_args(OTHER, P, {"x": 1, "y": 2, "z": 3})
    with pytest.raises(GraphError, match="32-bit"):
        wrappers.pack_args(OTHER, {"n": 2**31}, {"x": 1, "y": 2})
    with pytest.raises(GraphError, match="3 ints"):
        wrappers.pack_args(OTHER, {"n": 1, "win": (1, 2)}, {"x": 1, "y": 2})


def _layout_asserts(spec: KernelSpec) -> str:
    layout = wrappers.args_layout(spec)
    lines = [
        f"static_assert(sizeof({spec.name}_args) == {layout.size_bytes}, "
        f'"{spec.name} size");'
    ]
    for name, _ in layout.fields:
        offset = getattr(layout.struct, name).offset
        lines.append(
            f"static_assert(__builtin_offsetof({spec.name}_args, {name}) == {offset}, "
            f'"{spec.name}.{name}");'
        )
    return "\n".join(lines)


def test_ctypes_layout_matches_the_c_struct(cache: Path) -> None:
    specs = [*catalog.all_specs(), OTHER]
    source = (
        "\n".join(wrappers.args_struct(s) + _layout_asserts(s) for s in specs)
        + '\nextern "C" __global__ void layout_probe(int* p) { *p = 1; }\n'
    )
    compiled = nvrtc.compile_cuda(source, "layout.cu")
    assert "layout_probe" in compiled.functions
    assert "static_assert(sizeof(linear_args) == 56" in source


def test_a_wrong_layout_would_fail_to_compile(cache: Path) -> None:
    source = wrappers.args_struct(OTHER) + "static_assert(sizeof(other_args) == 60);"
    with pytest.raises(nvrtc.CompileError, match="static assertion failed"):
        nvrtc.compile_cuda(source, "bad_layout.cu")


# --- names ---------------------------------------------------------------------


def test_entry_names() -> None:
    assert wrappers.variant_tag(DUMMY, P) == "64"
    assert wrappers.entry_name(DUMMY, P, "plain") == "reef_dummy_64_plain"
    assert wrappers.entry_name(OTHER, P, "preemptible") == (
        "reef_other_default_preemptible"
    )
    assert wrappers.padded_name(DUMMY, P, OTHER, P) == (
        "reef_pad__dummy_64__other_default"
    )
    tiled = dummy_spec(variant=lambda p: "dummy_body<64, 64, 16>")
    assert wrappers.entry_name(tiled, P, "plain") == "reef_dummy_64_64_16_plain"
    depthwise = dummy_spec(variant=lambda p: "dummy_dw_body<3, true>")
    assert wrappers.variant_tag(depthwise, P) == "dw_3_true"
    with pytest.raises(ValueError, match="padded"):
        wrappers.entry_name(DUMMY, P, "padded")


def test_entry_source_follows_the_abi() -> None:
    plain = wrappers.plain_entry(DUMMY, P)
    assert "__launch_bounds__(REEF_CTA_THREADS)" in plain
    assert "extern __shared__ __align__(16) char reef_smem[];" in plain
    assert "dummy_body<64>((int)blockIdx.x, a, reef_smem);" in plain
    pre = wrappers.preemptible_entry(DUMMY, P)
    assert "int n_vb, int* next_vb,\n    const volatile int* preempt)" in pre
    assert pre.count("__syncthreads();") == 2
    padded = wrappers.padded_entry(DUMMY, P, OTHER, P)
    assert "if (!*preempt && atomicAdd(be_claims, 1) < be_budget)" in padded
    assert "claim = atomicAdd(be_next, 1);" in padded
    assert "other_body(vb, ba, reef_smem);" in padded


# --- modules -------------------------------------------------------------------


def _entries() -> list[EntryPoint]:
    return [
        EntryPoint.plain(DUMMY, P),
        EntryPoint.preemptible(DUMMY, P),
        EntryPoint.padded(DUMMY, P, OTHER, P),
        EntryPoint.plain(DUMMY, P),  # a duplicate is generated once
    ]


def test_module_source_holds_each_piece_once() -> None:
    source = wrappers.module_source(_entries(), SOURCES)
    assert source.count("struct dummy_args {") == 1
    assert source.count("struct other_args {") == 1
    assert source.count("__device__ void dummy_body") == 1
    assert source.count("#define REEF_CTA_THREADS 256") == 1
    assert source.count("reef_dummy_64_plain(") == 1
    assert "#include <" not in source
    assert source.index("struct dummy_args") < source.index("dummy_body")
    assert source.index("dummy_body") < source.index("reef_dummy_64_plain")


def test_module_without_a_body_is_refused() -> None:
    bodiless = dummy_spec(source="")
    with pytest.raises(ValueError, match="without a CUDA body"):
        wrappers.module_source([EntryPoint.plain(bodiless, P)])


def test_module_compiles_in_every_form(cache: Path) -> None:
    entries = _entries()
    compiled = wrappers.build_module(entries, "sm_90", sources=SOURCES)
    names = {
        "reef_dummy_64_plain",
        "reef_dummy_64_preemptible",
        "reef_pad__dummy_64__other_default",
    }
    assert names <= set(compiled.functions)
    for name in names:
        assert f"Compiling entry function '{name}'" in compiled.log
        assert compiled.functions[name].registers > 0
        assert compiled.functions[name].spill_bytes == 0
    assert compiled.functions["reef_dummy_64_preemptible"].static_smem_bytes >= 4
    assert entries[2].dynamic_smem_bytes() == 1024
    assert [e.name for e in entries[2:3]] == ["reef_pad__dummy_64__other_default"]


def test_body_errors_point_at_the_body_file(cache: Path) -> None:
    broken = {"dummy.cu": DUMMY_BODY + "\nnot a declaration\n"}
    with pytest.raises(nvrtc.CompileError) as info:
        wrappers.build_module([EntryPoint.plain(DUMMY, P)], sources=broken)
    assert "dummy.cu(" in info.value.log


# --- the check command's pieces ------------------------------------------------


def test_ctas_per_sm_on_sm_90() -> None:
    h100 = SM_LIMITS["sm_90"]
    assert ctas_per_sm(32, 0, h100) == 8
    assert ctas_per_sm(33, 0, h100) == 6  # 40 regs * 256 threads
    assert ctas_per_sm(64, 0, h100) == 4
    assert ctas_per_sm(255, 0, h100) == 1
    assert ctas_per_sm(32, 100 * 1024, h100) == 2
    assert ctas_per_sm(32, 228 * 1024, h100) == 0


def test_every_catalog_kernel_has_valid_sample_params() -> None:
    for spec in catalog.all_specs():
        samples = sample_params(spec)
        assert samples, spec.name
        for sample in samples:
            params = spec.with_defaults(sample)
            spec.shapes(params)
            assert spec.virtual_blocks(params) >= 1


def test_check_refuses_unknown_kernels() -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "--kernel", "no_such_kernel"])
    assert info.value.code == 2
