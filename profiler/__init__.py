"""reefd.profiler: `reef-profile` and the SQLite profile store.

`cli.py` parses the command line and `commands.py` runs it; `store.py` (schema
in `migrations.py`, queries in `reads.py`) keeps what is measured and answers
the scheduler's and simulator's questions; `measure.py` (solo) and `pairs.py`
(co-runs) measure through a backend's runner (`cpu_runner.py`, whose pairs run
in worker processes, `cpu_corun.py`; `cuda_runner.py`; interface in
`runner.py`).
"""
