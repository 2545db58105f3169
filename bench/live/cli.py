"""The command-line options every live bench shares, and what they check.

Owns `add_live_options` (--backend, --policy, --duration-s, --reduced,
--alone-policy, --daemon-args, --out, --plot), `check_live_options` (the
--plot file exists, the policies are known, every model is in the table),
`live_settings` (the LiveSettings they make) and `redraw` (the --plot path:
draw a PNG from a results file and stop). bench/colocate.py and
bench/preempt.py add their own options around these.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.live.models import model_key
from bench.live.plotting import try_plot
from bench.live.runner import LiveSettings
from reefd.config import BACKENDS, POLICIES


def add_live_options(
    p: argparse.ArgumentParser,
    *,
    policies: Sequence[str],
    duration_s: float,
    alone: str,
    out: Path,
    results_name: str,
) -> None:
    """The shared options; `alone` says which cases the --alone-policy runs."""
    add = p.add_argument
    add("--backend", choices=BACKENDS, default="auto", help="daemon backend (auto)")
    add(
        "--policy",
        default=",".join(policies),
        help=f"comma-separated policies (default {','.join(policies)})",
    )
    add(
        "--duration-s",
        type=float,
        default=duration_s,
        help=f"measured s per case ({duration_s:g})",
    )
    add(
        "--reduced",
        action="store_true",
        help="the zoo's reduced variants (bench/live/models.py), quick on a CPU",
    )
    add(
        "--alone-policy",
        choices=POLICIES,
        default="exclusive",
        help=f"policy of the {alone} (exclusive)",
    )
    add(
        "--daemon-args",
        default="",
        help="further reefd flags for every case, one string "
        "with '=' (e.g. --daemon-args='--preempt-flag device')",
    )
    add("--out", default=str(out), help=f"output folder ({out})")
    add("--plot", metavar="RESULTS", help=f"only draw the PNG of a {results_name}")


def check_live_options(
    p: argparse.ArgumentParser, args: argparse.Namespace, models: Sequence[str]
) -> None:
    """Fail with a usage error naming what is wrong; sets `args.policies`."""
    if args.plot and not Path(args.plot).is_file():
        p.error(f"--plot: no such file {args.plot!r}")
    args.policies = tuple(x for x in args.policy.split(",") if x)
    if unknown := sorted(set(args.policies) - set(POLICIES)):
        p.error(f"unknown policies {unknown}; known: {list(POLICIES)}")
    for model in models:
        try:
            model_key(model, args.reduced)
        except ValueError as exc:
            p.error(str(exc))


def live_settings(args: argparse.Namespace) -> LiveSettings:
    return LiveSettings(
        backend=args.backend,
        duration_s=args.duration_s,
        reduced=args.reduced,
        daemon_args=tuple(shlex.split(args.daemon_args)),
    )


def redraw(args: argparse.Namespace, draw: Callable[[Any, dict], Any]) -> bool:
    """With --plot, draw the PNG beside the results file and return True."""
    if not args.plot:
        return False
    results = json.loads(Path(args.plot).read_text())
    print(try_plot(draw, results, Path(args.plot).with_suffix(".png")))
    return True
