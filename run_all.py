#!/usr/bin/env python
"""Run a benchmark suite end to end: ``python run_all.py --suite cifar10`` (see --help)."""
import sys

from robustbench_ens.cli import main

if __name__ == "__main__":
    sys.exit(main())
