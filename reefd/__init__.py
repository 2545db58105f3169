"""reefd: real-time and best-effort DNN inference sharing one GPU.

This package owns the daemon (server, engine, scheduler, executor, backends). The
kernel library, client shim, profiler and interference model are sub-packages that
live in their own top-level folders (see pyproject's package-dir).
"""

__version__ = "0.1.0"
