"""Reading the profile store: the API the scheduler and simulator use, and
the tagged rows `show` and `export` print.

Owns every query of a store file (Store inherits this class; store.py owns
opening, migrating and writing): the latest solo measurement of a call or a
task, the latest co-run of a pair, which model a graph the daemon holds is, and
the views that tag each row with its run's environment. Models are looked up
by content key, key prefix (6 characters or more) or any name they were
measured under. Every multi-statement read is one transaction, so it sees one
snapshot even while the profiler writes.

Imports the standard library and this package's records and stats only.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reefd.profiler.records import (
    CallFacts,
    CallProfile,
    GpuReadings,
    ModelIdentity,
    PairProfile,
    TaskProfile,
)
from reefd.profiler.stats import STATS_FIELDS, Ratio, Stats

VIEWS = {"tasks": "task_rows", "calls": "call_rows", "pairs": "pair_rows"}
"""What `export` can write: table name -> the view that tags each row."""


def stats_of(row: sqlite3.Row, prefix: str = "") -> Stats:
    """The Stats stored in `row`'s columns `<prefix>n`, `<prefix>median_us`..."""
    return Stats(**{f: row[f"{prefix}{f}"] for f in STATS_FIELDS})


def marks(n: int) -> str:
    """`n` SQL parameter marks: '?, ?, ?'."""
    return ", ".join("?" * n)


class StoreReads:
    """The read side of a store connection (see Store for opening one)."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @contextlib.contextmanager
    def _transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction: IMMEDIATE for writes (takes the write lock at once,
        so it cannot fail half-way on a lock), DEFERRED for consistent reads."""
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def model_keys(self, model: str) -> list[str]:
        """Keys of the models measured under the name `model`, or whose key is
        or starts with it (a prefix of at least 6 characters)."""
        rows = self._db.execute(
            "SELECT model_key FROM models WHERE name = ?1 OR model_key = ?1 "
            "OR (length(?1) >= 6 AND model_key LIKE ?1 || '%') "
            "UNION SELECT model_key FROM tasks WHERE model_name = ?1 "
            "UNION SELECT rt_model_key FROM pairs WHERE rt_name = ?1 "
            "UNION SELECT be_model_key FROM pairs WHERE be_name = ?1",
            (model,),
        ).fetchall()
        return sorted(r[0] for r in rows)

    def _model(
        self, db: sqlite3.Connection, key: str, name: str | None = None
    ) -> ModelIdentity:
        """The model with this key, under `name` if given (else its first)."""
        row = db.execute("SELECT * FROM models WHERE model_key = ?", (key,)).fetchone()
        return ModelIdentity(
            row["model_key"],
            name or row["name"],
            row["source"],
            json.loads(row["overrides"]),
        )

    def _latest_task(
        self, db: sqlite3.Connection, model: str, batch: int, backend: str | None
    ) -> sqlite3.Row | None:
        keys = self.model_keys(model)
        if not keys:
            return None
        where = f"t.model_key IN ({marks(len(keys))}) AND t.batch = ?"
        args: list[Any] = [*keys, batch]
        if backend is not None:
            where += " AND r.backend = ?"
            args.append(backend)
        return db.execute(
            f"SELECT t.* FROM tasks t JOIN runs r ON r.id = t.run_id WHERE {where} "
            "ORDER BY t.id DESC LIMIT 1",
            args,
        ).fetchone()

    @staticmethod
    def _call(row: sqlite3.Row) -> CallProfile:
        facts = CallFacts(
            call_index=row["call_index"],
            kernel=row["kernel"],
            variant=row["variant"],
            form=row["form"],
            params=json.loads(row["params"]),
            n_vb=row["n_vb"],
            flops=row["flops"],
            bytes_moved=row["bytes_moved"],
            registers=row["registers"],
            smem_bytes=row["smem_bytes"],
            ctas_per_sm=row["ctas_per_sm"],
        )
        return CallProfile(facts, stats_of(row))

    def call_profile(
        self, model: str, batch: int, call_index: int, *, backend: str | None = None
    ) -> CallProfile | None:
        """Call `call_index` of the latest solo measurement of `model` (key or
        name) at `batch` (on `backend` if given); None if never measured."""
        with self._transaction() as db:
            task = self._latest_task(db, model, batch, backend)
            if task is None:
                return None
            row = db.execute(
                "SELECT * FROM calls WHERE task_id = ? AND call_index = ?",
                (task["id"], call_index),
            ).fetchone()
        return None if row is None else self._call(row)

    def task_profile(
        self, model: str, batch: int, *, backend: str | None = None
    ) -> TaskProfile | None:
        """The latest solo measurement of `model` at `batch`, calls included."""
        with self._transaction() as db:
            row = self._latest_task(db, model, batch, backend)
            return None if row is None else self._task(db, row)

    def latest_tasks(self, backend: str, device_name: str) -> list[TaskProfile]:
        """The latest solo measurement of every (model, batch) measured on this
        backend and device, calls included, read in one snapshot (what the
        interference model's features come from)."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM tasks WHERE id IN (SELECT max(t.id) FROM tasks t "
                "JOIN runs r ON r.id = t.run_id WHERE r.backend = ? AND "
                "r.device_name = ? GROUP BY t.model_key, t.batch) ORDER BY id",
                (backend, device_name),
            ).fetchall()
            return [self._task(db, row) for row in rows]

    def _task(self, db: sqlite3.Connection, row: sqlite3.Row) -> TaskProfile:
        """The TaskProfile of a tasks row, with its calls."""
        calls = db.execute(
            "SELECT * FROM calls WHERE task_id = ? ORDER BY call_index",
            (row["id"],),
        ).fetchall()
        identity = self._model(db, row["model_key"], row["model_name"])
        return TaskProfile(
            model=identity,
            batch=row["batch"],
            graph_key=row["graph_key"],
            duration=stats_of(row),
            samples_us=tuple(json.loads(row["samples_us"])),
            calls=tuple(self._call(c) for c in calls),
            warmup=row["warmup"],
            weight_bytes=row["weight_bytes"],
            scratch_bytes=row["scratch_bytes"],
            gpu=GpuReadings(
                row["sm_clock_mhz"],
                row["mem_clock_mhz"],
                row["power_w"],
                row["sm_occupancy_pct"],
                row["dram_bw_util_pct"],
            ),
            measured_at=row["measured_at"],
        )

    def pair_slowdown(
        self,
        rt: str,
        be: str,
        *,
        rt_batch: int | None = None,
        be_batch: int | None = None,
        backend: str | None = None,
    ) -> PairProfile | None:
        """The latest co-run of RT model `rt` beside BE model `be` (keys or
        names); None if that pair was never measured."""
        rt_keys, be_keys = self.model_keys(rt), self.model_keys(be)
        if not rt_keys or not be_keys:
            return None
        where = (
            f"p.rt_model_key IN ({marks(len(rt_keys))}) "
            f"AND p.be_model_key IN ({marks(len(be_keys))})"
        )
        args: list[Any] = [*rt_keys, *be_keys]
        for column, value in (
            ("p.rt_batch", rt_batch),
            ("p.be_batch", be_batch),
            ("r.backend", backend),
        ):
            if value is not None:
                where += f" AND {column} = ?"
                args.append(value)
        with self._transaction() as db:
            row = db.execute(
                f"SELECT p.* FROM pairs p JOIN runs r ON r.id = p.run_id WHERE {where} "
                "ORDER BY p.id DESC LIMIT 1",
                args,
            ).fetchone()
            if row is None:
                return None
            rt_model = self._model(db, row["rt_model_key"], row["rt_name"])
            be_model = self._model(db, row["be_model_key"], row["be_name"])
        samples = json.loads(row["samples_us"])
        return PairProfile(
            rt=rt_model,
            rt_batch=row["rt_batch"],
            be=be_model,
            be_batch=row["be_batch"],
            method=row["method"],
            rt_alone=stats_of(row, "rt_alone_"),
            rt_together=stats_of(row, "rt_together_"),
            be_alone=stats_of(row, "be_alone_"),
            be_together=stats_of(row, "be_together_"),
            rt_slowdown=Ratio(
                row["rt_slowdown"], row["rt_slowdown_low"], row["rt_slowdown_high"]
            ),
            be_slowdown=Ratio(
                row["be_slowdown"], row["be_slowdown_low"], row["be_slowdown_high"]
            ),
            samples_us={k: tuple(v) for k, v in samples.items()},
            measured_at=row["measured_at"],
        )

    def find_graph(self, graph_key: str) -> tuple[str, int] | None:
        """(model_key, batch) of a graph the daemon holds, if it was profiled."""
        row = self._db.execute(
            "SELECT model_key, batch FROM tasks WHERE graph_key = ? "
            "ORDER BY id DESC LIMIT 1",
            (graph_key,),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    # --- reading: rows for show and export ----------------------------------------

    def rows(
        self, table: str, model: str | None = None, task_id: int | None = None
    ) -> tuple[list[str], list[sqlite3.Row]]:
        """(column names, rows) of a tagged view: 'tasks', 'calls' or 'pairs',
        limited to one model (key or name) or one task if asked."""
        view = VIEWS[table]
        where, args = "", []
        if model is not None:
            keys = self.model_keys(model) or [""]
            in_keys = f"IN ({marks(len(keys))})"
            if table == "pairs":
                where = f" WHERE rt_model_key {in_keys} OR be_model_key {in_keys}"
                args = [*keys, *keys]
            else:
                where = f" WHERE model_key {in_keys}"
                args = list(keys)
        if task_id is not None:
            where += (" AND" if where else " WHERE") + " task_id = ?"
            args.append(task_id)
        order = {"tasks": "task_id", "calls": "task_id, call_index", "pairs": "pair_id"}
        cur = self._db.execute(
            f"SELECT * FROM {view}{where} ORDER BY {order[table]}", args
        )
        columns = [d[0] for d in cur.description]
        return columns, cur.fetchall()

    def counts(self) -> dict[str, int]:
        """Rows per table, read in one snapshot."""
        names: Sequence[str] = ("runs", "models", "tasks", "calls", "pairs")
        sql = ", ".join(f"(SELECT count(*) FROM {n})" for n in names)
        row = self._db.execute(f"SELECT {sql}").fetchone()
        return dict(zip(names, (int(v) for v in row), strict=True))
