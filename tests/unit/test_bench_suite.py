"""The suite's pure parts: case order and names, figures and their ratios to
the alone cases, the JSON round trip, tables, merged timelines; and the load
generator's DISB skip rule on a fake remote (no daemon)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import pytest
import torch

from bench.suite.figures import case_figures
from bench.suite.options import client_names, order_cases, selected, timeline_window_s
from bench.suite.records import CaseRecord, ClientRecord, Preempt, Span, from_json
from bench.suite.tables import client_table, summary_table
from bench.suite.timeline import merge_spans, request_spans
from bench.workloads import WORKLOADS
from reefd.clients.loadgen import Arrivals, LoadResult, _drive


def test_alone_cases_run_first_and_eager_last() -> None:
    names = ["reef", "eager", "be-alone", "fifo", "rt-alone", "reef"]
    assert order_cases(names, "cpu") == (
        "rt-alone",
        "be-alone",
        "reef",
        "fifo",
        "eager",
    )
    with pytest.raises(ValueError, match="eager"):
        order_cases(["reef", "eager"], "simulate")
    with pytest.raises(ValueError, match="unknown policies \\['nope'\\]"):
        order_cases(["nope"], "cpu")


def test_client_names_are_stable_and_cases_select_by_priority() -> None:
    c = WORKLOADS["C"]
    names = client_names(c)
    assert names[:3] == ["rt0-vgg19", "be0-resnet152", "be1-densenet201"]
    assert selected("rt-alone", c) == [0]
    assert selected("be-alone", c) == [1, 2, 3, 4, 5]
    assert selected("reef", c) == list(range(6))
    assert timeline_window_s(60.0) == (29.5, 30.5)
    assert timeline_window_s(0.5) == (0.0, 0.5)


def _client(name: str, priority: str, latencies, done=None, skipped=0, slo=None):
    return ClientRecord(
        name,
        name.split("-")[1],
        priority,
        "closed",
        len(latencies) if done is None else done,
        skipped,
        0,
        slo,
        tuple(latencies),
    )


def _cases() -> list[CaseRecord]:
    rt_alone = CaseRecord(
        "rt-alone", "exclusive", 10.0, (_client("rt0-a", "rt", [1.0] * 100, slo=2.0),)
    )
    be_alone = CaseRecord(
        "be-alone", "exclusive", 10.0, (_client("be0-b", "be", [5.0] * 200),)
    )
    together = CaseRecord(
        "reef",
        "reef",
        10.0,
        (
            _client("rt0-a", "rt", [1.0] * 90 + [3.0] * 10, skipped=25, slo=2.0),
            _client("be0-b", "be", [5.0] * 150),
        ),
        Preempt(40, 10.0, 30.0, 50.0),
        0.5,
        "test",
        (Span("rt0-a", "rt", 1.0, 2.0),),
        "kernels",
        (0.0, 1.0),
    )
    failed = CaseRecord("fifo", "fifo", 10.0, error="RuntimeError: boom\nmore")
    return [rt_alone, be_alone, together, failed]


def test_figures_and_ratios_to_the_alone_cases() -> None:
    figs = {f.label: f for f in case_figures(_cases())}
    reef = figs["reef"]
    assert reef.rt_ms[0] == 1.0 and reef.rt_ms[1] == pytest.approx(3.0)
    assert reef.rt_x_alone[0] == 1.0 and reef.rt_x_alone[1] == pytest.approx(3.0)
    assert reef.rt_slo_attainment == pytest.approx(90 / 125)  # skips are misses
    assert (reef.rt_done, reef.rt_skipped) == (100, 25)
    assert reef.be_per_s == 15.0 and reef.be_x_alone == pytest.approx(0.75)
    assert reef.preemptions == 40 and reef.preempt_us == (10.0, 30.0, 50.0)
    assert figs["be-alone"].rt_ms == (None, None, None)
    assert figs["fifo"].error and figs["fifo"].be_per_s is None


def test_records_round_trip_through_json_and_render() -> None:
    cases = _cases()
    back = [from_json(json.loads(json.dumps(asdict(c)))) for c in cases]
    assert back == cases
    summary = summary_table(case_figures(back))
    assert "| reef | reef | 1.00 (1.00x) | 3.00 (3.00x) |" in summary
    assert "15.0 (0.75x)" in summary and "FAILED: RuntimeError: boom |" in summary
    assert "| reef | rt0-a | closed | 100 | 25 |" in client_table(back)


def test_merge_spans_joins_close_bars_per_lane() -> None:
    spans = [
        Span("a", "rt", 0.0, 1.0),
        Span("b", "be", 0.5, 2.0),
        Span("a", "rt", 1.01, 2.0),
        Span("a", "rt", 3.0, 4.0),
    ]
    assert merge_spans(spans) == [
        Span("a", "rt", 0.0, 2.0),
        Span("a", "rt", 3.0, 4.0),
        Span("b", "be", 0.5, 2.0),
    ]
    client = ClientRecord("rt0-x", "x", "rt", "closed", 3, 0, 0, None, (1.0, 1.0, 1.0))
    client = ClientRecord(**{**asdict(client), "sent_s": (0.1, 0.5, 0.999)})
    assert [s.start_ms for s in request_spans([client], (0.2, 1.0))] == [
        pytest.approx(500.0),
        pytest.approx(999.0),
    ]


class _SlowRemote:
    """Takes 40 ms a request."""

    def __call__(self, *inputs):
        time.sleep(0.04)
        return torch.zeros(1)


def test_the_load_generator_skips_arrivals_that_come_while_a_request_is_out() -> None:
    # Trace looped every 160 ms: at 0 a request (out until 40 ms), 10 and 20
    # skipped, 80 a request; again from 160; the window ends at 320 ms.
    arrivals = Arrivals("trace", None, (0.0, 0.01, 0.02, 0.08), 0.16)
    res = LoadResult("fake", "rt", 25.0, 0.32)
    _drive(_SlowRemote(), (), torch.zeros(1), res, arrivals)
    assert (res.done, res.skipped, res.errors) == (4, 4, 0)
    assert res.sent_s == pytest.approx([0.0, 0.08, 0.16, 0.24], abs=0.015)
