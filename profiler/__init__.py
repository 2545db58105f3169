"""reefd.profiler: `reef-profile` and the SQLite profile store (issue 7)."""
