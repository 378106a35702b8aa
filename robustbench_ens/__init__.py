"""robustbench-ens: ensemble transfer attacks, ensemble defenses, published leaderboards."""
__version__ = "0.1.0"
