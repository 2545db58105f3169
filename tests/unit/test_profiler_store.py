"""The profile store: schema and migrations, the write and read API, concurrent
readers beside a writer, and the statistics rows carry. No torch model runs."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from reefd.profiler.migrations import SCHEMA_VERSION
from reefd.profiler.records import (
    CallFacts,
    CallProfile,
    Environment,
    GpuReadings,
    ModelIdentity,
    PairProfile,
    TaskProfile,
)
from reefd.profiler.stats import Stats, ratio_of_medians
from reefd.profiler.store import Store, StoreError, default_db_path

ENV = Environment(
    backend="cpu",
    device_name="Test CPU",
    torch_version="2.x",
    reefd_version="0.1.0",
    python_version="3.11",
    hostname="host",
    cpu_model="Test CPU",
    cpu_count=2,
    torch_threads=1,
    resources_arch="sm_90",
)
MODEL = ModelIdentity("ab" * 32, "tiny", "zoo:tiny", {"image": 32})
OTHER = ModelIdentity("cd" * 32, "other", "zoo:other", {})


def _task(
    model: ModelIdentity = MODEL, batch: int = 1, n_calls: int = 3
) -> TaskProfile:
    calls = tuple(
        CallProfile(
            CallFacts(
                call_index=i,
                kernel="add",
                variant="add_body",
                form="plain",
                params={"numel": 1024 * (i + 1), "act": "none"},
                n_vb=i + 1,
                flops=1024,
                bytes_moved=12288,
                registers=19,
                smem_bytes=0,
                ctas_per_sm=8,
            ),
            Stats.of([10.0 + i, 11.0 + i, 12.0 + i]),
        )
        for i in range(n_calls)
    )
    return TaskProfile(
        model=model,
        batch=batch,
        graph_key=f"{model.model_key[:8]}-b{batch}",
        duration=Stats.of([40.0, 42.0, 41.0]),
        samples_us=(40.0, 42.0, 41.0),
        calls=calls,
        warmup=1,
        weight_bytes=100,
        scratch_bytes=200,
        gpu=GpuReadings(sm_clock_mhz=1980, power_w=300.5),
    )


def _pair() -> PairProfile:
    rt_alone, rt_together = [10.0, 11.0, 10.5], [13.0, 12.5, 13.5]
    be_alone, be_together = [20.0, 21.0], [30.0, 31.0]
    return PairProfile(
        rt=MODEL,
        rt_batch=1,
        be=OTHER,
        be_batch=8,
        method="cpu threads",
        rt_alone=Stats.of(rt_alone),
        rt_together=Stats.of(rt_together),
        be_alone=Stats.of(be_alone),
        be_together=Stats.of(be_together),
        rt_slowdown=ratio_of_medians(rt_together, rt_alone),
        be_slowdown=ratio_of_medians(be_together, be_alone),
        samples_us={"rt_alone": tuple(rt_alone), "rt_together": tuple(rt_together)},
    )


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def test_stats_and_ratio() -> None:
    s = Stats.of([3.0, 1.0, 2.0, 4.0, 100.0])
    assert (s.n, s.median_us, s.min_us, s.max_us) == (5, 3.0, 1.0, 100.0)
    assert s.p10_us < s.median_us < s.p90_us
    one = Stats.of([5.0])
    assert one.stdev_us == 0.0 and one.p10_us == one.p90_us == 5.0
    r = ratio_of_medians([12.0, 13.0, 12.5], [10.0, 10.0, 10.5])
    assert r.value == pytest.approx(1.25)
    assert r.low <= r.value <= r.high
    assert r == ratio_of_medians([12.0, 13.0, 12.5], [10.0, 10.0, 10.5])  # seeded
    with pytest.raises(ValueError):
        Stats.of([])


def test_fresh_store_is_current_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "p.sqlite"
    with Store.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.counts() == dict.fromkeys(
            ("runs", "models", "tasks", "calls", "pairs"), 0
        )
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [r[0] for r in db.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_write_then_read_api(tmp_path: Path) -> None:
    with Store.open(tmp_path / "p.sqlite") as store:
        run = store.begin_run(ENV, command="reef-profile run", warmup=1, repeat=3)
        store.add_task(run, _task(batch=1))
        store.add_task(run, _task(batch=8, n_calls=2))
        store.add_pair(run, _pair())
        store.finish_run(run)

        call = store.call_profile(MODEL.model_key, 1, 2)
        assert call is not None
        assert call.facts.kernel == "add" and call.facts.n_vb == 3
        assert call.facts.params == {"numel": 3072, "act": "none"}
        assert call.duration.median_us == 13.0
        assert store.call_profile("tiny", 1, 2) == call  # by human name
        assert store.call_profile(MODEL.model_key[:8], 1, 2) == call  # key prefix
        assert store.call_profile(MODEL.model_key, 1, 2, backend="cuda") is None
        assert store.call_profile(MODEL.model_key, 2, 0) is None
        assert store.call_profile("nobody", 1, 0) is None

        task = store.task_profile("tiny", 8)
        assert task is not None and len(task.calls) == 2
        assert task.model == MODEL and task.samples_us == (40.0, 42.0, 41.0)
        assert task.gpu.sm_clock_mhz == 1980 and task.gpu.dram_bw_util_pct is None
        assert store.find_graph(task.graph_key) == (MODEL.model_key, 8)

        pair = store.pair_slowdown("tiny", "other")
        assert pair is not None
        assert pair.rt_slowdown.value == pytest.approx(13.0 / 10.5)
        assert pair.be_batch == 8 and pair.be == OTHER
        assert store.pair_slowdown("tiny", "other", be_batch=1) is None
        assert store.pair_slowdown("other", "tiny") is None

        columns, rows = store.rows("calls", "tiny")
        assert len(rows) == 5
        assert {"backend", "device_name", "torch_version", "cpu_model"} <= set(columns)


def test_latest_measurement_wins(tmp_path: Path) -> None:
    with Store.open(tmp_path / "p.sqlite") as store:
        run = store.begin_run(ENV, command="x", warmup=1, repeat=3)
        store.add_task(run, _task())
        newer = _task()
        newer = TaskProfile(**{**vars(newer), "duration": Stats.of([99.0])})
        store.add_task(run, newer)
        found = store.task_profile("tiny", 1)
        assert found is not None and found.duration.median_us == 99.0


V1_SQL = """
CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
INSERT INTO schema_version VALUES (1, '2025-01-01T00:00:00+00:00');
CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
  backend TEXT NOT NULL, device_name TEXT NOT NULL, driver_version TEXT,
  cuda_version TEXT, torch_version TEXT NOT NULL, reefd_version TEXT NOT NULL,
  python_version TEXT NOT NULL, hostname TEXT NOT NULL, cpu_model TEXT NOT NULL,
  cpu_count INTEGER NOT NULL, torch_threads INTEGER NOT NULL, resources_arch TEXT,
  warmup INTEGER NOT NULL, repeat INTEGER NOT NULL, command TEXT NOT NULL,
  note TEXT NOT NULL DEFAULT '');
CREATE TABLE models (model_key TEXT PRIMARY KEY, name TEXT NOT NULL,
  source TEXT NOT NULL, overrides TEXT NOT NULL DEFAULT '{}',
  first_seen TEXT NOT NULL);
CREATE INDEX models_name ON models(name);
CREATE TABLE tasks (id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  model_key TEXT NOT NULL REFERENCES models(model_key), batch INTEGER NOT NULL,
  graph_key TEXT NOT NULL, n_calls INTEGER NOT NULL, measured_at TEXT NOT NULL,
  warmup INTEGER NOT NULL, n INTEGER NOT NULL, median_us REAL NOT NULL,
  mean_us REAL NOT NULL, stdev_us REAL NOT NULL, min_us REAL NOT NULL,
  p10_us REAL NOT NULL, p90_us REAL NOT NULL, max_us REAL NOT NULL,
  samples_us TEXT NOT NULL, flops INTEGER NOT NULL, bytes_moved INTEGER NOT NULL,
  weight_bytes INTEGER NOT NULL, scratch_bytes INTEGER NOT NULL);
CREATE INDEX tasks_model ON tasks(model_key, batch);
CREATE INDEX tasks_graph ON tasks(graph_key);
CREATE TABLE calls (id INTEGER PRIMARY KEY,
  task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
  call_index INTEGER NOT NULL, kernel TEXT NOT NULL, variant TEXT NOT NULL,
  params TEXT NOT NULL, n_vb INTEGER NOT NULL, ctas_per_sm INTEGER,
  registers INTEGER, smem_bytes INTEGER, flops INTEGER NOT NULL,
  bytes_moved INTEGER NOT NULL, n INTEGER NOT NULL, median_us REAL NOT NULL,
  mean_us REAL NOT NULL, stdev_us REAL NOT NULL, min_us REAL NOT NULL,
  p10_us REAL NOT NULL, p90_us REAL NOT NULL, max_us REAL NOT NULL,
  UNIQUE (task_id, call_index));
INSERT INTO runs VALUES (1, '2025-01-01T00:00:00+00:00', NULL, 'cpu', 'Old CPU',
  NULL, NULL, '2.6', '0.0.9', '3.11', 'oldhost', 'Old CPU', 4, 1, 'sm_90', 2, 5,
  'reef-profile run --zoo tiny', 'v1 row');
INSERT INTO models VALUES ('k1', 'tiny', 'zoo:tiny', '{}',
  '2025-01-01T00:00:00+00:00');
INSERT INTO tasks VALUES (1, 1, 'k1', 4, 'g4', 1, '2025-01-01T00:00:00+00:00', 2,
  5, 500.0, 510.0, 5.0, 490.0, 495.0, 520.0, 530.0, '[500.0]', 1000, 2000, 30, 40);
INSERT INTO calls VALUES (1, 1, 0, 'relu', 'relu_body', '{"numel": 4096}', 4,
  8, 16, 0, 4096, 32768, 5, 7.5, 7.6, 0.1, 7.0, 7.1, 8.0, 8.2);
"""


def test_opening_a_v1_file_migrates_it_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(V1_SQL)
    db.close()

    with Store.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 2
        call = store.call_profile("tiny", 4, 0)
        assert call is not None
        assert call.facts.kernel == "relu" and call.facts.form == "plain"
        assert call.duration.median_us == 7.5 and call.facts.registers == 16
        task = store.task_profile("k1", 4)
        assert task is not None and task.gpu == GpuReadings()
        assert store.find_graph("g4") == ("k1", 4)
        _, rows = store.rows("tasks")
        assert [(r["model"], r["device_name"]) for r in rows] == [("tiny", "Old CPU")]
        # v2 can be written to at once: a pair beside the migrated task
        run = store.begin_run(ENV, command="x", warmup=1, repeat=3)
        store.add_pair(run, _pair())
        assert store.counts()["pairs"] == 1

    db = sqlite3.connect(path)
    assert {"sm_clock_mhz", "dram_bw_util_pct"} <= _columns(db, "tasks")
    assert "form" in _columns(db, "calls")
    assert {"nvml_version", "power_limit_w"} <= _columns(db, "runs")
    assert "rt_slowdown" in _columns(db, "pairs")
    run = db.execute("SELECT note, sm_count FROM runs WHERE id = 1").fetchone()
    assert run == ("v1 row", None)
    versions = [r[0] for r in db.execute("SELECT version FROM schema_version")]
    assert versions == [1, 2]


def test_newer_or_foreign_files_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    Store.open(newer).close()
    db = sqlite3.connect(newer)
    db.execute("INSERT INTO schema_version VALUES (99, 'later')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="v99, written by a newer reefd"):
        Store.open(newer)

    foreign = tmp_path / "foreign.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a reefd profile store"):
        Store.open(foreign)

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable profile store"):
        Store.open(garbage)

    with pytest.raises(StoreError, match="no profile store at"):
        Store.open(tmp_path / "missing.sqlite", create=False)


def test_readers_see_whole_tasks_while_a_writer_writes(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    Store.open(path).close()
    tasks, calls_per_task = 40, 25
    writing = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[tuple[int, int]] = []

    def writer() -> None:
        try:
            with Store.open(path) as store:
                run = store.begin_run(ENV, command="w", warmup=1, repeat=3)
                writing.set()
                for i in range(tasks):
                    model = ModelIdentity(f"{i:064x}", f"m{i}", "zoo:m", {})
                    store.add_task(run, _task(model, n_calls=calls_per_task))
                    time.sleep(0.005)  # leave the reader time to read in between
        except BaseException as exc:
            errors.append(exc)
        finally:
            writing.set()
            done.set()

    def reader() -> None:
        try:
            writing.wait(10)
            with Store.open(path) as store:
                while not done.is_set():
                    counts = store.counts()
                    seen.append((counts["tasks"], counts["calls"]))
                    store.rows("tasks")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert seen, "the reader never read"
    assert all(c == t * calls_per_task for t, c in seen)  # never half a task
    assert any(0 < t < tasks for t, _ in seen), "no read while writing"
    with Store.open(path) as store:
        assert store.counts()["tasks"] == tasks


def test_default_path_is_in_the_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert default_db_path() == tmp_path / "state" / "profiles.sqlite"
