"""robustbench-ens: ensemble transfer attacks, ensemble defenses, published leaderboards.

``robustbench_ens.benchmark(model, suite="cifar10")`` benchmarks your own defense in one call
(:mod:`robustbench_ens.benchmarking`; imported on first use, so that this package stays light to import).
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("benchmark", "BenchmarkResult"):
        from . import benchmarking

        return getattr(benchmarking, name)
    raise AttributeError(f"module 'robustbench_ens' has no attribute {name!r}")
