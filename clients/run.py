"""`reef run`: start a program with the autohook installed through sitecustomize.

A temporary directory holding a `sitecustomize.py` that calls
`reefd.clients.autohook.install()` goes first on PYTHONPATH, so every Python
process the command starts loads the hook before the user's code. A
sitecustomize the environment already had is still imported after ours.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_SITECUSTOMIZE = """\
import importlib.machinery as _machinery
import importlib.util as _util
import sys as _sys

from reefd.clients import autohook as _autohook

_autohook.install()
# Run the sitecustomize this one shadows, if the environment has one.
_path = [p for p in _sys.path if p != {dir!r}]
_spec = _machinery.PathFinder.find_spec("sitecustomize", _path)
if _spec is not None and _spec.loader is not None:
    _module = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
"""


def run_command(args: argparse.Namespace) -> int:
    command = list(args.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print(
            "reef run: give the command after --, e.g. reef run --rt -- python app.py",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ)
    env["REEF_RUN_PRIORITY"] = "rt" if args.rt else "be"
    if args.slo_ms is not None:
        env["REEF_RUN_SLO_MS"] = str(args.slo_ms)
    if args.socket:
        env["REEFD_SOCKET"] = args.socket
    with tempfile.TemporaryDirectory(prefix="reef-run-") as tmp:
        (Path(tmp) / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(dir=tmp))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (tmp, env.get("PYTHONPATH")) if p
        )
        try:
            return subprocess.call(command, env=env)
        except FileNotFoundError:
            print(f"reef run: command not found: {command[0]}", file=sys.stderr)
            return 127
