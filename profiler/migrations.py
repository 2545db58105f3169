"""The profile store's schema, as a list of migrations (oldest first).

Owns the SQL layout of `profiles.sqlite`. `MIGRATIONS[i]` takes a database at
version i to version i + 1; the store applies the missing ones in one
transaction when it opens a file and records each in `schema_version`. A
released migration is never edited: a change of layout is a new function at
the end of the list (SQLite DDL is transactional, so a failed migration leaves
the file as it was).

- v1: runs (one profiling session and its environment), models (content hash
  of the graph at batch 1 plus a human name), tasks (solo task durations per
  model and batch), calls (per call index: kernel, variant, params, blocks,
  resources, FLOPs, bytes, solo durations).
- v2: GPU facts on runs (NVML version, SMs, max clocks, power limit), GPU
  readings on tasks (clocks, power, GPM SM occupancy and DRAM bandwidth), the
  name a task was measured under (one graph may be profiled under several
  names; v1 rows keep their model's name), the entry-point form on calls,
  the pairs table (co-run slowdowns), and the views task_rows, call_rows and
  pair_rows, which tag every row with its run's environment (what `export`
  writes).

Imports the standard library only; no SQL outside this module changes the
schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]

_STATS_V1 = (
    ("n", "INTEGER NOT NULL"),
    ("median_us", "REAL NOT NULL"),
    ("mean_us", "REAL NOT NULL"),
    ("stdev_us", "REAL NOT NULL"),
    ("min_us", "REAL NOT NULL"),
    ("p10_us", "REAL NOT NULL"),
    ("p90_us", "REAL NOT NULL"),
    ("max_us", "REAL NOT NULL"),
)
"""The columns a Stats occupies (frozen here: migrations never change)."""


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Execute each statement of `script` inside the caller's transaction.

    (`Connection.executescript` would COMMIT a pending transaction first.)
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement: {statement.strip()[:80]!r}")


def _stats(prefix: str = "") -> str:
    return ",\n  ".join(f"{prefix}{name} {kind}" for name, kind in _STATS_V1)


def _v1(db: sqlite3.Connection) -> None:
    run_script(
        db,
        f"""
CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  backend TEXT NOT NULL,
  device_name TEXT NOT NULL,
  driver_version TEXT,
  cuda_version TEXT,
  torch_version TEXT NOT NULL,
  reefd_version TEXT NOT NULL,
  python_version TEXT NOT NULL,
  hostname TEXT NOT NULL,
  cpu_model TEXT NOT NULL,
  cpu_count INTEGER NOT NULL,
  torch_threads INTEGER NOT NULL,
  resources_arch TEXT,
  warmup INTEGER NOT NULL,
  repeat INTEGER NOT NULL,
  command TEXT NOT NULL,
  note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE models (
  model_key TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  source TEXT NOT NULL,
  overrides TEXT NOT NULL DEFAULT '{{}}',
  first_seen TEXT NOT NULL
);
CREATE INDEX models_name ON models(name);
CREATE TABLE tasks (
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  model_key TEXT NOT NULL REFERENCES models(model_key),
  batch INTEGER NOT NULL,
  graph_key TEXT NOT NULL,
  n_calls INTEGER NOT NULL,
  measured_at TEXT NOT NULL,
  warmup INTEGER NOT NULL,
  {_stats()},
  samples_us TEXT NOT NULL,
  flops INTEGER NOT NULL,
  bytes_moved INTEGER NOT NULL,
  weight_bytes INTEGER NOT NULL,
  scratch_bytes INTEGER NOT NULL
);
CREATE INDEX tasks_model ON tasks(model_key, batch);
CREATE INDEX tasks_graph ON tasks(graph_key);
CREATE TABLE calls (
  id INTEGER PRIMARY KEY,
  task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
  call_index INTEGER NOT NULL,
  kernel TEXT NOT NULL,
  variant TEXT NOT NULL,
  params TEXT NOT NULL,
  n_vb INTEGER NOT NULL,
  ctas_per_sm INTEGER,
  registers INTEGER,
  smem_bytes INTEGER,
  flops INTEGER NOT NULL,
  bytes_moved INTEGER NOT NULL,
  {_stats()},
  UNIQUE (task_id, call_index)
);
""",
    )


_ENV = (
    "backend",
    "device_name",
    "driver_version",
    "cuda_version",
    "torch_version",
    "reefd_version",
    "python_version",
    "hostname",
    "cpu_model",
    "cpu_count",
    "torch_threads",
    "resources_arch",
    "nvml_version",
    "sm_count",
    "sm_clock_max_mhz",
    "mem_clock_max_mhz",
    "power_limit_w",
)
"""Run columns every exported row carries (v2's views)."""
_GPU = ("sm_clock_mhz", "mem_clock_mhz", "power_w", "sm_occupancy_pct")
_GPU_ALL = (*_GPU, "dram_bw_util_pct")
_STAT_NAMES = tuple(name for name, _ in _STATS_V1)


def _env(alias: str) -> str:
    return ", ".join(f"{alias}.{c}" for c in _ENV)


def _cols(alias: str, names: tuple[str, ...], prefix: str = "") -> str:
    return ", ".join(f"{alias}.{prefix}{c}" for c in names)


def _v2(db: sqlite3.Connection) -> None:
    pair_stats = ",\n  ".join(
        _stats(f"{side}_")
        for side in ("rt_alone", "rt_together", "be_alone", "be_together")
    )
    run_script(
        db,
        f"""
ALTER TABLE runs ADD COLUMN nvml_version TEXT;
ALTER TABLE runs ADD COLUMN sm_count INTEGER;
ALTER TABLE runs ADD COLUMN sm_clock_max_mhz INTEGER;
ALTER TABLE runs ADD COLUMN mem_clock_max_mhz INTEGER;
ALTER TABLE runs ADD COLUMN power_limit_w REAL;
ALTER TABLE tasks ADD COLUMN sm_clock_mhz INTEGER;
ALTER TABLE tasks ADD COLUMN mem_clock_mhz INTEGER;
ALTER TABLE tasks ADD COLUMN power_w REAL;
ALTER TABLE tasks ADD COLUMN sm_occupancy_pct REAL;
ALTER TABLE tasks ADD COLUMN dram_bw_util_pct REAL;
ALTER TABLE tasks ADD COLUMN model_name TEXT;
CREATE INDEX tasks_model_name ON tasks(model_name);
ALTER TABLE calls ADD COLUMN form TEXT NOT NULL DEFAULT 'plain';
CREATE TABLE pairs (
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  rt_model_key TEXT NOT NULL REFERENCES models(model_key),
  rt_name TEXT NOT NULL,
  rt_batch INTEGER NOT NULL,
  be_model_key TEXT NOT NULL REFERENCES models(model_key),
  be_name TEXT NOT NULL,
  be_batch INTEGER NOT NULL,
  method TEXT NOT NULL,
  measured_at TEXT NOT NULL,
  {pair_stats},
  rt_slowdown REAL NOT NULL,
  rt_slowdown_low REAL NOT NULL,
  rt_slowdown_high REAL NOT NULL,
  be_slowdown REAL NOT NULL,
  be_slowdown_low REAL NOT NULL,
  be_slowdown_high REAL NOT NULL,
  samples_us TEXT NOT NULL
);
CREATE INDEX pairs_models ON pairs(rt_model_key, be_model_key);
CREATE VIEW task_rows AS
SELECT t.id AS task_id, coalesce(t.model_name, m.name) AS model, t.model_key,
  t.batch, t.graph_key, t.n_calls, t.measured_at, t.warmup, {_cols("t", _STAT_NAMES)},
  t.flops, t.bytes_moved, t.weight_bytes, t.scratch_bytes,
  {_cols("t", _GPU_ALL)},
  r.id AS run_id, r.started_at AS run_started_at, {_env("r")}
FROM tasks t JOIN models m ON m.model_key = t.model_key
JOIN runs r ON r.id = t.run_id;
CREATE VIEW call_rows AS
SELECT c.task_id, coalesce(t.model_name, m.name) AS model, t.model_key,
  t.batch, c.call_index, c.kernel, c.variant, c.form, c.params, c.n_vb,
  c.ctas_per_sm, c.registers, c.smem_bytes,
  c.flops, c.bytes_moved, {_cols("c", _STAT_NAMES)},
  t.measured_at, r.id AS run_id, {_env("r")}
FROM calls c JOIN tasks t ON t.id = c.task_id
JOIN models m ON m.model_key = t.model_key JOIN runs r ON r.id = t.run_id;
CREATE VIEW pair_rows AS
SELECT p.id AS pair_id, p.rt_name AS rt_model, p.rt_model_key, p.rt_batch,
  p.be_name AS be_model, p.be_model_key, p.be_batch, p.method, p.measured_at,
  p.rt_slowdown, p.rt_slowdown_low, p.rt_slowdown_high,
  p.be_slowdown, p.be_slowdown_low, p.be_slowdown_high,
  {_cols("p", _STAT_NAMES, "rt_alone_")}, {_cols("p", _STAT_NAMES, "rt_together_")},
  {_cols("p", _STAT_NAMES, "be_alone_")}, {_cols("p", _STAT_NAMES, "be_together_")},
  r.id AS run_id, {_env("r")}
FROM pairs p JOIN runs r ON r.id = p.run_id;
""",
    )


MIGRATIONS: tuple[Migration, ...] = (_v1, _v2)
SCHEMA_VERSION = len(MIGRATIONS)
"""The version this code writes and reads."""
