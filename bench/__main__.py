"""`python -m bench`: the benchmark suite (bench/suite/cli.py); `--help`
explains the backends, cases and figures."""

import sys

from bench.suite.cli import main

if __name__ == "__main__":
    sys.exit(main())
