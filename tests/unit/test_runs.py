"""CallRuns: a task's calls in flight as intervals, returned in pieces."""

from __future__ import annotations

import pytest

from reefd.scheduler.plan import Stream
from reefd.scheduler.runs import CallRuns


def test_runs_come_back_whole_in_pieces_or_call_by_call():
    runs = CallRuns()
    runs.add(0, 5, Stream.BE)
    runs.add(5, 1, Stream.RT)  # a padded slice of the next call
    assert (runs.count, runs.end, runs.streams()) == (6, 6, {Stream.BE, Stream.RT})
    assert runs.remove(0, 2) == (2, Stream.BE)  # the OK prefix
    assert runs.remove(2, 1) == (1, Stream.BE)  # the stopped call
    assert runs.remove(2, 1) == (0, None)  # already back: ignored
    assert runs.covers(3, 2) and not runs.covers(0, 2)
    assert runs.remove(5, 1) == (1, Stream.RT)
    assert runs.remove(3, 2) == (2, Stream.BE) and not runs and runs.end == 0


def test_a_middle_piece_splits_a_run_and_overlaps_are_refused():
    runs = CallRuns()
    runs.add(10, 10, Stream.RT)
    assert runs.remove(13, 2) == (2, Stream.RT)
    assert runs.count == 8 and runs.covers(12) and not runs.covers(13, 2)
    runs.add(13, 2, Stream.RT)  # before the last run: checked and sorted
    assert runs.end == 20 and runs.count == 10
    with pytest.raises(ValueError, match="already out"):
        runs.add(19, 3, Stream.RT)
    with pytest.raises(ValueError, match="n_calls >= 1"):
        runs.add(30, 0, Stream.RT)
