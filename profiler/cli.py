"""`reef-profile`: solo and co-run timings of models into the profile store.

Owns the command line: the parser of `run` (solo profiles of zoo models or a
user's model factory), `pairs` (co-run slowdowns), `show` (what is stored) and
`export` (CSV for analysis), with a `--help` per command that says what it
measures, and `main`, which runs a command (commands.py) and turns every error
a user can cause into one line, `reef-profile: error: ...`, and exit status 2.

Imports the standard library and this package's commands and store only.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence

from reefd.errors import ReefError
from reefd.profiler.commands import PROG, cmd_export, cmd_pairs, cmd_run, cmd_show
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
            """
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_pairs(sub)
    _add_show(sub)
    _add_export(sub)
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
            cpu backend the two tasks run in two threads: a CPU stand-in for GPU
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
