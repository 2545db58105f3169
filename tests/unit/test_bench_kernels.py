"""bench/kernels.py without a GPU: shape collection, row math, JSON, plot.

The zoo's calls are collected from a small ResNet-50 lowered on the CPU; the
ratio and geomean math runs on made-up timings; a CPU dry run drives every
call of that model through `Bench.row` with a fake launcher (it runs the torch
reference on the memory the packed args point at) and a fake timer, and `main`
end to end from a shapes file to the JSON, table and plot, so the wiring is
exercised without timing anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from bench import kernel_bench as bk
from reefd.kernels import catalog
from reefd.kernels.nvrtc import FunctionResources
from reefd.kernels.spec import ITEMSIZE_BYTES, TORCH_DTYPE
from reefd.kernels.wrappers import EntryPoint, args_layout

# --- shape collection -------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet_calls() -> list:
    return bk.lower_model("resnet50", 1, image=64)


@pytest.fixture(scope="module")
def zoo_calls(resnet_calls) -> list[bk.ZooCall]:
    return bk.collect([("resnet50", resnet_calls)])


def test_collect_counts_every_call_once(resnet_calls, zoo_calls) -> None:
    assert sum(c.count for c in zoo_calls) == len(resnet_calls)
    assert len({c.key for c in zoo_calls}) == len(zoo_calls)
    assert all(c.models == {"resnet50": c.count} for c in zoo_calls)
    order = [(c.kernel, -c.count) for c in zoo_calls]
    assert order == sorted(order)
    kernels = {c.kernel for c in zoo_calls}
    assert {"conv2d", "max_pool2d", "add", "linear"} <= kernels
    # ResNet-50 at 64x64: the 3x3 convs of stage 1 repeat (3 blocks).
    assert max(c.count for c in zoo_calls if c.kernel == "conv2d") >= 3


def test_collected_params_are_complete_and_json_ready(zoo_calls) -> None:
    for call in zoo_calls:
        spec = catalog.get(call.kernel)
        assert set(call.params) == {p.name for p in spec.params}
        assert json.loads(json.dumps(call.params)) == call.params
        assert set(call.bound) <= {o.name for o in spec.operands}
        assert "->" in bk.describe(spec, call.params, call.bound)
    conv = next(c for c in zoo_calls if c.kernel == "conv2d")
    assert "bias" in conv.bound  # BN folded into the conv: a bias is bound
    stem = bk.describe(catalog.get("conv2d"), conv.params, conv.bound)
    assert stem.startswith("x[")


def test_shapes_file_round_trips(zoo_calls, tmp_path: Path) -> None:
    path = tmp_path / "shapes.json"
    path.write_text(json.dumps(bk.shapes_json(zoo_calls, ["resnet50"], 1)))
    calls, header = bk.read_shapes(path)
    assert calls == zoo_calls
    assert header["models"] == ["resnet50"] and header["batch"] == 1


def test_restrict_and_first_per_kernel() -> None:
    a = bk.ZooCall("relu", {"numel": 4}, ("x", "y"), 3, {"m1": 1, "m2": 2})
    b = bk.ZooCall("relu", {"numel": 8}, ("x", "y"), 1, {"m1": 1})
    c = bk.ZooCall("copy", {"numel": 8}, ("x", "y"), 5, {"m2": 5})
    only_m2 = bk.restrict([a, b, c], ["m2"])
    assert [(x.params["numel"], x.count) for x in only_m2] == [(4, 2), (8, 5)]
    assert [x.kernel for x in bk.first_per_kernel([b, a, c], 1)] == ["copy", "relu"]
    assert bk.first_per_kernel([b, a, c], 1)[1].count == 3


# --- rows and the summary on made-up timings --------------------------------------


def fake_row(kernel: str = "linear", count: int = 1, **times: Any) -> bk.Row:
    row = bk.Row(
        kernel=kernel,
        shape="x[1] -> y[1]",
        params={},
        bound=["x", "y"],
        count=count,
        models={"m": count},
        kind="move" if kernel in bk.DATA_MOVEMENT else "compute",
        rel_err=times.pop("rel_err", 1e-6),
        preempt_exact=times.pop("preempt_exact", True),
        error=times.pop("error", ""),
        **times,
    )
    return bk.derive(row)


def test_derive_ratios_with_and_without_torch_copy() -> None:
    r = fake_row(
        ours_us=10.0,
        torch_us=20.0,
        copy_us=5.0,
        preempt_us=11.0,
        preempt_mapped_us=13.0,
        floor_us=4.0,
    )
    assert r.ratio == pytest.approx(0.5)
    assert r.torch_op_us == pytest.approx(15.0)
    assert r.ratio_no_copy == pytest.approx(10 / 15)
    assert r.preempt_ratio == pytest.approx(1.1)
    assert r.preempt_mapped_ratio == pytest.approx(1.3)
    assert r.ours_over_floor == pytest.approx(2.5)
    # For a data-movement kernel torch's op is the copy: both ratios agree.
    move = fake_row("copy", ours_us=10.0, torch_us=20.0, copy_us=19.0)
    assert move.ratio_no_copy == move.ratio == pytest.approx(0.5)
    # A copy as slow as the whole reference leaves no op time: no ratio.
    lost = fake_row(ours_us=10.0, torch_us=20.0, copy_us=21.0)
    assert lost.ratio_no_copy is None and lost.ratio == pytest.approx(0.5)
    assert fake_row(ours_us=None, torch_us=20.0).ratio is None


def test_geomean_weighted_and_unweighted() -> None:
    assert bk.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert bk.geomean([2.0, 8.0], [3, 1]) == pytest.approx(2 ** (6 / 4))
    assert math.isnan(bk.geomean([]))


def summary_rows() -> list[bk.Row]:
    return [
        fake_row(
            "linear", 3, ours_us=20.0, torch_us=10.0, copy_us=2.0, preempt_us=21.0
        ),
        fake_row(
            "conv2d", 1, ours_us=10.0, torch_us=20.0, copy_us=2.0, preempt_us=13.0
        ),
        # Wrong results and failures stay out of every mean.
        fake_row("relu", 50, ours_us=1.0, torch_us=100.0, rel_err=float("nan")),
        fake_row("add", 50, ours_us=1.0, torch_us=100.0, error="compile failed"),
        # A preemptible form that is not bit-exact stays out of the preempt max.
        fake_row(
            "softmax",
            1,
            ours_us=10.0,
            torch_us=10.0,
            copy_us=1.0,
            preempt_us=50.0,
            preempt_exact=False,
        ),
    ]


def test_summary_geomeans_weights_and_worst_overhead() -> None:
    s = bk.summarize(summary_rows())
    assert (s["rows"], s["errors"], s["wrong"], s["preempt_not_exact"]) == (5, 1, 1, 1)
    ratio = s["ratio"]
    assert ratio["calls"] == 3
    assert ratio["geomean_unweighted"] == pytest.approx((2.0 * 0.5 * 1.0) ** (1 / 3))
    assert ratio["geomean_weighted"] == pytest.approx((2.0**3 * 0.5) ** (1 / 5))
    no_copy = s["ratio_no_copy"]
    assert no_copy["geomean_unweighted"] == pytest.approx(
        (20 / 8 * 10 / 18 * 10 / 9) ** (1 / 3)
    )
    worst = s["preempt_max"]
    assert worst["ratio"] == pytest.approx(1.3) and worst["kernel"] == "conv2d"
    assert worst["over_target"] == 1
    by_kernel = {e["kernel"]: e for e in s["by_kernel"]}
    assert by_kernel["relu"]["bad"] == 1 and by_kernel["linear"]["count"] == 3
    assert by_kernel["linear"]["ours_us_total"] == pytest.approx(60.0)
    text = bk.format_summary(s)
    assert "target <= 1.25" in text and "conv2d" in text
    table = bk.format_table(summary_rows())
    assert "WRONG" in table and "compile failed" in table
    assert "not bit-exact" not in table and "preemptible != plain" in table


# --- the JSON file ----------------------------------------------------------------

META = {
    "date": "2026-11-23T12:00:00+00:00",
    "command": "python -m bench.kernels --batch 8",
    "models": ["resnet50"],
    "batch": 8,
    "settings": {"repeat": 50, "torch_tf32": bk.TF32_SETTING},
    "device": {"name": "fake", "driver": "0", "cuda_driver_api": "13.0"},
    "versions": {"torch": torch.__version__, "reefd": "0.1.0"},
    "ceilings": {"copy_bytes_per_s": 3e12},
}


def test_results_json_schema(tmp_path: Path) -> None:
    rows = summary_rows()
    path = tmp_path / "kernels.json"
    bk._write_json(path, bk.results_json(META, rows, complete=True))
    data = json.loads(path.read_text())  # strict JSON: NaN became null
    assert data["schema"] == bk.SCHEMA and data["complete"] is True
    for key in ("date", "command", "device", "versions", "settings", "summary"):
        assert key in data
    assert {"name", "driver", "cuda_driver_api"} <= set(data["device"])
    assert {"torch", "reefd"} <= set(data["versions"])
    assert len(data["rows"]) == len(rows)
    for name in (
        "kernel",
        "shape",
        "count",
        "ours_us",
        "torch_us",
        "copy_us",
        "ratio",
        "ratio_no_copy",
        "preempt_ratio",
        "rel_err",
    ):
        assert name in data["rows"][0]
    assert data["rows"][2]["rel_err"] is None  # the NaN
    back = [bk.Row.from_dict(r) for r in data["rows"]]
    assert [r.ratio for r in back] == [r.ratio for r in rows]
    assert data["summary"]["ratio"]["calls"] == 3


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    results = json.loads(
        json.dumps(bk.finite(bk.results_json(META, summary_rows(), True)))
    )
    path = bk.plot(results, tmp_path / "kernels.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # `--plot` draws from a results file on any machine.
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert bk.main(["--plot", str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "r.png").stat().st_size > 0


def test_without_a_gpu_it_says_what_is_missing(capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert bk.main(["--models", "resnet50", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert "cannot time kernels here" in err
    assert "CUDA" in err or "cuda.bindings" in err


# --- a CPU dry run of the row logic -------------------------------------------------


def _views(entry: EntryPoint, args: bytes) -> dict[str, torch.Tensor]:
    """Tensors over the memory the packed args point at (CPU addresses)."""
    spec, params = entry.spec, entry.params
    struct = args_layout(spec).struct.from_buffer_copy(args)
    shapes = spec.shapes(params)
    views = {}
    for op in spec.operands:
        address = getattr(struct, op.name)
        if not address:
            continue
        n = math.prod(shapes[op.name])
        raw = (ctypes.c_char * (n * ITEMSIZE_BYTES[op.dtypes[0]])).from_address(address)
        flat = torch.frombuffer(raw, dtype=TORCH_DTYPE[op.dtypes[0]], count=n)
        views[op.name] = flat.view(shapes[op.name])
    return views


class FakeLauncher:
    """Launches run the torch reference on the CPU; occupancy is made up."""

    arch, sms, l2_bytes = "sm_90", 132, 0

    def __init__(self) -> None:
        self.launches: list[tuple[str, int]] = []

    def resources(self, entry: EntryPoint) -> FunctionResources:
        return FunctionResources(registers=40, static_smem_bytes=16)

    def ctas_per_sm(self, entry: EntryPoint) -> int:
        return 6

    def driver_ctas_per_sm(self, entry: EntryPoint) -> int:
        return 6

    def persistent_grid(self, entry: EntryPoint, n_vb: int) -> int:
        return min(self.sms * 6, n_vb)

    def _run(self, entry: EntryPoint, args: bytes, grid: int) -> None:
        self.launches.append((entry.form, grid))
        entry.spec.reference(_views(entry, args), entry.params)

    def launch_plain(self, entry: EntryPoint, args: bytes, n_vb: int) -> None:
        self._run(entry, args, n_vb)

    def launch_preemptible(
        self, entry: EntryPoint, grid: int, args: bytes, n_vb: int, *ptrs: int
    ) -> None:
        self._run(entry, args, grid)

    def load(self, groups: Any, jobs: int = 1, progress: Any = None) -> list:
        return []  # nothing to compile: launches run the reference

    @contextlib.contextmanager
    def mapped_flag(self) -> Iterator[tuple[None, int]]:
        yield None, 0


class FakeTimer:
    """Runs the callable once per measurement; every time is 10 us."""

    host_ahead = "fake"

    def __init__(self, *args: Any) -> None:
        pass

    def measure(
        self, fn: Callable[[], Any], before: Callable[[], Any] | None = None
    ) -> bk.Timing:
        if before:
            before()
        fn()
        return bk.Timing(10.0, 9.0, 11.0, 1)


@pytest.fixture
def cpu_bench(monkeypatch) -> Iterator[tuple[bk.Bench, FakeLauncher]]:
    monkeypatch.setattr(bk, "DEVICE", "cpu")
    gpu = FakeLauncher()
    ceilings = {f"{p}_flop_per_s": 1e13 for p in ("fp32", "tf32", "bf16", "f16")}
    yield bk.Bench(gpu, FakeTimer(), {**ceilings, "copy_bytes_per_s": 1e12}), gpu


def test_dry_run_of_every_small_resnet_call(cpu_bench, zoo_calls) -> None:
    bench, gpu = cpu_bench
    extra = [
        bk.ZooCall(
            "embedding",
            {"n": 16, "vocab": 50, "dim": 8},
            ("ids", "table", "y"),
            1,
            {"distilbert": 1},
        ),
        bk.ZooCall(
            "strided_copy",
            bk.canonical_params(
                catalog.get("strided_copy"),
                {
                    "shape": [1, 1, 1, 2, 3, 4],
                    "x_strides": [0, 0, 0, 1, 8, 2],
                    "y_strides": [0, 0, 0, 12, 4, 1],
                },
            ),
            ("x", "y"),
            1,
            {"vit_b16": 1},
        ),
    ]
    for call in [*zoo_calls, *extra]:
        row = bench.row(call, 0)
        assert not row.error, row.error
        assert row.correct and row.rel_err == 0.0, row.shape
        assert row.preempt_exact is True
        assert row.ratio == row.preempt_ratio == pytest.approx(1.0)
        assert row.grid == min(132 * 6, row.n_vb)
        assert row.floor_us and row.floor_us > 0
        assert row.kind == ("move" if call.kernel == "strided_copy" else "compute")
    embedding = bench.row(extra[0], 0)
    assert "without the reference's host-side id check" in embedding.note
    forms = {form for form, _ in gpu.launches}
    assert forms == {"plain", "preemptible"}


def test_a_failing_call_is_recorded_not_raised(cpu_bench) -> None:
    bench, _ = cpu_bench
    plain = EntryPoint.plain(catalog.get("relu"), {"numel": 8})
    bench.compile_errors[plain.name] = "compile failed: boom"
    row = bench.row(bk.ZooCall("relu", {"numel": 8}, ("x", "y"), 1, {"m": 1}), 0)
    assert row.error == "compile failed: boom" and row.ratio is None


def test_main_end_to_end_on_cpu_with_fakes(
    monkeypatch, zoo_calls, tmp_path: Path, capsys
) -> None:
    """--shapes FILE -> every call measured -> JSON, table, plot; no GPU: the
    launcher, the timer, the ceilings and the device facts are fakes."""
    import reefd.kernels.launcher as launcher

    monkeypatch.setattr(bk, "DEVICE", "cpu")
    monkeypatch.setattr(bk, "missing_gpu_support", lambda: None)
    monkeypatch.setattr(launcher, "Launcher", FakeLauncher)
    monkeypatch.setattr(bk, "Timer", FakeTimer)
    rates = {f"{p}_flop_per_s": 1e13 for p in ("fp32", "tf32", "bf16", "f16")}
    monkeypatch.setattr(
        bk, "measure_ceilings", lambda timer: {**rates, "copy_bytes_per_s": 1e12}
    )
    monkeypatch.setattr(
        bk, "device_meta", lambda gpu: {"device": {"name": "fake"}, "versions": {}}
    )
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps(bk.shapes_json(zoo_calls, ["resnet50"], 1)))
    out = tmp_path / "out"
    argv = ["--shapes", str(shapes), "--out", str(out), "--max-per-kernel", "2"]
    assert bk.main(argv) == 0
    data = json.loads((out / "kernels.json").read_text())
    kernels = {c.kernel for c in zoo_calls}
    assert data["complete"] and len(data["rows"]) <= 2 * len(kernels)
    assert {r["kernel"] for r in data["rows"]} == kernels
    assert data["command"] == "python -m bench.kernels " + " ".join(argv)
    assert data["batch"] == 1 and data["models"] == ["resnet50"]
    assert data["summary"]["ratio"]["geomean_weighted"] == pytest.approx(1.0)
    assert "| conv2d |" in (out / "kernels.md").read_text()
    printed = capsys.readouterr().out
    assert printed.rstrip().splitlines()[-1].startswith("preemptible/plain, mapped")
    if importlib.util.find_spec("matplotlib"):
        assert (out / "kernels.png").exists()


def test_launcher_imports_without_a_gpu_and_is_the_test_harness_gpu() -> None:
    from reefd.kernels.launcher import Launcher, i32, ptr
    from tests.gpu.harness import Gpu

    assert Gpu is Launcher
    assert i32(-1) == b"\xff\xff\xff\xff" and len(ptr(1)) == 8
