"""The simulator: reefd's scheduler and executor on a simulated GPU's clock.

`gpu.py` is the discrete-event GPU and `records.py` its data, `costs.py` where
per-call costs come from, `shapes.py` the GPU shapes, `clients.py` and
`results.py` what a run takes and gives, `runner.py` the virtual-time driver,
`workloads.py` the DISB workloads on bench/zoo models, `paced.py` the
wall-clock-paced device the daemon's `--backend sim` uses, and `__main__.py`
the `python -m reefd.sim` tables. The Device itself is
`reefd.backends.sim.SimDevice`. Nothing here is imported eagerly (the backend
imports `reefd.sim.gpu`, the runner imports the backend).
"""
