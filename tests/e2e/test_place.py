"""reefd.clients.place against two real daemons (cpu backend), with an
interference model trained on the cpu profiles the pipeline tests measure."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from reefd.clients import compile, place
from reefd.clients.daemon import DaemonProcess
from reefd.clients.placement import UNKNOWN, score_daemon
from reefd.errors import ReefError
from reefd.interference.model import InterferenceModel
from reefd.interference.train import ModelFile
from tests.unit.test_interference_pipeline import MODELS, data, db  # noqa: F401


def _zoo() -> dict:
    namespace: dict = {}
    exec(MODELS, namespace)  # the same small models the profiles measured
    return namespace


def _key(table: InterferenceModel, factory: str) -> str:
    """The profile key of a test model at batch 1 ("models.py:gemm b1")."""
    return next(
        key
        for key, name in table.names.items()
        if name.split()[0].endswith(f":{factory}") and name.endswith(" b1")
    )


def test_place_picks_the_daemon_where_the_be_model_interferes_least(
    data,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    table = InterferenceModel(ModelFile.train(data))
    zoo = _zoo()
    rt_a, rt_b, new = "gemm", "conv", "stream"
    predicted = {
        rt: table.predict_rt_slowdown(_key(table, rt), _key(table, new))
        for rt in (rt_a, rt_b)
    }
    with tempfile.TemporaryDirectory(prefix="reef-", dir="/tmp") as short:
        sockets = [str(Path(short) / f"{n}.sock") for n in "ab"]
        with (
            DaemonProcess(sockets[0], backend="cpu", log_path=str(tmp_path / "a")),
            DaemonProcess(sockets[1], backend="cpu", log_path=str(tmp_path / "b")),
        ):
            remotes = [
                compile(*zoo[rt](), priority="rt", slo_ms=100, socket=socket, name=rt)
                for rt, socket in zip((rt_a, rt_b), sockets, strict=True)
            ]
            try:
                model, inputs = zoo[new]()
                got = place(model, sockets, example_inputs=inputs, interference=table)
                as_rt = place(
                    _key(table, new), sockets, priority="rt", interference=table
                )
            finally:
                for remote in remotes:
                    remote.close()
    want = sockets[0] if predicted[rt_a] <= predicted[rt_b] else sockets[1]
    assert got.socket == want
    assert [s.score for s in got.scores] == [predicted[rt_a], predicted[rt_b]]
    assert got.scores[0].worst_pair == (rt_a, "new model")
    # an RT model is scored only against BE models: none there, so no slowdown
    assert [s.score for s in as_rt.scores] == [1.0, 1.0]
    assert as_rt.socket == sockets[0]


def test_unknown_pairs_score_worst_and_bad_arguments_are_named(
    data,  # noqa: F811 (the fixture)
) -> None:
    table = InterferenceModel(ModelFile.train(data))
    key = table.task_keys[0]
    status = {"models": [{"name": "x", "priority": "rt", "profile_key": "nope"}]}
    assert score_daemon(table, key, "be", "s", status).score == UNKNOWN
    with pytest.raises(ReefError, match="at least one daemon"):
        place(key, [], interference=table)
    with pytest.raises(ReefError, match="priority"):
        place(key, ["s"], priority="urgent", interference=table)
