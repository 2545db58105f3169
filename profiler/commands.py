"""The `reef-profile` commands: what `run`, `pairs`, `show`, `export`, `train`
and `evaluate` do.

Owns each command's sequence once its arguments are parsed (cli.py parses):
validate every value before anything is built or measured, open the backend
and the store, measure target by target (each result stored as soon as it
exists), then print a summary table on stdout; progress and notes go to
stderr. Errors a user can cause are raised as ReefError subclasses for
`cli.main` to print in one line.

Imports the standard library and this package; torch and the backends load
inside `run` and `pairs` only, so `show` and `export` stay fast;
reefd.interference (scikit-learn) loads inside `train` and `evaluate` only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reefd.errors import ConfigError, ReefError, UnsupportedOp
from reefd.profiler.store import Store

if TYPE_CHECKING:
    from reefd.profiler.measure import Loaded, Settings
    from reefd.profiler.records import PairProfile, TaskProfile
    from reefd.profiler.runner import Backend
    from reefd.profiler.target import Target

PROG = "reef-profile"


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _quiet_log(message: str) -> None:
    pass


# --- run -----------------------------------------------------------------------------


def _targets(args: argparse.Namespace) -> list[Target]:
    from reefd.profiler.target import file_target, zoo_targets

    if args.model is not None:
        if args.override:
            raise ConfigError("--override applies to --zoo models only")
        return [file_target(args.model, args.name)]
    if args.name is not None:
        raise ConfigError("--name applies to --model only (zoo models keep theirs)")
    return zoo_targets(args.zoo, args.override)


def _summary(tasks: Sequence[TaskProfile], ids: Sequence[int]) -> str:
    from reefd.profiler.report import format_table

    rows = [
        [
            str(task_id),
            t.model.name,
            str(t.batch),
            str(len(t.calls)),
            f"{t.duration.median_us / 1000:.2f}",
            f"{t.duration.spread_pct:.1f}",
            f"{t.flops / 1e9:.2f}",
            t.model.model_key[:12],
        ]
        for t, task_id in zip(tasks, ids, strict=True)
    ]
    head = ["task", "model", "batch", "calls", "median ms", "p10-p90 %", "GFLOP"]
    return format_table([*head, "model key"], rows)


def cmd_run(args: argparse.Namespace) -> int:
    from reefd.profiler.facts import Resources
    from reefd.profiler.measure import Identities, Settings, profile_task
    from reefd.profiler.runner import open_backend
    from reefd.profiler.target import parse_batches

    say = _quiet_log if args.quiet else log
    settings = Settings(args.warmup, args.repeat, args.form, not args.quiet).check()
    batches = parse_batches(args.batch) if args.batch is not None else None
    targets = _targets(args)
    jobs = [(t, b) for t in targets for b in (batches or (t.natural_batch,))]
    backend = open_backend(args.backend, threads=args.threads, form=args.form, note=say)
    try:
        arch = None if args.no_resources else (args.arch or backend.default_arch)
        resources = Resources(arch, note=log)
        identities = Identities()
        tasks, ids, failed = [], [], []
        with Store.open(args.db) as store:
            env = backend.environment(resources.arch)
            run_id = store.begin_run(
                env,
                command=shlex.join([PROG, *args.argv]),
                warmup=settings.warmup,
                repeat=settings.repeat,
                note=args.note,
            )
            where = f"{env.backend}: {env.device_name}"
            say(f"run {run_id}: {len(jobs)} task(s) on {where}")
            for i, (target, batch) in enumerate(jobs, 1):
                say(f"[{i}/{len(jobs)}] {target.name} batch {batch}")
                try:
                    task = profile_task(
                        backend, target, batch, settings, resources, identities, say
                    )
                except UnsupportedOp as exc:  # the others are still worth measuring
                    failed.append(f"{target.name} batch {batch}: {exc}")
                    if len(jobs) > 1:
                        log(f"skipped {failed[-1]}")
                    continue
                tasks.append(task)
                ids.append(store.add_task(run_id, task))
            store.finish_run(run_id)
    finally:
        backend.close()
    if not tasks:
        raise ReefError(f"nothing measured; {failed[0]}")
    print(_summary(tasks, ids))
    print(f"stored in {store.path} (run {run_id}, {env.backend}: {env.device_name})")
    for failure in failed:
        print(f"not measured: {failure}")
    return 1 if failed else 0


# --- pairs ---------------------------------------------------------------------------


def _pair_targets(text: str, overrides: Sequence[str], flag: str) -> list[Target]:
    from reefd.profiler.target import file_target, zoo_targets

    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{flag}: no model named")
    out = []
    for item in items:
        if ".py:" in item:
            out.append(file_target(item))
        else:
            scoped = [o for o in overrides if ":" not in o or o.startswith(f"{item}:")]
            out += zoo_targets(item, scoped)
    return out


def _one_pair(
    backend: Backend,
    rt: Loaded,
    be: Loaded,
    batches: tuple[int, int],
    settings: Settings,
) -> PairProfile:
    """Measure one RT/BE pair, with a progress bar."""
    from reefd.profiler.pairs import profile_pair
    from reefd.profiler.progress import Progress

    label = f"{rt.identity.name} b{batches[0]} + {be.identity.name} b{batches[1]}"
    bar = Progress(3 * settings.repeat, label, enabled=settings.progress)
    runners = backend.pair_runners(((rt.lowered, rt.inputs), (be.lowered, be.inputs)))
    try:
        pair = profile_pair(
            backend,
            runners,
            (rt.identity, be.identity),
            batches,
            settings.warmup,
            settings.repeat,
            bar.advance,
        )
    finally:
        for r in runners:
            r.close()
    bar.finish(f"RT slowdown {pair.rt_slowdown.value:.3f}")
    return pair


def cmd_pairs(args: argparse.Namespace) -> int:
    from reefd.profiler.measure import Lowerings, Settings
    from reefd.profiler.report import pairs_table
    from reefd.profiler.runner import open_backend
    from reefd.profiler.target import parse_batches

    say = _quiet_log if args.quiet else log
    settings = Settings(args.warmup, args.repeat, "plain", not args.quiet).check()
    rt_batch = parse_batches(args.rt_batch or args.batch)
    be_batch = parse_batches(args.be_batch or args.batch)
    if len(rt_batch) != 1 or len(be_batch) != 1:
        raise ConfigError(
            "pairs take one batch per side (e.g. --rt-batch 1 --be-batch 8)"
        )
    rts = _pair_targets(args.rt, args.override, "--rt")
    bes = _pair_targets(args.be, args.override, "--be")
    backend = open_backend(args.backend, threads=args.threads, note=say)
    lowerings = Lowerings()
    batches = (rt_batch[0], be_batch[0])
    try:
        with Store.open(args.db) as store:
            env = backend.environment(None)
            run_id = store.begin_run(
                env,
                command=shlex.join([PROG, *args.argv]),
                warmup=settings.warmup,
                repeat=settings.repeat,
                note=args.note,
            )
            pairs = [(rt, be) for rt in rts for be in bes]
            where = f"{env.backend}: {env.device_name}"
            say(f"run {run_id}: {len(pairs)} pair(s) on {where}")
            for rt, be in pairs:
                rt_loaded = lowerings.get(rt, batches[0])
                be_loaded = lowerings.get(be, batches[1])
                pair = _one_pair(backend, rt_loaded, be_loaded, batches, settings)
                store.add_pair(run_id, pair)
            store.finish_run(run_id)
            _, rows = store.rows("pairs")
            rows = [r for r in rows if r["run_id"] == run_id]
    finally:
        backend.close()
    print(pairs_table(rows))
    print(f"method: {backend.corun_method}")
    if env.backend == "cpu":
        print(
            "backend=cpu: a CPU co-run is a stand-in for GPU co-location, "
            "not a GPU figure"
        )
    print(f"stored in {store.path} (run {run_id})")
    return 0


# --- show and export -----------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    from reefd.profiler.report import show

    with Store.open(args.db, create=False) as store:
        print(show(store, args.model))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from reefd.profiler.report import export_csv

    with Store.open(args.db, create=False) as store:
        if args.model is not None and not store.model_keys(args.model):
            raise ConfigError(f"--model {args.model!r}: no such model in {store.path}")
        n = export_csv(store, args.table, args.csv, args.model)
    if args.csv != "-":
        log(f"wrote {n} {args.table} rows to {args.csv}")
    return 0


# --- train and evaluate (reefd.interference) ----------------------------------------


def _cpu_note(backend: str) -> None:
    if backend == "cpu":
        print(
            "backend=cpu: CPU co-runs are a stand-in for GPU co-location, "
            "not GPU figures"
        )


def cmd_train(args: argparse.Namespace) -> int:
    from reefd.interference.dataset import load_dataset
    from reefd.interference.metrics import mape_pct
    from reefd.interference.train import ModelFile, default_model_path

    out = Path(args.out) if args.out else default_model_path()
    with Store.open(args.db, create=False) as store:
        data = load_dataset(store, device=args.device)
    model = ModelFile.train(data)
    path = model.save(out)
    fitted = model.trained.estimate(data.pairs()).rt_slowdown
    print(f"trained on {data.describe()}: {len(data.tasks)} tasks, from {data.source}")
    if data.skipped:
        print(
            f"left out {data.skipped} pair measurement(s) whose tasks have no solo "
            "profile on that device"
        )
    print(
        f"in-sample RT slowdown MAPE {mape_pct(fitted, data.rt_slowdown()):.1f} % "
        "(a fit, not a held-out figure: see `reef-profile evaluate`)"
    )
    _cpu_note(data.device.backend)
    print(f"wrote {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from reefd.interference.dataset import load_dataset
    from reefd.interference.evaluate import EvalConfig, evaluate

    config = EvalConfig(
        split=args.split, slo_slowdown=args.slo_slowdown, folds=args.folds
    ).check()
    with Store.open(args.db, create=False) as store:
        data = load_dataset(store, device=args.device)
    report = evaluate(data, config)
    print("\n".join(report.summary()))
    print()
    print(report.markdown())
    print()
    if not args.no_plot:
        from reefd.interference.plot import write_plot

        default = Path(data.source).with_name(f"interference-{config.split}.png")
        print(f"wrote {write_plot(report, args.plot or default)}")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(report.to_json(), indent=1) + "\n")
        except OSError as exc:
            raise ReefError(f"--json {args.json}: cannot write: {exc}") from None
        print(f"wrote {args.json}")
    return 0
