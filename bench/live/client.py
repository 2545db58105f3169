"""`python -m bench.live.client`: reefd's load generator with the bench's models.

The client process of the live benches: reefd.clients.loadgen (same flags,
same JSON) with `bench.live.models.MODELS` as its model table, so it can drive
zoo models, full size or reduced. Needs the repository root on PYTHONPATH (the
harness's CasePlan.client_env sets it).
"""

from __future__ import annotations

import sys

from bench.live.models import MODELS
from reefd.clients.loadgen import main

if __name__ == "__main__":
    sys.exit(main(models=MODELS))
