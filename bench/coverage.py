"""Lowering coverage: every zoo model lowered, with what it uses and what it costs.

For each model of bench/zoo.py (full size, batch 1 unless --batch): the core ATen
ops its export uses, the catalog kernels its graph calls, the graph size, weight
bytes, scratch bytes of the lowered graph, and torch eager's peak activation
bytes for the same program (a liveness walk over the exported graph: every
non-view result is allocated when produced and freed after its last use, as
eager's reference counting does). A model that does not lower shows the
UnsupportedOp message instead.

    python -m bench.coverage [--models resnet50 vit_b16] [--batch 1] [--json F]

Prints a markdown table (one row per model, progress on stderr). CPU only; it
never runs in CI as a timed check.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bench import zoo
from reefd.clients.lower import export, lower
from reefd.clients.lower_ops import HANDLERS
from reefd.clients.lower_views import on_reshape
from reefd.errors import UnsupportedOp

MB = 1 << 20


@dataclass
class Row:
    model: str
    batch: int
    aten_ops: dict[str, int]
    kernels: dict[str, int]
    calls: int
    buffers: int
    weight_bytes: int
    scratch_bytes: int
    torch_peak_bytes: int
    lower_s: float
    error: str = ""


def _view_targets() -> set[Any]:
    """ATen targets that alias their input in eager (no new memory)."""
    views = {t for t, h in HANDLERS.items() if h is on_reshape}
    aten = torch.ops.aten
    views |= {
        aten.permute.default,
        aten.transpose.int,
        aten.t.default,
        aten.expand.default,
        aten.select.int,
        aten.slice.Tensor,
    }
    return views


def torch_peak_bytes(ep: torch.export.ExportedProgram) -> int:
    """Peak bytes of live intermediate tensors when eager runs this program."""
    views = _view_targets()
    nodes = list(ep.graph.nodes)
    owner: dict[torch.fx.Node, torch.fx.Node] = {}
    size: dict[torch.fx.Node, int] = {}
    last_use: dict[torch.fx.Node, int] = {}
    for i, node in enumerate(nodes):
        for arg in node.all_input_nodes:
            root = owner.get(arg, arg)
            last_use[root] = i
        if node.op != "call_function":
            continue
        target = node.target
        packet = getattr(target, "overloadpacket", None)
        if (target in views or packet in views) and node.all_input_nodes:
            owner[node] = owner.get(node.all_input_nodes[0], node.all_input_nodes[0])
            continue
        val = node.meta.get("val")
        vals = val if isinstance(val, (tuple, list)) else (val,)
        size[node] = sum(
            v.numel() * v.element_size() for v in vals if isinstance(v, torch.Tensor)
        )
    live = peak = 0
    for i, node in enumerate(nodes):
        live += size.get(node, 0)
        peak = max(peak, live)
        for root, last in last_use.items():
            if last == i and root in size:
                live -= size[root]
    return peak


def cover(name: str, batch: int, **overrides: Any) -> Row:
    """Lower one zoo model (zoo overrides allowed) and measure what it uses."""
    model, inputs = zoo.build(name, batch=batch, **overrides)
    start = time.perf_counter()
    ep = export(model, inputs)
    ops = collections.Counter(
        str(n.target) for n in ep.graph.nodes if n.op == "call_function"
    )
    peak = torch_peak_bytes(ep)
    try:
        low = lower(model, inputs, name=name)
    except UnsupportedOp as exc:
        return Row(name, batch, dict(ops), {}, 0, 0, 0, 0, peak, 0.0, str(exc))
    kernels = collections.Counter(c.kernel for c in low.graph.calls)
    return Row(
        name,
        batch,
        dict(sorted(ops.items())),
        dict(sorted(kernels.items())),
        len(low.graph.calls),
        len(low.graph.buffers),
        low.weight_bytes,
        low.scratch_bytes,
        peak,
        time.perf_counter() - start,
    )


def table(rows: list[Row]) -> str:
    head = (
        "| model | batch | ATen ops (distinct) | kernels used | calls | weights MB "
        "| scratch MB | torch peak MB | scratch / peak |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        if r.error:
            lines.append(
                f"| {r.model} | {r.batch} | {len(r.aten_ops)} | "
                f"UNSUPPORTED: {r.error[:120]} | | | | | |"
            )
            continue
        kernels = ", ".join(f"{k} {n}" for k, n in r.kernels.items())
        lines.append(
            f"| {r.model} | {r.batch} | {len(r.aten_ops)} | {kernels} | {r.calls} "
            f"| {r.weight_bytes / MB:.1f} | {r.scratch_bytes / MB:.2f} "
            f"| {r.torch_peak_bytes / MB:.2f} "
            f"| {r.scratch_bytes / max(r.torch_peak_bytes, 1):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.coverage",
        description="Lower every zoo model and tabulate ops, kernels and memory.",
    )
    parser.add_argument("--models", nargs="+", default=list(zoo.NAMES))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(zoo.NAMES))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {sorted(zoo.NAMES)}")
    warnings.filterwarnings("ignore", category=FutureWarning)
    rows = []
    for i, name in enumerate(args.models, 1):
        print(f"[{i}/{len(args.models)}] lowering {name} ...", file=sys.stderr)
        rows.append(cover(name, args.batch))
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
