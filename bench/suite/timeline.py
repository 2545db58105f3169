"""Timelines: bars per client lane for one second of a case.

Owns `merge_spans` (bars of one lane closer than `gap_ms` become one: a
second drawn 1,300 pixels wide cannot show 20 us gaps, and a ResNet-152 is
hundreds of calls) and `request_spans` (live runs: each request from when it
went out until it returned, as the client saw it, unmerged; the daemon
exposes no kernel trace). Pure data; imports bench.suite.records only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bench.suite.records import ClientRecord, Span

MERGE_GAP_MS = 0.02


def merge_spans(spans: Iterable[Span], gap_ms: float = MERGE_GAP_MS) -> list[Span]:
    out: list[Span] = []
    last: dict[str, int] = {}
    for s in sorted(spans, key=lambda s: (s.lane, s.start_ms)):
        i = last.get(s.lane)
        if i is not None and s.start_ms - out[i].end_ms <= gap_ms:
            prev = out[i]
            out[i] = Span(
                prev.lane, prev.priority, prev.start_ms, max(prev.end_ms, s.end_ms)
            )
            continue
        last[s.lane] = len(out)
        out.append(s)
    return out


def request_spans(
    clients: Sequence[ClientRecord], window_s: tuple[float, float]
) -> list[Span]:
    """Each request that overlaps the window, from send to return."""
    lo, hi = window_s[0] * 1e3, window_s[1] * 1e3
    out = []
    for c in clients:
        for sent_s, latency_ms in zip(c.sent_s, c.latencies_ms, strict=False):
            start = sent_s * 1e3
            if start < hi and start + latency_ms > lo:
                out.append(Span(c.name, c.priority, start, start + latency_ms))
    return out
