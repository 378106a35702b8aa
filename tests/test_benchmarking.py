"""robustbench_ens.benchmark(): a user's model benchmarked on a suite in one call, and ranked."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import robustbench_ens
from robustbench_ens.benchmarking import benchmark_suite, main
from robustbench_ens.suite import load_suite
from robustbench_ens.zoo import create_model, save_checkpoint

SUITE = """
extends = "smoke"
name = "bench-smoke"
[data]
n_examples = 8
batch_size = 8
[threat]
norm = "Linf"
eps = ["8/255"]
headline_eps = "8/255"
[[attacks]]
name = "Ens"
attack = "ens"
params = { steps = 2 }
[[attacks]]
name = "PGD"
attack = "pgd"
on = "defense"
params = { steps = 2 }
defenses = ["resnet2b-at"]
[[attacks]]
name = "PGD-adaptive"
attack = "pgd"
on = "adaptive"
params = { steps = 2 }
"""


class MeanOf(nn.Module):
    """A user's ensemble: the mean softmax of its members, as log-probabilities."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        return torch.stack([m(x).softmax(1) for m in self.members]).mean(0).log()


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_text(SUITE)
    return path


def test_the_benchmark_suite_attacks_only_the_supplied_model(suite_file):
    suite = load_suite(str(suite_file))
    alone = benchmark_suite(suite, "mine")
    assert [d.name for d in alone.defenses] == ["mine"] and alone.defenses[0].kind == "supplied"
    assert [a.name for a in alone.attacks] == ["Ens", "PGD"]  # no adaptive attack without members
    assert all(a.defenses is None for a in alone.attacks)  # PGD ran on one defense of the suite: here on the model
    with_members = benchmark_suite(suite, "mine", n_members=2)
    assert [a.name for a in with_members.attacks] == ["Ens", "PGD", "PGD-adaptive"]
    assert with_members.defenses[0].members == ("mine", "mine.m0", "mine.m1")


def test_benchmark_a_model_and_rank_it(suite_file, tmp_path, slice_path, models_path):
    members = [create_model("resnet2b", seed=s).eval() for s in range(2)]
    model = MeanOf(members)
    out = tmp_path / "run"
    published = tmp_path / "published"
    result = robustbench_ens.benchmark(model, str(suite_file), members=members, name="mine", data=str(slice_path),
                                       models=models_path, out=out, published=published, progress=False)
    assert set(result.worst_case) == {"overall", "transfer", "black-box", "white-box"}
    worst = result.worst_case["overall"][8 / 255]
    assert 0 <= worst <= result.clean_acc <= 1
    assert result.worst_case["black-box"][8 / 255] is None  # the suite has no black-box attack
    assert result.published is None and "no published leaderboard" in result.summary()
    rows = (out / "benchmark-mine" / "cells.csv").read_text()
    assert "PGD-adaptive" in rows and "mine" in rows
    # the suite's own run publishes; the benchmark then reuses its transfer set and ranks the model on its page
    from robustbench_ens.runner import RunConfig, run_suite
    run_suite(RunConfig(suite=load_suite(str(suite_file)), out_dir=out, leaderboard_dir=published,
                        data_path=str(slice_path), models_dir=models_path, progress=False))
    again = robustbench_ens.benchmark(model, str(suite_file), members=members, name="mine", data=str(slice_path),
                                      models=models_path, out=out, published=published, progress=False)
    assert again.worst_case == result.worst_case  # the same cells, read back from the store
    rank, of = again.rank["overall"]
    assert of == 3 and 1 <= rank <= 3 and "rank" in again.summary()


def test_bad_benchmark_calls(suite_file):
    with pytest.raises(ValueError, match="name"):
        robustbench_ens.benchmark(nn.Identity(), str(suite_file), name="resnet2b_at2")
    with pytest.raises(TypeError, match="nn.Module"):
        robustbench_ens.benchmark(lambda x: x, str(suite_file))


def test_the_command_line_form(suite_file, tmp_path, slice_path, models_path, capsys):
    model = create_model("resnet2b", seed=0).eval()
    checkpoint = save_checkpoint(model, tmp_path / "tiny", {"about": "a test model"})
    assert main([str(checkpoint), "--suite", str(suite_file), "--data", str(slice_path), "--models",
                 str(models_path), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "tiny on suite bench-smoke (8 test points)" in out and "white-box:" in out
    assert main([str(tmp_path / "absent.safetensors"), "--suite", str(suite_file)]) == 2
    assert main([str(checkpoint), "--suite", str(suite_file), "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main([str(checkpoint), "--suite", str(suite_file), "--data", str(tmp_path / "bad.npz")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a usage error: not a checkpoint
        main([str(tmp_path / "README.md"), "--suite", str(suite_file)])
    assert ".safetensors checkpoints" in capsys.readouterr().err
    json.loads((tmp_path / "run" / "benchmark-tiny" / "leaderboard.json").read_text())
