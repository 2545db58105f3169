"""Live benchmarks: real daemons, real client processes, zoo models.

The shared part of bench/colocate.py, bench/preempt.py and the suite's live
backends (bench/suite/live.py). A case is one daemon (backend, policy, flags)
and its clients (RT open loop at a rate with an SLO, stale arrivals skipped;
BE closed loop), run by reefd.clients.harness (also what `reef demo` uses).
The modules, one noun each:

- models.py: the client's model table (demo models, zoo full and reduced);
- client.py: the client process, `python -m bench.live.client`;
- runner.py: settings shared by a bench's cases, plans, running them in turn;
- report.py: cells, ratios, markdown, a case as JSON, the results file;
- meta.py: date, command, versions, device and the note on absolute times;
- plotting.py: matplotlib (Agg) when it is installed.

Performance here is a ratio measured side by side in one run; an absolute time
counts only from a cuda run, with its device named. Nothing here asserts a time.
"""
