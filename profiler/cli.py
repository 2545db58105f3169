"""`reef-profile`: solo and co-run timings of models into the profile store.

Owns the command line: the parser of `run` (solo profiles of zoo models or a
user's model factory), `pairs` (co-run slowdowns), `show` (what is stored),
`export` (CSV for analysis), `train` (the interference model) and `evaluate`
(it and the baselines on held-out pairs), with a `--help` per command that says
what it does, and `main`, which runs a command (commands.py) and turns every error
a user can cause into one line, `reef-profile: error: ...`, and exit status 2.

Imports the standard library and this package's commands and store only.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence

from reefd.errors import ReefError
from reefd.profiler.commands import (
    PROG,
    cmd_evaluate,
    cmd_export,
    cmd_pairs,
    cmd_run,
    cmd_show,
    cmd_train,
)
from reefd.profiler.store import VIEWS, default_db_path

# --- the parser ----------------------------------------------------------------------


def _text(s: str) -> str:
    return textwrap.dedent(s).strip()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="PATH",
        help=f"profile store (default: {default_db_path()}; the state directory "
        "is $STATE_DIRECTORY under systemd)",
    )


def _measuring(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where to run: cuda (a GPU, reefd's own kernels), cpu (torch "
        "references: a stand-in), auto (cuda if a driver and GPU are found, "
        "else cpu; the default)",
    )
    p.add_argument("--repeat", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (3)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1, as the daemon's cpu backend)",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="[MODEL:]KEY=VALUE",
        help="zoo override for a reduced variant, e.g. image=64 or "
        "resnet50:layers=1,1,1,1 (repeatable; see bench/zoo.py)",
    )
    p.add_argument("--note", default="", help="free text stored with the run")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_text(
            """
            Profile models for reefd's scheduler: solo kernel and task times,
            resources per kernel call, and co-run slowdowns of RT/BE pairs, into
            an SQLite store (profiles.sqlite in reefd's state directory).
            """
        ),
        epilog=_text(
            """
            examples:
              reef-profile run --zoo resnet50 --batch 1,8
              reef-profile run --model app.py:make_model --backend cpu
              reef-profile pairs --rt resnet152 --be vgg19,densenet201
              reef-profile show --model resnet50
              reef-profile export --csv calls.csv
              reef-profile train
              reef-profile evaluate --split lomo --plot eval.png
            """
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_pairs(sub)
    _add_show(sub)
    _add_export(sub)
    _add_train(sub)
    _add_evaluate(sub)
    return parser


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="solo profiles: every kernel call and the whole task",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_text(
            """
            Lower each model to reefd's kernel graph and measure it alone:
            per kernel call and per whole task, the solo duration (warm-up runs,
            then --repeat timed runs: median, mean, stdev, p10, p90), virtual
            blocks, CTAs per SM, registers and shared memory (compiled with NVRTC
            for --arch; no GPU needed), FLOPs and bytes moved; on a GPU also
            NVML clocks and power, and on Hopper the GPM SM occupancy and DRAM
            bandwidth utilisation. Each task is stored as soon as it is measured.

            On the cpu backend every call runs through its torch reference, as
            the daemon's cpu backend runs it: CPU figures, labelled backend=cpu.
            """
        ),
        epilog=_text(
            """
            examples:
              reef-profile run --zoo resnet50 --batch 1,8
              reef-profile run --zoo all --backend cpu --repeat 10
              reef-profile run --zoo resnet50 --override image=64 --batch 1
              reef-profile run --model app.py:make_model --batch 1,4
            """
        ),
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--zoo",
        metavar="NAMES",
        help="bench/zoo.py models, comma-separated, or 'all'",
    )
    what.add_argument(
        "--model",
        metavar="FILE.py:FACTORY",
        help="your model: FACTORY() (or FACTORY(batch=B) if it takes batch) "
        "returns (module, example_inputs)",
    )
    p.add_argument("--name", help="human name for --model (default FILE.py:FACTORY)")
    p.add_argument(
        "--batch",
        metavar="B[,B...]",
        help="batch sizes (default 1; for --model, the example inputs' batch)",
    )
    p.add_argument(
        "--form",
        default="plain",
        choices=("plain", "preemptible"),
        help="entry point whose registers are recorded and, on cuda, timed "
        "(plain: RT work; preemptible: BE work)",
    )
    p.add_argument(
        "--arch",
        help="GPU arch for registers and CTAs/SM (default: the GPU's; sm_90 on cpu)",
    )
    p.add_argument(
        "--no-resources",
        action="store_true",
        help="do not compile for registers/shared memory (they are left empty)",
    )
    _measuring(p)
    p.set_defaults(handler=cmd_run)


def _add_pairs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pairs",
        help="co-run slowdown of RT models beside BE models",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_text(
            """
            For each RT model beside each BE model: both tasks alone (--repeat
            back-to-back runs each), then both at once until each has --repeat
            runs wholly inside the time both ran. Stores both sides' durations
            alone and together and the slowdown (median together / median
            alone) with a 90 % bootstrap interval as its noise.

            On a GPU each task replays as a CUDA graph on its own stream. On the
            cpu backend each task runs in a worker process of its own (--threads
            torch threads each), alone and together: a CPU stand-in for GPU
            co-location, stored and shown with backend=cpu.
            """
        ),
        epilog=_text(
            """
            examples:
              reef-profile pairs --rt resnet152 --be vgg19,densenet201
              reef-profile pairs --rt resnet50 --be vgg19 --rt-batch 1 --be-batch 8
            """
        ),
    )
    p.add_argument(
        "--rt",
        required=True,
        metavar="MODELS",
        help="RT models: zoo names or FILE.py:FACTORY, comma-separated",
    )
    p.add_argument("--be", required=True, metavar="MODELS", help="BE models, as --rt")
    p.add_argument("--batch", default="1", help="batch of both sides (default 1)")
    p.add_argument("--rt-batch", help="batch of the RT side (overrides --batch)")
    p.add_argument("--be-batch", help="batch of the BE side (overrides --batch)")
    _measuring(p)
    p.set_defaults(handler=cmd_pairs)


def _add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help="print what the store holds",
        description="Print the stored solo tasks and pairs; with --model, also "
        "that model's calls (latest task per batch and device).",
    )
    p.add_argument("--model", help="a model's name or key (or a key prefix)")
    _common(p)
    p.set_defaults(handler=cmd_show)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write stored rows as CSV",
        description="Write one CSV row per stored call, task or pair, each "
        "tagged with its run's backend, device, driver, CUDA, torch and reefd "
        "versions, CPU model and threads.",
    )
    p.add_argument("--csv", required=True, metavar="FILE", help="output ('-': stdout)")
    p.add_argument(
        "--table",
        default="calls",
        choices=sorted(VIEWS),
        help="which rows (default calls)",
    )
    p.add_argument("--model", help="only this model (name or key)")
    _common(p)
    p.set_defaults(handler=cmd_export)


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        metavar="NAME",
        help="use the pairs measured on this device: a backend (cpu, cuda), a "
        "device name, or 'backend: name' (default: the one with the most pairs)",
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fit the interference model on the stored pairs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_text(
            """
            Fit reefd's interference model on every co-run pair stored for one
            device, using features of both tasks' solo profiles (FLOPs, bytes,
            arithmetic intensity, CTAs, threads, registers, shared memory, solo
            duration, achieved compute and bandwidth, NVML/GPM readings where
            measured): gradient-boosted trees for the log RT slowdown, a
            quantile (0.9) variant for safety decisions, and one for the BE
            throughput ratio. Pairs need a solo profile (`reef-profile run`)
            of both tasks at their batches on the same device.

            Writes one model file (joblib) that the scheduler loads as a lookup
            table. How well it predicts models it has not seen is what
            `reef-profile evaluate` measures.
            """
        ),
        epilog=_text(
            """
            examples:
              reef-profile train
              reef-profile train --db profiles.sqlite --out model.joblib
              reef-profile train --device cuda
            """
        ),
    )
    _common(p)
    p.add_argument(
        "--out",
        metavar="PATH",
        help="model file (default: interference.joblib in the state directory, "
        f"{default_db_path().parent}, which InterferenceModel.load reads by default)",
    )
    _device(p)
    p.set_defaults(handler=cmd_train)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score the interference model and baselines on held-out pairs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_text(
            """
            Train on part of the stored pairs, predict the rest, and score the
            learned model, its conservative variant and the baselines (no
            interference, mean slowdown, gpulet-style linear model,
            Usher-style complementarity rule, Orion-style compute/memory class
            rule, and the measured oracle) on the same held-out pairs.

            Splits: lomo (leave one model out: every pair with model M held
            out, for each M; the default) or pairs (GroupKFold by model pair).
            Metrics: MAPE and p90 absolute error of the RT slowdown, Kendall
            tau of each RT model's partner ranking, top-1 regret of the best
            predicted partner, false-safe rate at --slo-slowdown, BE ratio
            MAPE; and the noise floor of the measurements themselves. Prints a
            markdown table and writes a PNG (and JSON with --json).
            """
        ),
        epilog=_text(
            """
            examples:
              reef-profile evaluate
              reef-profile evaluate --split pairs --slo-slowdown 1.05
              reef-profile evaluate --plot eval.png --json eval.json
            """
        ),
    )
    _common(p)
    _device(p)
    p.add_argument(
        "--split",
        default="lomo",
        choices=("lomo", "pairs"),
        help="lomo: leave one model out (default); pairs: GroupKFold by model pair",
    )
    p.add_argument(
        "--slo-slowdown",
        type=float,
        default=1.10,
        metavar="X",
        help="RT slowdown at or under which a pair counts as safe (default 1.10)",
    )
    p.add_argument(
        "--folds", type=int, default=5, help="folds of the pairs split (default 5)"
    )
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="PNG to write (default: interference-SPLIT.png beside the store)",
    )
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument("--json", metavar="PATH", help="also write scores and predictions")
    p.set_defaults(handler=cmd_evaluate)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ReefError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; tasks measured so far are stored", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
