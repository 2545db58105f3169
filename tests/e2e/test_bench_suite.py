"""`python -m bench run` end to end, made tiny: workload A on the cpu backend
(real daemons, real client processes, the eager baseline with no daemon;
reduced models, 2 s a case), and workload REAL on the virtual-time
simulator. Checks what the runs write (the table, the JSON, three PNGs),
never a time."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite.cli import main

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNGS = ("latency_cdf.png", "be_throughput.png", "timeline.png")


def _check_outputs(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    for name in PNGS:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    assert "### Per case" in (out / "results.md").read_text()
    assert not results["meta"]["gpu_figures"]
    assert "NOT GPU" in results["meta"]["note"]
    return results


def test_bench_run_on_cpu_writes_table_json_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--workload", "A", "--backend", "cpu", "--duration", "2", "--reduced"]
    args += ["--policy", "reef,eager,rt-alone", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = _check_outputs(out)
    assert (out / "logs").is_dir()
    cases = {c["label"]: c for c in results["cases"]}
    assert list(cases) == ["rt-alone", "reef", "eager"]
    for case in cases.values():
        assert case["error"] is None
        for client in case["clients"]:
            assert client["done"] > 0 and client["errors"] == 0, client
            assert len(client["latencies_ms"]) == client["done"]
    assert [c["name"] for c in cases["reef"]["clients"]] == [
        "rt0-vgg19",
        "be0-resnet152",
    ]
    assert cases["reef"]["preempt"]["count"] >= 0
    assert cases["eager"]["preempt"] is None
    assert cases["eager"]["device"].startswith("torch eager on cpu")
    assert cases["reef"]["timeline"] and "requests" in cases["reef"]["timeline_kind"]
    figures = {f["label"]: f for f in results["figures"]}
    assert all(math.isfinite(x) for x in figures["reef"]["rt_x_alone"])
    rt = cases["reef"]["clients"][0]
    assert rt["slo_ms"] > 0  # 2 x its rt-alone p50
    assert "| reef | reef |" in proc.stdout and "| eager | - |" in proc.stdout


def test_bench_run_on_the_simulator_draws_kernels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim"
    code = main(
        [
            "run",
            "--workload",
            "REAL",
            "--backend",
            "simulate",
            "--duration",
            "0.5",
            "--reduced",
            "--policy",
            "reef,rt-alone,streams",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = _check_outputs(out)
    captured = capsys.readouterr()
    assert "trace all:" in captured.err and "| streams | streams |" in captured.out
    cases = {c["label"]: c for c in results["cases"]}
    assert list(cases) == ["rt-alone", "reef", "streams"]
    assert len(cases["rt-alone"]["clients"]) == 5
    assert len(cases["reef"]["clients"]) == 10
    assert "kernels" in cases["reef"]["timeline_kind"]
    lanes = {s["lane"] for s in cases["reef"]["timeline"]}
    assert any(lane.startswith("rt") for lane in lanes)
    assert any(lane.startswith("be") for lane in lanes)
    for client in cases["reef"]["clients"]:
        if client["priority"] == "rt":
            assert client["arrival"].startswith("trace")
    assert 0 < cases["reef"]["util"] <= 1
