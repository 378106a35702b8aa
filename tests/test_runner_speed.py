"""The runner's speed options: flags reach the run, bf16 cells are other cells, accelerated models craft alike."""
import torch

import robustbench_ens.runner as runner
from attacks import Ens
from attacks.acceleration import StackedMember
from robustbench_ens import environment
from robustbench_ens.cli import main
from robustbench_ens.suite import load_suite
from robustbench_ens.workspace import Acceleration


def _identity(suite):
    return {name: {"name": name, "arch": "x", "sha256": name} for name in suite.models}


def test_bf16_gives_new_attack_cells_and_keeps_the_clean_ones():
    suite = load_suite("smoke")
    plain = runner._grid(suite, "data", _identity(suite))
    half = runner._grid(suite, "data", _identity(suite), bf16=True)
    for a, b in zip(plain, half):
        assert (a.cell_id == b.cell_id) == (a.attack == "clean")
        assert (a.adv_key == b.adv_key) == (a.attack == "clean")


def test_speed_flags_reach_the_run_config(monkeypatch, tmp_path, slice_path):
    seen = {}

    def capture(config):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(runner, "run_suite", capture)
    monkeypatch.setattr(environment, "configure_threads", lambda threads=None: seen.setdefault("threads", threads))
    try:
        main(["--suite", "smoke", "--data", str(slice_path), "--out", str(tmp_path), "--bf16", "--channels-last",
              "--stack", "--threads", "1"])
    except SystemExit:
        pass
    assert seen["config"].acceleration == Acceleration(bf16=True, channels_last=True, stack=True, compile=False)
    assert seen["threads"] == 1


def test_acceleration_prepares_models_and_autocast(tiny_models, batch):
    plain = Ens(tiny_models, steps=2)(*batch)
    fast = Acceleration(stack=True, channels_last=True)
    models = fast.models(tiny_models)
    assert all(isinstance(m, StackedMember) for m in models)
    with fast.autocast(torch.device("cpu")):
        assert _matmul_dtype() == torch.float32
    assert (Ens(models, steps=2)(*batch) - plain).abs().gt(1e-5).float().mean() < 0.01
    with Acceleration(bf16=True).autocast(torch.device("cpu")):
        assert _matmul_dtype() == torch.bfloat16


def _matmul_dtype() -> torch.dtype:
    return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype


def test_configure_threads_follows_the_machine():
    before = torch.get_num_threads()
    try:
        assert environment.configure_threads() == environment.available_cpus() >= 1
        assert torch.get_num_threads() == environment.available_cpus()
        assert environment.configure_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
