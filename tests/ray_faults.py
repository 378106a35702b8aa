"""Test-only faults inside Ray workers (a ``worker_process_setup_hook`` that tests/test_ray.py installs).

Every crafting call (``Ens.forward``) is logged to ``$RBE_TEST_FAULTS/calls.log``; a test
arms a fault by creating a file in that folder:

* ``die_crafting_once`` / ``die_evaluating_once``: the next crafting / evaluation call kills
  its worker (``os._exit``); the worker that takes the file renames it to ``*.taken``, so
  it fires once across all workers.
* ``die_on_probs``: every crafting with probability fusion kills its worker (fails for good).
* ``raise_on_probs``: every crafting with probability fusion raises (a simulated OOM).
"""
import os
from pathlib import Path

import attacks.ens
from robustbench_ens import workspace


def install() -> None:
    folder = Path(os.environ["RBE_TEST_FAULTS"])
    crafting, evaluating = attacks.ens.Ens.forward, workspace.predict

    def faulty_crafting(self, images, labels):
        with open(folder / "calls.log", "a") as log:
            log.write(f"{self.fusion} {self.eps}\n")
        if _take(folder / "die_crafting_once") or (self.fusion == "probs" and (folder / "die_on_probs").exists()):
            os._exit(1)
        if self.fusion == "probs" and (folder / "raise_on_probs").exists():
            raise RuntimeError("CUDA out of memory (simulated)")
        return crafting(self, images, labels)

    def faulty_evaluation(*args, **kwargs):
        if _take(folder / "die_evaluating_once"):
            os._exit(1)
        return evaluating(*args, **kwargs)

    attacks.ens.Ens.forward = faulty_crafting
    workspace.predict = faulty_evaluation


def _take(marker: Path) -> bool:
    try:
        marker.rename(marker.with_name(marker.name + ".taken"))
    except FileNotFoundError:
        return False
    return True
