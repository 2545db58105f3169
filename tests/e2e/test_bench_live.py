"""bench/colocate.py and bench/preempt.py end to end, made tiny: real daemons
(sim and cpu backends), real client processes, demo and reduced zoo models, 2 s
per case. Checks what the runs produce (every case, traffic where it ran,
finite ratios, the JSON's fields, a PNG), never a time; and that a failing case
leaves no process behind."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reefd.clients.harness import CasePlan, ClientPlan, run_case

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bench(module: str, out: Path, *args: str) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = module.rsplit(".", 1)[1]
    assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "logs").is_dir()
    return json.loads((out / f"{name}.json").read_text()), proc.stdout


def _check_meta(results: dict, backend: str) -> None:
    meta = results["meta"]
    assert meta["backend"] == backend
    assert meta["device"].startswith(backend)
    assert not meta["gpu_figures"] and "NOT GPU" in meta["note"]
    assert meta["command"].startswith("python -m bench.")
    assert meta["versions"]["torch"] and meta["date"]


def _check_client(case: dict, role: str) -> dict:
    client = case["clients"][role]
    assert client["done"] > 0 and client["errors"] == 0, case
    assert len(client["latencies_ms"]) == client["done"]
    return client


def test_colocate_runs_every_case_and_writes_json_and_png(tmp_path: Path) -> None:
    results, stdout = _bench(
        "bench.colocate",
        tmp_path / "colocate",
        "--backend=sim",
        "--rt-model=small_cnn",
        "--be-model=wide_cnn",
        "--policy=reef,wait",
        "--rt-rate-per-s=50",
        "--duration-s=2",
    )
    _check_meta(results, "sim")
    labels = ["RT alone", "BE alone", "RT + BE, reef", "RT + BE, wait"]
    assert [r["label"] for r in results["rows"]] == labels
    assert [c["label"] for c in results["cases"]] == labels
    assert results["slo_ms"] > 0
    for row, case in zip(results["rows"], results["cases"], strict=True):
        assert row["error"] is None and "error" not in case
        if "RT" in row["label"]:
            _check_client(case, "rt")
            assert math.isfinite(row["rt_p99_ratio"]) and row["rt_p99_ratio"] > 0
            assert 0.0 <= row["slo_attainment"] <= 1.0
        if "BE" in row["label"]:
            _check_client(case, "be")
            assert math.isfinite(row["be_ratio"]) and row["be_ratio"] > 0
        assert row["preemptions"] >= 0
    assert "| RT + BE, wait |" in stdout and "NOT GPU" in stdout


def test_preempt_reports_preemptions_per_model_and_policy(tmp_path: Path) -> None:
    results, stdout = _bench(
        "bench.preempt",
        tmp_path / "preempt",
        "--backend=cpu",
        "--reduced",
        "--be-models=vgg19",
        "--policy=reef,reset_hq",
        "--duration-s=2",
    )
    _check_meta(results, "cpu")
    rows = results["rows"]
    assert [(r["be_model"], r["policy"]) for r in rows] == [
        (None, "exclusive"),
        ("vgg19-reduced", "reef"),
        ("vgg19-reduced", "reset_hq"),
    ]
    for row, case in zip(rows, results["cases"], strict=True):
        assert row["error"] is None
        _check_client(case, "rt")
        if row["be_model"]:
            _check_client(case, "be")
            assert math.isfinite(row["rt_p99_excess_ms"])
            assert case["preemptions"]["before_window"] == 0
        if row["preemptions"]:
            assert row["p50_us"] <= row["p99_us"] <= row["max_us"]
    # BE runs all the time on the cpu backend, so RT arrivals must reset it.
    assert sum(r["preemptions"] for r in rows[1:]) > 0
    assert "| vgg19-reduced | reef |" in stdout


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_a_failing_client_fails_the_case_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    workdir = Path("/tmp") / f"reef-harness-{tmp_path.name[-20:]}"
    plan = CasePlan(
        "broken",
        "reef",
        (
            ClientPlan("rt", "small_cnn", "rt", rate_per_s=20.0, slo_ms=50.0),
            ClientPlan("be", "no_such_model", "be"),
        ),
        duration_s=1.0,
        backend="cpu",
    )
    try:
        with pytest.raises(RuntimeError, match="be client \\(no_such_model\\)"):
            run_case(plan, workdir)
        assert (workdir / "reefd.log").exists()
        assert _processes_mentioning(str(workdir)) == []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
