"""The interference model end to end on a real (small) dataset: four tiny
models profiled solo and in every RT/BE pair on the cpu backend (`reef-profile
pairs`: one worker process per side, a stand-in for GPU co-location), two pairs
measured twice, then `reef-profile train`, `reef-profile evaluate` and the
lookup table."""

from __future__ import annotations

import json
import textwrap
import timeit
from pathlib import Path

import numpy as np
import pytest

from reefd.interference.baselines import Learned, NoInterference, Oracle
from reefd.interference.dataset import Dataset, load_dataset
from reefd.interference.errors import InterferenceError
from reefd.interference.evaluate import EvalConfig, evaluate, lomo_folds, pair_folds
from reefd.interference.model import InterferenceModel
from reefd.interference.train import MODEL_NAME, ModelFile
from reefd.profiler.cli import main
from reefd.profiler.records import ModelIdentity, PairProfile
from reefd.profiler.stats import Stats, ratio_of_medians
from reefd.profiler.store import Store

MODELS = """
import torch
from torch import nn


def _seeded():
    torch.manual_seed(0)


def gemm(batch=1):
    _seeded()
    m = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    return m.eval(), (torch.randn(64 * batch, 512),)


def stream(batch=1):
    _seeded()
    return nn.Sequential(nn.ReLU(), nn.Sigmoid(), nn.Tanh()), (
        torch.randn(batch, 1 << 18),
    )


def conv(batch=1):
    _seeded()
    m = nn.Sequential(
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1)
    )
    return m.eval(), (torch.randn(batch, 16, 32, 32),)


def mlp(batch=1):
    _seeded()
    m = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 256))
    return m.eval(), (torch.randn(32 * batch, 256),)
"""
NAMES = ("gemm", "stream", "conv", "mlp")
QUICK = ["--backend", "cpu", "--repeat", "5", "--warmup", "1", "--quiet"]
PREDICTORS = (
    "learned",
    "conservative",
    "no interference",
    "mean slowdown",
    "linear (gpulet)",
    "complementarity (Usher)",
    "class rule (Orion)",
    "oracle (measured)",
)


def _measure_pairs(db: Path, models: Path, pairs: list[tuple[str, str]]) -> None:
    """Co-run each (RT, BE) pair once into one run of `db`, as `reef-profile
    pairs` does (one backend, so its two worker processes start once)."""
    from reefd.profiler.measure import Lowerings
    from reefd.profiler.pairs import profile_pair
    from reefd.profiler.runner import open_backend
    from reefd.profiler.target import file_target

    targets = {name: file_target(f"{models}:{name}") for name in NAMES}
    backend = open_backend("cpu", note=lambda _: None)
    lowerings = Lowerings()
    try:
        with Store.open(db) as store:
            env = backend.environment(None)
            run_id = store.begin_run(env, command="test", warmup=1, repeat=5)
            for rt_name, be_name in pairs:
                rt = lowerings.get(targets[rt_name], 1)
                be = lowerings.get(targets[be_name], 1)
                runners = backend.pair_runners(
                    ((rt.lowered, rt.inputs), (be.lowered, be.inputs))
                )
                try:
                    pair = profile_pair(
                        backend,
                        runners,
                        (rt.identity, be.identity),
                        (1, 1),
                        1,
                        5,
                        lambda: None,
                    )
                finally:
                    for r in runners:
                        r.close()
                store.add_pair(run_id, pair)
            store.finish_run(run_id)
    finally:
        backend.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with 4 solo tasks and 16 pairs (2 of them measured twice)."""
    root = tmp_path_factory.mktemp("interference")
    models = root / "models.py"
    models.write_text(textwrap.dedent(MODELS))
    path = root / "profiles.sqlite"
    for name in NAMES:
        argv = ["run", "--model", f"{models}:{name}", *QUICK, "--db", str(path)]
        assert main(argv) == 0
    every = [(rt, be) for rt in NAMES for be in NAMES]
    _measure_pairs(path, models, [*every, ("gemm", "stream"), ("gemm", "mlp")])
    return path


@pytest.fixture(scope="module")
def data(db: Path) -> Dataset:
    with Store.open(db) as store:
        return load_dataset(store)


def test_the_dataset_joins_pairs_with_solo_features(data: Dataset) -> None:
    assert len(data.rows) == 16 and len(data.models) == 4 and len(data.tasks) == 4
    assert data.device.backend == "cpu" and data.skipped == 0
    assert sorted(len(r.repeats) for r in data.rows) == [1] * 14 + [2, 2]
    for row in data.rows:
        assert row.rt_slowdown == pytest.approx(float(np.median(row.repeats)))
        assert row.be_ratio > 0 and row.rt_noise_rel >= 0
    for features in data.tasks.values():
        assert features["flops"] > 0 and features["duration_us"] > 0
        assert features["gb_per_s"] > 0
    assert "16 pairs (18 measurements) of 4 models on cpu: " in data.describe()


def test_folds_never_train_on_what_they_score(data: Dataset) -> None:
    folds = lomo_folds(data)
    assert len(folds) == 4
    for fold, model in zip(folds, data.models, strict=True):
        held = {i for i, r in enumerate(data.rows) if model in (r.rt_model, r.be_model)}
        assert set(fold.test.tolist()) == held and len(held) == 7
        assert not held & set(fold.train.tolist())
    for fold in pair_folds(data, 5):
        train = {data.rows[i].group for i in fold.train}
        assert not train & {data.rows[i].group for i in fold.test}


def test_train_writes_the_model_to_the_state_directory(
    db: Path,
    data: Dataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert main(["train", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "reefd" / MODEL_NAME
    assert f"wrote {path}" in out and path.exists()
    assert "trained on 16 pairs (18 measurements) of 4 models on cpu: " in out
    assert "stand-in" in out

    loaded = ModelFile.load(path)
    assert loaded.trained_on["pairs"] == 16 and loaded.device == data.device
    # the file round-trips: the loaded regressors predict what fresh ones do
    fresh = ModelFile.train(data).trained.estimate(data.pairs())
    again = loaded.trained.estimate(data.pairs())
    np.testing.assert_array_equal(fresh.rt_slowdown, again.rt_slowdown)
    np.testing.assert_array_equal(fresh.be_ratio, again.be_ratio)
    assert (again.rt_upper >= again.rt_slowdown).all()


def test_the_table_is_the_model(data: Dataset, tmp_path: Path) -> None:
    model_file = ModelFile.train(data)
    path = model_file.save(tmp_path / "m.joblib")
    table = InterferenceModel.load(path)
    assert len(table) == 16 and set(table.task_keys) == set(data.tasks)
    # on the training rows the lookup gives the regressors' own predictions:
    # they were trained on quantised features, so the table adds no error
    est = model_file.trained.estimate(data.pairs())
    for i, row in enumerate(data.rows):
        found = table.predict(row.rt_key, row.be_key)
        assert found.rt_slowdown == pytest.approx(est.rt_slowdown[i], rel=1e-12)
        assert found.rt_upper == pytest.approx(est.rt_upper[i], rel=1e-12)
        assert found.be_ratio == pytest.approx(est.be_ratio[i], rel=1e-12)
        slack = found.rt_upper - 1.0
        assert table.safe(row.rt_key, row.be_key, slack + 1e-9)
        assert not table.safe(row.rt_key, row.be_key, slack - 1e-6)
    # and it fits the measurements it was trained on
    fitted = np.array(
        [table.predict_rt_slowdown(r.rt_key, r.be_key) for r in data.rows]
    )
    assert np.median(np.abs(np.log(fitted / data.rt_slowdown()))) < 0.1
    # a pair it does not know: the worst known prediction, and never safe
    assert not table.knows("nope")
    assert table.predict_rt_slowdown("nope", row.be_key) == table.unknown.rt_slowdown
    assert table.unknown.rt_slowdown >= max(fitted)
    assert not table.safe("nope", row.be_key, 100.0)


def test_adding_a_store_adds_its_tasks(data: Dataset, db: Path) -> None:
    rt_key = data.rows[0].rt_key
    model_file = ModelFile.train(data)
    small = ModelFile(
        model_file.trained,
        model_file.device,
        {rt_key: data.tasks[rt_key]},
        model_file.names,
        model_file.trained_on,
    )
    table = InterferenceModel(small)
    assert len(table) == 1
    with Store.open(db) as store:
        assert table.add_store(store) > 0
    assert len(table) == 16 and table.knows(data.rows[-1].be_key)


def test_a_lookup_is_a_dict_lookup(data: Dataset) -> None:
    table = InterferenceModel(ModelFile.train(data))
    keys = [(r.rt_key, r.be_key) for r in data.rows]
    rounds = 2000
    total_s = timeit.timeit(
        lambda: [table.predict_rt_slowdown(rt, be) for rt, be in keys], number=rounds
    )
    per_pair_us = total_s / (rounds * len(keys)) * 1e6
    print(f"predict_rt_slowdown: {per_pair_us:.3f} us per pair")
    assert per_pair_us < 50.0  # generous: about 0.1 us on a laptop


def test_evaluate_prints_every_predictor_and_writes_png_and_json(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot, out_json = tmp_path / "eval.png", tmp_path / "eval.json"
    argv = ["evaluate", "--db", str(db), "--plot", str(plot), "--json", str(out_json)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "leave-one-model-out (4 folds) on 16 pairs" in out and "stand-in" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    names = [line.split(" | ")[0][2:] for line in table[1:]]
    assert names == [*PREDICTORS, "noise floor"]
    oracle = table[1 + PREDICTORS.index("oracle (measured)")].split(" | ")
    assert oracle[1:3] == ["0.0", "0.000"] and oracle[4] == "0.000"
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    report = json.loads(out_json.read_text())
    assert [s["predictor"] for s in report["scores"]] == list(PREDICTORS)
    assert report["split"] == "lomo" and report["noise_floor"]["repeated_pairs"] == 2
    assert sorted(report["folds"]) == sorted(f"models.py:{n}" for n in NAMES)
    assert len(report["predictions"]) == len(PREDICTORS) * 28  # 4 folds x 7


def test_oracle_and_no_interference_score_what_they_must(data: Dataset) -> None:
    for split in ("lomo", "pairs"):
        report = evaluate(
            data,
            EvalConfig(split=split, slo_slowdown=1.05),
            [Learned(), NoInterference(), Oracle()],
        )
        scores = {s.predictor: s for s in report.scores}
        oracle = scores["oracle (measured)"]
        assert oracle.mape_pct == 0.0 and oracle.p90_abs_error == 0.0
        assert oracle.top1_regret == 0.0 and oracle.false_safe_pct == 0.0
        assert oracle.kendall_tau == pytest.approx(1.0) and oracle.tau_groups >= 1
        measured = np.array(
            [
                data.rows[h.row].rt_slowdown
                for h in report.held
                if h.predictor == "no interference"
            ]
        )
        none = scores["no interference"]
        assert none.mape_pct == pytest.approx(
            100 * np.mean(np.abs(1 - measured) / measured)
        )
        assert none.kendall_tau == 0.0 and none.predicted_safe == none.scored
        unsafe = np.mean(measured > 1.05)
        assert none.false_safe_pct == pytest.approx(100 * unsafe)
        learned = scores["learned"]
        assert np.isfinite([learned.mape_pct, learned.top1_regret]).all()
        assert 0.0 <= learned.false_safe_pct <= 100.0


def test_too_little_data_is_named(data: Dataset) -> None:
    two = set(data.models[:2])
    few = data.subset(
        [i for i, r in enumerate(data.rows) if {r.rt_model, r.be_model} <= two]
    )
    with pytest.raises(InterferenceError, match="needs at least 3 models") as err:
        lomo_folds(few)
    assert "4 pair profiles on 3 model pair(s) of 2 model(s)" in str(err.value)
    with pytest.raises(InterferenceError, match="needs at least 4 pair profiles"):
        ModelFile.train(few.subset([0, 1, 2]))


def test_an_empty_store_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "empty.sqlite"
    for command in ("train", "evaluate"):
        assert main([command, "--db", str(db)]) == 2
        assert "no profile store at" in capsys.readouterr().err
    Store.open(db).close()
    model = tmp_path / "m.joblib"
    for argv in (["train", "--out", str(model)], ["evaluate", "--no-plot"]):
        assert main([*argv, "--db", str(db)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("reef-profile: error: ") and err.count("\n") == 1
        assert "has no pair profiles" in err and "reef-profile pairs" in err
    assert not model.exists()


def test_pairs_without_solo_profiles_are_named(tmp_path: Path) -> None:
    from reefd.profiler.environment import environment

    samples = [1.0, 1.1, 1.2]
    stats, ratio = Stats.of(samples), ratio_of_medians(samples, samples)
    pair = PairProfile(
        rt=ModelIdentity("a" * 64, "alpha", "zoo:alpha", {}),
        rt_batch=1,
        be=ModelIdentity("b" * 64, "beta", "zoo:beta", {}),
        be_batch=1,
        method="hand-made",
        rt_alone=stats,
        rt_together=stats,
        be_alone=stats,
        be_together=stats,
        rt_slowdown=ratio,
        be_slowdown=ratio,
        samples_us={},
    )
    with Store.open(tmp_path / "p.sqlite") as store:
        env = environment("cpu", resources_arch=None)
        store.add_pair(store.begin_run(env, command="t", warmup=0, repeat=3), pair)
        with pytest.raises(InterferenceError, match="no solo profile") as err:
            load_dataset(store)
        assert "alpha batch 1, beta batch 1" in str(err.value)
        with pytest.raises(InterferenceError, match="--device 'cuda': no pair"):
            load_dataset(store, device="cuda")


def test_a_foreign_model_file_is_refused(tmp_path: Path) -> None:
    import joblib

    with pytest.raises(InterferenceError, match="no interference model at"):
        InterferenceModel.load(tmp_path / "none.joblib")
    joblib.dump({"format": "something else"}, tmp_path / "x.joblib")
    with pytest.raises(InterferenceError, match="not a reefd interference model"):
        InterferenceModel.load(tmp_path / "x.joblib")
    joblib.dump({"format": "reefd-interference-model", "version": 99}, tmp_path / "y")
    with pytest.raises(InterferenceError, match="format v99; this reefd reads v1"):
        InterferenceModel.load(tmp_path / "y")
    (tmp_path / "z").write_text("not a pickle")
    with pytest.raises(InterferenceError, match="not a readable interference model"):
        InterferenceModel.load(tmp_path / "z")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_train_and_evaluate_explain_themselves(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 10


def test_bad_evaluate_options_are_named(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--db", str(db), "--slo-slowdown", "0.9"]) == 2
    assert "--slo-slowdown 0.9: must be >= 1.0" in capsys.readouterr().err
