"""What every GPU kernel test shares: the driver, random calls, the checks.

`Gpu` (reefd.kernels.launcher.Launcher) loads NVRTC-built entry points on
torch's primary context and launches them on torch's current stream;
`make_call` builds a kernel call's operands on the GPU (random, or from `fill`)
with its torch reference result; the asserts compare against torch (named
precision) or bit for bit against the plain form; the `check_*` functions are
the preemptible- and padded-form scenarios every test module runs on its own
cases (each module passes its own reference check, with its tolerances).
The `gpu` fixture lives in tests/gpu/conftest.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from reefd.kernels import catalog
from reefd.kernels.launcher import Launcher, i32, ptr
from reefd.kernels.spec import TORCH_DTYPE, KernelSpec
from reefd.kernels.wrappers import EntryPoint, pack_args

PRECISION = (
    "float32 kernels vs the torch reference on the same GPU with TF32 off "
    "(torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 "
    "= False), rtol = atol = 1e-4"
)
RTOL = ATOL = 1e-4
DEVICE = "cuda"
"""Where tensors live (the module-level name lets a harness point it elsewhere)."""


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


# --- the device -----------------------------------------------------------------

Gpu = Launcher
"""The driver on torch's primary context (reefd.kernels.launcher.Launcher)."""


# --- one kernel call: its tensors, its expected result --------------------------


@dataclass
class Call:
    """A kernel call with its operands on the GPU and its torch result."""

    spec: KernelSpec
    params: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    outputs: list[str]
    expected: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def n_vb(self) -> int:
        return self.spec.virtual_blocks(self.params)

    @property
    def body(self) -> str:
        return self.spec.body(self.params)

    def args(self) -> bytes:
        pointers = {k: t.data_ptr() for k, t in self.tensors.items()}
        return pack_args(self.spec, self.params, pointers)

    def clear_outputs(self) -> None:
        for name in self.outputs:
            t = self.tensors[name]
            t.fill_(float("nan") if t.dtype.is_floating_point else -1)

    def result(self) -> dict[str, torch.Tensor]:
        sync()
        return {name: self.tensors[name].clone() for name in self.outputs}

    def where(self) -> str:
        return f"{self.spec.name} {self.body} {self.params}"


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    """A test id for `(kernel, params)`: `name-k1v1-k2v2`, tuples joined by x."""
    name, params = case
    return (
        name
        + "-"
        + "-".join(
            f"{k}{'x'.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in params.items()
        )
    )


def _fan_in_scale(spec: KernelSpec, p: dict[str, Any]) -> dict[str, float]:
    """Weights ~ N(0, 1/fan_in), so outputs stay O(1) and 1e-4 is meaningful."""
    if spec.name == "linear":
        return {"w": p["k"] ** -0.5}
    if spec.name == "conv2d":
        return {"w": (p["c_in"] // p["groups"] * p["kh"] * p["kw"]) ** -0.5}
    return {}


def make_call(
    name: str,
    params: dict[str, Any],
    *,
    seed: int = 0,
    bias: bool = True,
    misalign: bool = False,
    alias: tuple[str, str] | None = None,
    scale: float = 1.0,
    fill: dict[str, Callable[[torch.Size, torch.Generator], torch.Tensor]]
    | None = None,
) -> Call:
    """Random operands for `name(params)` and the torch result.

    `misalign` offsets every buffer by one element (4-byte aligned only for
    float32), which forces the scalar paths; `alias=(input, output)` binds the
    output to the input's buffer (in-place kernels). `fill[operand](shape, gen)`
    gives an input's values instead of N(0, 1) (integer operands need one, e.g.
    embedding ids below the vocabulary size).
    """
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    shapes = spec.shapes(full)
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    offset = 1 if misalign else 0
    factors = _fan_in_scale(spec, full)
    tensors: dict[str, torch.Tensor] = {}
    outputs: list[str] = []
    fill = fill or {}
    for op in spec.operands:
        size = math.prod(shapes[op.name])
        dtype = TORCH_DTYPE[op.dtypes[0]]
        flat = torch.empty(size + 4, device=DEVICE, dtype=dtype)
        view = flat[offset : offset + size].view(shapes[op.name])
        if op.access == "read":
            if op.optional and not bias:
                continue
            if op.name in fill:
                view.copy_(fill[op.name](torch.Size(shapes[op.name]), gen))
            else:
                view.copy_(
                    torch.randn(shapes[op.name], generator=gen, device=DEVICE)
                    * scale
                    * factors.get(op.name, 1.0)
                )
        else:
            view.fill_(float("nan") if dtype.is_floating_point else -1)
            outputs.append(op.name)
        tensors[op.name] = view
    expected = {k: torch.empty_like(tensors[k]) for k in outputs}
    inputs = {k: t for k, t in tensors.items() if k not in outputs}
    spec.reference({**inputs, **expected}, full)
    if alias is not None:
        src, dst = alias
        tensors[dst] = tensors[src]
    sync()
    return Call(spec, full, tensors, outputs, expected)


def run_plain(gpu: Gpu, call: Call) -> dict[str, torch.Tensor]:
    gpu.launch_plain(EntryPoint.plain(call.spec, call.params), call.args(), call.n_vb)
    return call.result()


def run_preemptible(
    gpu: Gpu,
    call: Call,
    grid: int,
    counter: torch.Tensor,
    preempt: int,
) -> None:
    """One preemptible launch; `counter` (int32 on the GPU) is the next_vb."""
    entry = EntryPoint.preemptible(call.spec, call.params)
    gpu.launch_preemptible(
        entry, grid, call.args(), call.n_vb, counter.data_ptr(), preempt
    )


def assert_matches_reference(
    call: Call,
    got: dict[str, torch.Tensor],
    *,
    rtol: float = RTOL,
    atol: float = ATOL,
    precision: str = PRECISION,
) -> None:
    """allclose against the reference; half-precision and TF32 kernels pass their
    own tolerances and say so in `precision` (named in the failure message)."""
    for name in call.outputs:
        want = call.expected[name]
        diff = (got[name].float() - want.float()).abs()
        worst = diff.nan_to_num(float("inf")).max().item()
        assert torch.allclose(got[name], want, rtol=rtol, atol=atol), (
            f"{call.where()}: output {name!r} differs from torch by up to "
            f"{worst:.3g} ({precision})"
        )


def assert_bitwise(
    call: Call, got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], how: str
) -> None:
    for name in call.outputs:
        a, b = got[name], want[name]
        if a.dtype.is_floating_point:  # bits, so NaN == NaN and -0 != +0
            a, b = a.view(torch.int8), b.view(torch.int8)
        same = torch.equal(a, b)
        assert same, f"{call.where()}: {how} is not bit-identical to the plain form"


def device_int(value: int = 0) -> torch.Tensor:
    return torch.full((1,), value, dtype=torch.int32, device=DEVICE)


def run_padded(
    gpu: Gpu,
    rt: Call,
    be: Call,
    be_ctas: int,
    be_next: torch.Tensor,
    be_budget: int,
    preempt: int,
) -> None:
    entry = EntryPoint.padded(rt.spec, rt.params, be.spec, be.params)
    claims = device_int(0)
    gpu.launch(
        entry,
        rt.n_vb + be_ctas,
        [
            rt.args(),
            i32(rt.n_vb),
            be.args(),
            i32(be.n_vb),
            ptr(be_next.data_ptr()),
            ptr(claims.data_ptr()),
            i32(be_budget),
            ptr(preempt),
        ],
    )


# --- the preemptible and padded forms against the plain form ----------------------

Check = Callable[[Call, dict[str, torch.Tensor]], None]
"""A module's reference check of a plain result (its own tolerances)."""


def check_preemptible_equals_plain(
    gpu: Gpu, call: Call, check: Check = assert_matches_reference
) -> None:
    """`check` the plain result, then the preemptible form with the flag down on
    1, 7 and 2 x SMs CTAs (at most one per block): bit for bit the plain result,
    and the counter ends at n_vb + grid (every CTA's last claim overshoots by
    one; none was lost or repeated)."""
    plain = run_plain(gpu, call)
    check(call, plain)
    flag = device_int(0)
    for grid in (1, 7, 2 * gpu.sms):
        call.clear_outputs()
        counter = device_int(0)
        run_preemptible(gpu, call, min(grid, call.n_vb), counter, flag.data_ptr())
        assert_bitwise(call, call.result(), plain, f"preemptible on {grid} CTAs")
        assert counter.item() == call.n_vb + min(grid, call.n_vb)


def check_raised_flag_runs_nothing(
    gpu: Gpu,
    call: Call,
    plain: dict[str, torch.Tensor] | None = None,
    *,
    resume: bool = True,
) -> None:
    """With the flag raised before the launch, no CTA claims a block and no output
    is written; with `resume`, lowering it and relaunching on the same counter
    gives the plain result bit for bit (`plain`, run here when not given)."""
    if plain is None:
        plain = run_plain(gpu, call)
    call.clear_outputs()
    counter, flag = device_int(0), device_int(1)
    run_preemptible(gpu, call, 2 * gpu.sms, counter, flag.data_ptr())
    sync()
    assert counter.item() == 0, (
        f"{call.where()}: a CTA claimed a block with the flag raised"
    )
    for name in call.outputs:
        assert call.tensors[name].isnan().all(), (
            f"{call.where()}: a preempted launch wrote output {name!r}"
        )
    if resume:
        flag.zero_()
        run_preemptible(gpu, call, 2 * gpu.sms, counter, flag.data_ptr())
        assert_bitwise(call, call.result(), plain, "preempted-then-resumed launch")


def check_resume_from_counter(
    gpu: Gpu,
    call: Call,
    plain: dict[str, torch.Tensor] | None = None,
    k: int | None = None,
) -> None:
    """Blocks [0, k) done by a plain launch of k CTAs; the preemptible form on 5
    CTAs resumes from a counter at k and finishes the plain result bit for bit.
    `k` defaults to a third of the blocks, at least one where there are two or
    more; `plain` is run here when not given."""
    if plain is None:
        plain = run_plain(gpu, call)
    if k is None:
        k = max(1, call.n_vb // 3) if call.n_vb > 1 else 0
    call.clear_outputs()
    if k:
        gpu.launch(EntryPoint.plain(call.spec, call.params), k, [call.args()])
    counter, flag = device_int(k), device_int(0)
    run_preemptible(gpu, call, 5, counter, flag.data_ptr())
    assert_bitwise(call, call.result(), plain, f"resume from block {k}")


def check_flag_mid_run(gpu: Gpu, call: Call) -> None:
    """One persistent CTA walks the blocks (a call that takes tens of ms that
    way); the host raises a mapped-memory flag 2 ms in; relaunching on 2 x SMs
    CTAs with the same counter finishes with the plain result bit for bit.
    Fails when the single CTA finished before the flag."""
    plain = run_plain(gpu, call)
    call.clear_outputs()
    counter = device_int(0)
    with gpu.mapped_flag() as (flag, flag_ptr):
        sync()
        run_preemptible(gpu, call, 1, counter, flag_ptr)
        time.sleep(0.002)
        flag.value = 1
        sync()
        stopped_at = counter.item()
        assert 0 <= stopped_at <= call.n_vb
        if stopped_at == call.n_vb:
            pytest.fail(f"{call.where()}: finished before the flag ({call.n_vb} vbs)")
        flag.value = 0
        run_preemptible(gpu, call, 2 * gpu.sms, counter, flag_ptr)
        got = call.result()
    assert_bitwise(call, got, plain, f"preempted at block {stopped_at} and resumed")


def check_padded_pair(
    gpu: Gpu,
    rt: Call,
    be: Call,
    *,
    check_rt: Check | None = assert_matches_reference,
    check_be: Check | None = assert_matches_reference,
    whole: bool = True,
    budgets: Sequence[int] | None = None,
    raised: bool = True,
) -> None:
    """The padded form of `rt` beside `be`, bit for bit against their plain
    results (`check_rt` / `check_be` check those first; None: not checked).

    - `whole`: a BE budget covering every block on 2 x SMs CTAs: one launch
      finishes both kernels.
    - each of `budgets` (default: a third of the BE blocks, at least one) on SMs
      CTAs: exactly the budget is claimed, the RT side is exact, and the
      preemptible form resumes the BE counter where the padding stopped.
    - `raised`: with the flag raised the BE CTAs claim nothing; the RT side
      still runs.
    """
    rt_plain, be_plain = run_plain(gpu, rt), run_plain(gpu, be)
    if check_rt is not None:
        check_rt(rt, rt_plain)
    if check_be is not None:
        check_be(be, be_plain)
    flag = device_int(0)

    if whole:
        rt.clear_outputs()
        be.clear_outputs()
        run_padded(gpu, rt, be, 2 * gpu.sms, device_int(0), be.n_vb, flag.data_ptr())
        assert_bitwise(rt, rt.result(), rt_plain, "the RT side of a padded launch")
        assert_bitwise(be, be.result(), be_plain, "the BE side of a padded launch")

    for budget in budgets if budgets is not None else [max(1, be.n_vb // 3)]:
        rt.clear_outputs()
        be.clear_outputs()
        be_next = device_int(0)
        run_padded(gpu, rt, be, gpu.sms, be_next, budget, flag.data_ptr())
        sync()
        assert be_next.item() == budget, "the BE share overran its block budget"
        assert_bitwise(rt, rt.result(), rt_plain, f"the RT side, BE budget {budget}")
        run_preemptible(gpu, be, 2 * gpu.sms, be_next, flag.data_ptr())
        assert_bitwise(
            be, be.result(), be_plain, f"the BE side, budget {budget}, then resumed"
        )

    if raised:
        rt.clear_outputs()
        be.clear_outputs()
        be_next, up = device_int(0), device_int(1)
        run_padded(gpu, rt, be, gpu.sms, be_next, be.n_vb, up.data_ptr())
        sync()
        assert be_next.item() == 0, "a BE CTA claimed a block with the flag raised"
        assert_bitwise(rt, rt.result(), rt_plain, "RT side beside a preempted BE side")
