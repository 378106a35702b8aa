"""The command-line arguments every benchmark shares (the script's folder is on sys.path when it runs)."""
from __future__ import annotations

import argparse
from pathlib import Path


def benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of ``doc``, with --models, --data and --device."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="folder of the shared CIFAR-10 checkpoints")
    parser.add_argument("--data", required=True, help="CIFAR-10 .npz or folder (as run_all.py --data)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    return parser
