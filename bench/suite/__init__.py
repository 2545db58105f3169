"""The benchmark suite, `python -m bench run`: a DISB workload under every
policy and baseline, on a live daemon (cuda, cpu, sim) or the virtual-time
simulator (simulate). One noun per module:

- options.py: what a run is asked to do, the cases in order, client names;
- live.py: cases on a real daemon, and the eager (no daemon) baseline;
- virtual.py: cases on the virtual-time simulator;
- gpu_util.py: NVML utilisation sampling on cuda;
- records.py: what a case measured (plain data, JSON round trip);
- figures.py: a case's figures and ratios to the alone cases;
- timeline.py: one second's bars per client;
- tables.py: the markdown; plots.py: the PNGs;
- cli.py: the command line and the results files.

The workloads are bench/workloads.py, their traces bench/traces.py.
"""
