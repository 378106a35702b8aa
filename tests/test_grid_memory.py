"""The local runner holds at most one adversarial set in memory: each is dropped before the next is made."""
import gc
import weakref

from robustbench_ens.runner import RunConfig, run_suite
from robustbench_ens.suite import apply_overrides, load_suite
from robustbench_ens.workspace import Workspace


def test_at_most_one_adversarial_set_is_alive_at_a_time(tmp_path, slice_path, models_path, monkeypatch):
    alive_sets: list[weakref.ref] = []
    most_alive = []
    original = Workspace.craft_set

    def watched(self, cell):
        gc.collect()
        most_alive.append(sum(ref() is not None for ref in alive_sets))  # earlier sets still in memory
        x_adv, record = original(self, cell)
        alive_sets.append(weakref.ref(x_adv))
        return x_adv, record

    monkeypatch.setattr(Workspace, "craft_set", watched)
    suite = apply_overrides(load_suite("smoke"), device="cpu")
    run_suite(RunConfig(suite=suite, out_dir=tmp_path / "run", leaderboard_dir=None, data_path=str(slice_path),
                        models_dir=models_path, cache_dir=tmp_path / "cache", progress=False))
    assert len(alive_sets) == 4  # 2 attacks x 2 eps
    assert most_alive == [0, 0, 0, 0]
