"""The profile store: SQLite in the state directory (`profiles.sqlite`).

Owns opening a store (creating it, or migrating an older file to the current
schema: see migrations.py) and writing what the profiler measured (one run row,
then each task with its calls, each pair, every write one short transaction).
The read API the scheduler, simulator and `reef-profile show/export` use is
inherited from reads.py.

The file is in WAL mode, so readers read while the profiler writes; a reader
sees whole tasks only (a task and its calls commit together). A model is named
by `model_key`, the content hash of its graph at batch 1 (identity.py); the
read API also accepts a model's human name, and then answers from the most
recent measurement of any model with that name.

Imports the standard library, reefd.config, reefd.errors and this package's
records, stats, reads and migrations; no torch.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reefd.config import DaemonConfig
from reefd.errors import ReefError
from reefd.profiler.migrations import MIGRATIONS, SCHEMA_VERSION
from reefd.profiler.reads import VIEWS, StoreReads, marks
from reefd.profiler.records import (
    Environment,
    ModelIdentity,
    PairProfile,
    TaskProfile,
    utc_now,
)
from reefd.profiler.stats import STATS_FIELDS, Stats

__all__ = ["VIEWS", "Store", "StoreError", "default_db_path"]

DB_NAME = "profiles.sqlite"
BUSY_TIMEOUT_S = 30.0
"""How long a statement waits for another connection's write lock."""


class StoreError(ReefError):
    """The profile store cannot be opened, read or written."""

    code = "store"


def default_db_path() -> Path:
    """`profiles.sqlite` in the daemon's state directory (reefd.config)."""
    return DaemonConfig().resolved_state_dir() / DB_NAME


def _stats_values(stats: Stats) -> tuple[Any, ...]:
    return tuple(getattr(stats, f) for f in STATS_FIELDS)


def _stats_columns(prefix: str = "") -> str:
    return ", ".join(f"{prefix}{f}" for f in STATS_FIELDS)


class Store(StoreReads):
    """One connection to a profile store. Not shared between threads."""

    # --- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = True) -> Store:
        """Open (or create) the store at `path` (default: the state directory),
        migrating an older schema to the current one."""
        path = Path(path) if path is not None else default_db_path()
        if not path.exists():
            if not create:
                raise StoreError(
                    f"no profile store at {path} (run `reef-profile run` first, or "
                    "pass --db PATH)"
                )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {path.parent}: {exc}") from None
        try:
            db = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        db.row_factory = sqlite3.Row
        store = cls(db, path)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            store._migrate()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"{path} is not a usable profile store: {exc}") from None
        except BaseException:
            db.close()
            raise
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._transaction(write=True) as db:
            tables = {
                r[0]
                for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if tables and "schema_version" not in tables:
                raise StoreError(
                    f"{self.path} is an SQLite file but not a reefd profile store "
                    f"(tables {sorted(tables)}, no schema_version)"
                )
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = self._version(db)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema v{current}, written by a newer reefd; "
                    f"this one reads up to v{SCHEMA_VERSION}"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version - 1](db)
                db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, utc_now()),
                )

    @staticmethod
    def _version(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def schema_version(self) -> int:
        return self._version(self._db)

    # --- writing ---------------------------------------------------------------

    def begin_run(
        self,
        env: Environment,
        *,
        command: str,
        warmup: int,
        repeat: int,
        note: str = "",
    ) -> int:
        """Record a profiling session's environment; returns its run id."""
        values = {
            **asdict(env),
            "started_at": utc_now(),
            "warmup": warmup,
            "repeat": repeat,
            "command": command,
            "note": note,
        }
        with self._transaction(write=True) as db:
            cur = db.execute(
                f"INSERT INTO runs ({', '.join(values)}) VALUES ({marks(len(values))})",
                tuple(values.values()),
            )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int) -> None:
        with self._transaction(write=True) as db:
            db.execute(
                "UPDATE runs SET finished_at = ? WHERE id = ?", (utc_now(), run_id)
            )

    @staticmethod
    def _add_model(db: sqlite3.Connection, model: ModelIdentity) -> None:
        db.execute(
            "INSERT OR IGNORE INTO models (model_key, name, source, overrides, "
            "first_seen) VALUES (?, ?, ?, ?, ?)",
            (
                model.model_key,
                model.name,
                model.source,
                json.dumps(dict(model.overrides), sort_keys=True),
                utc_now(),
            ),
        )

    def add_task(self, run_id: int, task: TaskProfile) -> int:
        """Store one task and all its calls (one transaction); returns its id."""
        gpu = task.gpu
        with self._transaction(write=True) as db:
            self._add_model(db, task.model)
            cur = db.execute(
                "INSERT INTO tasks (run_id, model_key, model_name, batch, graph_key, "
                f"n_calls, measured_at, warmup, {_stats_columns()}, samples_us, "
                "flops, bytes_moved, weight_bytes, scratch_bytes, sm_clock_mhz, "
                "mem_clock_mhz, power_w, sm_occupancy_pct, dram_bw_util_pct) "
                f"VALUES ({marks(8 + len(STATS_FIELDS) + 10)})",
                (
                    run_id,
                    task.model.model_key,
                    task.model.name,
                    task.batch,
                    task.graph_key,
                    len(task.calls),
                    task.measured_at or utc_now(),
                    task.warmup,
                    *_stats_values(task.duration),
                    json.dumps([round(x, 3) for x in task.samples_us]),
                    task.flops,
                    task.bytes_moved,
                    task.weight_bytes,
                    task.scratch_bytes,
                    gpu.sm_clock_mhz,
                    gpu.mem_clock_mhz,
                    gpu.power_w,
                    gpu.sm_occupancy_pct,
                    gpu.dram_bw_util_pct,
                ),
            )
            task_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO calls (task_id, call_index, kernel, variant, form, "
                "params, n_vb, ctas_per_sm, registers, smem_bytes, flops, "
                f"bytes_moved, {_stats_columns()}) VALUES "
                f"({marks(12 + len(STATS_FIELDS))})",
                [
                    (
                        task_id,
                        c.facts.call_index,
                        c.facts.kernel,
                        c.facts.variant,
                        c.facts.form,
                        c.facts.params_json,
                        c.facts.n_vb,
                        c.facts.ctas_per_sm,
                        c.facts.registers,
                        c.facts.smem_bytes,
                        c.facts.flops,
                        c.facts.bytes_moved,
                        *_stats_values(c.duration),
                    )
                    for c in task.calls
                ],
            )
        return task_id

    def add_pair(self, run_id: int, pair: PairProfile) -> int:
        """Store one co-run measurement; returns its id."""
        sides = ("rt_alone", "rt_together", "be_alone", "be_together")
        stats = [getattr(pair, side) for side in sides]
        columns = ", ".join(_stats_columns(f"{side}_") for side in sides)
        with self._transaction(write=True) as db:
            self._add_model(db, pair.rt)
            self._add_model(db, pair.be)
            cur = db.execute(
                "INSERT INTO pairs (run_id, rt_model_key, rt_name, rt_batch, "
                f"be_model_key, be_name, be_batch, method, measured_at, {columns}, "
                "rt_slowdown, rt_slowdown_low, rt_slowdown_high, be_slowdown, "
                "be_slowdown_low, be_slowdown_high, samples_us) VALUES "
                f"({marks(9 + 4 * len(STATS_FIELDS) + 7)})",
                (
                    run_id,
                    pair.rt.model_key,
                    pair.rt.name,
                    pair.rt_batch,
                    pair.be.model_key,
                    pair.be.name,
                    pair.be_batch,
                    pair.method,
                    pair.measured_at or utc_now(),
                    *(v for s in stats for v in _stats_values(s)),
                    pair.rt_slowdown.value,
                    pair.rt_slowdown.low,
                    pair.rt_slowdown.high,
                    pair.be_slowdown.value,
                    pair.be_slowdown.low,
                    pair.be_slowdown.high,
                    json.dumps(
                        {
                            k: [round(x, 3) for x in v]
                            for k, v in pair.samples_us.items()
                        }
                    ),
                ),
            )
        return int(cur.lastrowid or 0)
