"""`reef-profile` end to end on the cpu backend with small models: run fills a
fresh store, show and export read it back, pairs measure a co-run, and every
user mistake is one line on stderr with exit status 2."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path

import pytest

from reefd.profiler.cli import main
from reefd.profiler.progress import Progress
from reefd.profiler.store import Store

TINY_RESNET = ["--override", "image=32", "--override", "layers=1,1,1,1"]
QUICK = ["--backend", "cpu", "--repeat", "3", "--warmup", "1", "--quiet"]

FACTORY = """
import torch
from torch import nn


def make(batch=2):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    return model, (torch.randn(batch, 16),)


def fixed():
    return make(batch=3)


def broken():
    return "not a model"
"""


def _nvrtc() -> bool:
    from reefd.errors import CompileError
    from reefd.kernels.nvrtc import nvrtc_version

    try:
        nvrtc_version()
    except CompileError:
        return False
    return True


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(FACTORY))
    return path


def test_run_fills_a_fresh_store_and_show_export_read_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state" / "profiles.sqlite"
    argv = ["run", "--zoo", "resnet50", *TINY_RESNET, "--batch", "1,2", *QUICK]
    assert main([*argv, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    name = "resnet50[image=32,layers=1x1x1x1]"
    assert name in out and f"stored in {db}" in out

    with Store.open(db) as store:
        counts = store.counts()
        assert (counts["runs"], counts["models"], counts["tasks"]) == (1, 1, 2)
        one, two = store.task_profile(name, 1), store.task_profile(name, 2)
        assert one is not None and two is not None
        assert one.model.model_key == two.model.model_key  # graph hash at batch 1
        assert one.graph_key == one.model.model_key != two.graph_key
        assert one.duration.n == 3 and len(one.calls) == counts["calls"] // 2
        first = one.calls[0]
        assert first.facts.kernel == "conv2d" and first.facts.n_vb >= 1
        assert first.facts.flops > 0 and first.facts.bytes_moved > 0
        assert first.duration.n == 3 and first.duration.median_us > 0
        if _nvrtc():
            assert first.facts.registers and first.facts.ctas_per_sm
        assert store.call_profile(name, 1, 0) == first
        _, runs = store.rows("tasks")
        assert {r["backend"] for r in runs} == {"cpu"}
        assert all(r["torch_threads"] == 1 for r in runs)

    assert main(["show", "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert "solo tasks" in shown and name in shown and "cpu: " in shown
    assert main(["show", "--db", str(db), "--model", name]) == 0
    shown = capsys.readouterr().out
    assert "conv2d" in shown and "CTAs/SM" in shown

    out_csv = tmp_path / "calls.csv"
    assert main(["export", "--db", str(db), "--csv", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == counts["calls"]
    assert rows[0]["backend"] == "cpu" and rows[0]["kernel"] == "conv2d"
    assert main(["export", "--db", str(db), "--csv", "-", "--table", "tasks"]) == 0
    tasks = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(t["batch"]) for t in tasks] == [1, 2]


def test_run_a_users_factory(
    tmp_path: Path, factory_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "p.sqlite")
    spec = f"{factory_file}:make"
    argv = ["run", "--model", spec, "--batch", "1,4", "--no-resources", *QUICK]
    assert main([*argv, "--db", db]) == 0
    # no batch argument: profiled at its example inputs' batch, renamed
    argv = ["run", "--model", f"{factory_file}:fixed", "--name", "mlp3", *QUICK]
    assert main([*argv, "--no-resources", "--db", db]) == 0
    with Store.open(db) as store:
        task = store.task_profile("app.py:make", 4)
        assert task is not None and task.model.source.endswith("app.py:make")
        assert [c.facts.kernel for c in task.calls][:1] == ["linear"]
        assert task.calls[0].facts.registers is None  # --no-resources
        fixed = store.task_profile("mlp3", 3)
        assert fixed is not None and fixed.model.name == "mlp3"
        # same graph at batch 1, so the same model key under both names
        assert fixed.model.model_key == task.model.model_key


def test_pairs_on_cpu_are_labelled_a_stand_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "p.sqlite")
    argv = ["pairs", "--rt", "resnet50", "--be", "vgg19", *QUICK, "--db", db]
    argv += ["--override", "image=32", "--override", "resnet50:layers=1,1,1,1"]
    argv += ["--override", "vgg19:width=0.125", "--override", "vgg19:hidden=16"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "stand-in" in out and "cpu processes" in out
    with Store.open(db) as store:
        pair = store.pair_slowdown(
            "resnet50[image=32,layers=1x1x1x1]", "vgg19[hidden=16,image=32,width=0.125]"
        )
        assert pair is not None and pair.method.startswith("cpu processes")
        assert pair.rt_alone.n == 3 and pair.rt_together.n >= 3
        assert pair.be_together.n >= 3
        assert pair.rt_slowdown.low <= pair.rt_slowdown.value <= pair.rt_slowdown.high
        _, rows = store.rows("pairs")
        assert rows[0]["backend"] == "cpu"
    assert main(["show", "--db", db]) == 0
    assert "co-run pairs" in capsys.readouterr().out


def _no_gpu() -> str | None:
    from reefd.profiler.cuda_runner import missing_support

    return missing_support()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--zoo", "resnet5"], "unknown zoo model 'resnet5'; known: resnet50"),
        (["run", "--zoo", "resnet50", "--batch", "1,x"], "'x' is not a positive"),
        (["run", "--zoo", "resnet50", "--batch", "0"], "'0' is not a positive"),
        (["run", "--zoo", "resnet50", "--batch", "2,2"], "2 is listed twice"),
        (["run", "--zoo", "vgg19", "--override", "layers=1"], "unknown override"),
        (["run", "--zoo", "vgg19", "--override", "oops"], "want KEY=VALUE"),
        (["run", "--model", "nocolon"], "want FILE.py:FACTORY"),
        (["run", "--model", "/nonexistent/app.py:make"], "no file /nonexistent"),
        (["pairs", "--rt", "resnet50", "--be", "nope"], "unknown zoo model 'nope'"),
        (["run", "--zoo", "resnet50", "--repeat", "0"], "--repeat 0: must be >= 1"),
        (
            ["run", "--zoo", "resnet50", "--backend", "cpu", "--arch", "foo"],
            "want a GPU arch like sm_90",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "p.sqlite"
    assert main([*argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reef-profile: error: ") and message in err
    assert err.count("\n") == 1
    assert not db.exists()  # nothing was created for a rejected command


@pytest.mark.parametrize("factory", ["missing", "broken"])
def test_bad_factories_are_named(
    factory: str,
    factory_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = str(tmp_path / "p.sqlite")
    assert main(["run", "--model", f"{factory_file}:{factory}", "--db", db]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "app.py" in err
    assert ("no function 'missing'" in err) or ("(module, example_inputs)" in err)


def test_backend_cuda_without_a_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if _no_gpu() is None:
        pytest.skip("a GPU is present here")
    db = tmp_path / "p.sqlite"
    argv = ["run", "--zoo", "resnet50", "--backend", "cuda", "--db", str(db)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("reef-profile: error: --backend cuda: ")
    assert err.count("\n") == 1 and not db.exists()


def test_show_and_export_need_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "none.sqlite")
    assert main(["show", "--db", db]) == 2
    assert "no profile store at" in capsys.readouterr().err
    assert main(["export", "--db", db, "--csv", "-"]) == 2
    Store.open(db).close()
    assert main(["show", "--db", db, "--model", "ghost"]) == 2
    assert "no such model" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["run"], ["pairs"], ["show"], ["export"]])
def test_every_command_explains_itself(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 5


def test_progress_prints_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress(4, "model b1", stream=out, every_s=0.0)
    for _ in range(4):
        bar.advance()
    bar.finish("done")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("model b1 [") and "1/4" in lines[0]
    assert "4/4" in lines[-1] and lines[-1].endswith("done")
    assert "\r" not in out.getvalue()


UNSUPPORTED = """
import torch
from torch import nn


class Cumsum(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)


def make():
    return Cumsum(), (torch.randn(2, 8),)
"""


def test_a_model_the_catalog_cannot_run_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cum.py"
    path.write_text(UNSUPPORTED)
    db = str(tmp_path / "p.sqlite")
    assert main(["run", "--model", f"{path}:make", *QUICK, "--db", db]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reef-profile: error: nothing measured; cum.py:make")
    assert "aten.cumsum" in err and err.count("\n") == 1
