"""The local executor: every adversarial set crafted (or reloaded) in this process, then evaluated on its defenses.

One set is in memory at a time: it is crafted, each of its cells is evaluated and
recorded at once, and it is dropped before the next set.
"""
from __future__ import annotations

from ..metrics import perturbation_norms
from ..suite import CLEAN
from ..workspace import describe_error


class LocalExecutor:
    def run(self, work, recorder) -> None:
        workspace = work.workspace
        for group in work.groups:
            x_adv, adv_set, craft_error = self._adversarial_set(group[0], work, recorder)
            norms = perturbation_norms(workspace.images, x_adv) if craft_error is None else {}  # once per set
            for cell in group:
                recorder.finished_cell(cell, workspace.evaluate(cell, x_adv, norms, craft_error), adv_set)
            del x_adv

    @staticmethod
    def _adversarial_set(cell, work, recorder):
        """``(images, adv_sets record, None)`` for the set of ``cell`` (clean: no record; reloaded or crafted now),
        or ``(None, None, error)`` when crafting failed: a failed crafting fails its cells and the grid goes on."""
        try:
            record = None if cell.attack == CLEAN else work.store.saved_adv_set(cell.adv_key)
            if cell.attack == CLEAN or record is not None:
                return work.workspace.adversarial_images(cell, record), record, None
            x_adv, record = work.workspace.craft_set(cell)
        except Exception as error:
            return None, None, describe_error(error)
        recorder.saved_set(record)
        return x_adv, record, None
