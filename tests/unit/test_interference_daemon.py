"""The interference model in the daemon: loading it, and the reef policy's
padding choice following its predictions (real models trained on the cpu
profiles the pipeline tests measure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reefd.errors import ConfigError
from reefd.interference.daemon import load_hook
from reefd.interference.model import InterferenceModel
from reefd.interference.train import MODEL_NAME, ModelFile
from reefd.scheduler.padding import CallCost, DeviceShape
from reefd.scheduler.reef import ReefPolicy
from reefd.scheduler.scheduler import Scheduler
from reefd.scheduler.task import Priority, Task
from tests.unit.test_interference_pipeline import data, db  # noqa: F401 (fixtures)

SHAPE = DeviceShape(sms=4, ctas_per_sm=lambda registers, smem: 8)
"""A toy GPU: every call fits beside every other."""


def test_off_missing_and_bad_settings(tmp_path: Path) -> None:
    assert load_hook("off", tmp_path) == (None, "interference model: off")
    hook, note = load_hook("", tmp_path)
    assert hook is None and "reef-profile train" in note
    with pytest.raises(ConfigError, match="no such file"):
        load_hook(str(tmp_path / "nope.joblib"), tmp_path)


def _task(task_id: int, priority: Priority, key: str, arrival_us: int = 0) -> Task:
    return Task(
        task_id=task_id,
        client_id=task_id,
        model_id=task_id,
        priority=priority,
        n_calls=8,
        arrival_us=arrival_us,
        deadline_us=10**9 if priority is Priority.RT else None,
        profile_key=key,
        costs=(CallCost(n_vb=4, registers=32, smem_bytes=0, vb_us=10.0),) * 8,
    )


def test_reef_pads_in_the_order_the_model_predicts(
    data,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    ModelFile.train(data).save(tmp_path / MODEL_NAME)
    hook, note = load_hook("", tmp_path)
    assert hook is not None and f"{len(data.tasks)} tasks known" in note
    table = InterferenceModel.load(tmp_path / MODEL_NAME)
    rt_key = data.rows[0].rt_key
    partners = [k for k in table.task_keys if table.lookup(rt_key, k) is not None]
    assert len(partners) >= 2

    # BE tasks arrive worst predicted first: without the model, reef would pad
    # in arrival order, so the padding order shows whose ranking it follows
    predicted = {key: table.predict_rt_slowdown(rt_key, key) for key in partners}
    assert len(set(predicted.values())) > 1
    arrival = sorted(partners, key=lambda key: -predicted[key])
    s = Scheduler(ReefPolicy(SHAPE, interference=hook), be_inflight_cap=2)
    for i, key in enumerate(arrival):
        s.submit(_task(10 + i, Priority.BE, key, i), i)
    s.submit(_task(1, Priority.RT, rt_key, len(arrival)), len(arrival))
    padded = [x.pad.task_id for x in s.plan(len(arrival)).launches if x.pad]
    want = sorted(range(len(arrival)), key=lambda i: (predicted[arrival[i]], i))
    assert padded == [10 + i for i in want[: ReefPolicy.pad_candidates]]
    assert hook(_task(1, Priority.RT, rt_key), _task(2, Priority.BE, "x")) is None
