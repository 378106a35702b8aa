"""The pass recorder counts exactly the passes each algorithm needs; replay runs exactly those passes."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from attacks import CWA, LGV, PGD, SGM, SMER, SVRE, AdaEA, Admix, DI, Ens, SI, TI
from robustbench_ens.profiling import PassRecorder, replay

STEPS = 3


def record(attack, models, batch):
    with PassRecorder(models) as recorder:
        attack(*batch)
    return recorder


@pytest.mark.parametrize("fusion", ["logits", "probs", "loss"])
def test_ens_makes_one_forward_and_backward_per_model_and_step(tiny_models, batch, fusion):
    counts = record(Ens(tiny_models, steps=STEPS, fusion=fusion), tiny_models, batch).counts()
    k = len(tiny_models)
    assert counts == {"forward": STEPS * k, "forward_grad": STEPS * k, "backward": STEPS * k,
                      "images_forward": STEPS * k * len(batch[0])}


def test_cwa_needs_the_reverse_and_the_inner_pass_per_step(tiny_models, batch):
    counts = record(CWA(tiny_models, steps=STEPS), tiny_models, batch).counts()
    k = len(tiny_models)
    assert (counts["forward"], counts["forward_grad"], counts["backward"]) == (2 * STEPS * k,) * 3


def test_adaea_needs_per_model_and_fused_backward_and_k_squared_scoring_forwards(tiny_models, batch):
    recorder = record(AdaEA(tiny_models, steps=STEPS), tiny_models, batch)
    k = len(tiny_models)
    counts = recorder.counts()
    # one forward with autograd per model, backed through twice (its own gradient, the fused one),
    # and the AGM scores: each model on each model's one-step example, without autograd
    assert counts["forward_grad"] == STEPS * k
    assert counts["backward"] == 2 * STEPS * k
    assert counts["forward"] - counts["forward_grad"] == STEPS * k * k


def test_adaea_without_its_modules_costs_what_ens_costs(tiny_models, batch):
    plain = record(AdaEA(tiny_models, steps=STEPS, agm=False, drf=False), tiny_models, batch).counts()
    assert plain == record(Ens(tiny_models, steps=STEPS), tiny_models, batch).counts()


def test_svre_computes_each_anchor_gradient_once_per_step(tiny_models, batch):
    k, inner = len(tiny_models), 4
    counts = record(SVRE(tiny_models, steps=STEPS, inner_steps=inner), tiny_models, batch).counts()
    # per step: the fused gradient (k), the inner steps (inner), one anchor per distinct model drawn (1..k)
    assert counts["forward"] == counts["forward_grad"] == counts["backward"]
    assert STEPS * (k + inner + 1) <= counts["forward"] <= STEPS * (k + inner + k)


def test_lgv_and_pgd_pass_counts(tiny_models, batch):
    lgv = record(LGV(tiny_models, steps=STEPS, models_per_step=2), tiny_models, batch).counts()
    assert lgv["forward"] == lgv["backward"] == 2 * STEPS
    pgd = record(PGD(tiny_models[:1], steps=STEPS, eot_samples=4), tiny_models[:1], batch).counts()
    assert pgd["forward"] == pgd["backward"] == 4 * STEPS


def test_smer_pass_counts(tiny_models, batch):
    k, passes = len(tiny_models), 2
    counts = record(SMER(tiny_models, steps=STEPS, inner_passes=passes), tiny_models, batch).counts()
    inner = STEPS * passes * k  # per inner step: model k's gradient pass, and the other k - 1 models without autograd
    assert (counts["forward_grad"], counts["backward"], counts["forward"]) == (inner, inner, inner * k)


def test_sgm_costs_what_ens_costs(tiny_resnets, batch):
    assert record(SGM(tiny_resnets, steps=STEPS), tiny_resnets, batch).counts() == \
        record(Ens(tiny_resnets, steps=STEPS), tiny_resnets, batch).counts()


@pytest.mark.parametrize("transforms,copies", [([DI(prob=1.0)], 1), ([TI()], 1), ([SI()], 5), ([Admix()], 15),
                                               ([SI(), DI()], 5)])
def test_transformations_cost_one_pass_per_copy(transforms, copies, tiny_models, batch):
    k = len(tiny_models)
    counts = record(Ens(tiny_models, steps=STEPS, transforms=transforms), tiny_models, batch).counts()
    assert counts["forward"] == counts["backward"] == STEPS * k * copies
    assert counts["images_forward"] == STEPS * k * copies * len(batch[0])


def test_replay_runs_the_recorded_passes_and_nothing_else(tiny_models, batch):
    recorded = record(AdaEA(tiny_models, steps=2), tiny_models, batch)
    with PassRecorder(tiny_models) as again:
        seconds = replay(tiny_models, recorded.passes, torch.device("cpu"))
    assert seconds > 0
    assert again.counts() == recorded.counts()
    assert again.per_model() == recorded.per_model()


def test_replay_leaves_modes_as_found(tiny_models, batch):
    recorded = record(Ens(tiny_models, steps=1), tiny_models, batch)
    tiny_models[0].train()
    replay(tiny_models, recorded.passes, torch.device("cpu"))
    assert tiny_models[0].training and not tiny_models[1].training


_PEAKS = textwrap.dedent("""
    import torch
    from robustbench_ens.profiling import PeakMemory
    with PeakMemory(torch.device("cpu")) as before:
        pass
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(256 * 2**20 // 4)  # 256 MiB, touched
        del block
    print(before.peak_bytes, memory.peak_bytes)
""")


def test_peak_memory_sees_a_large_allocation():
    # in a fresh process: in this one, an earlier test may have run run_all's main, which tunes the allocator to
    # keep freed memory, and the block would then reuse memory already resident
    before, peak = subprocess.run([sys.executable, "-c", _PEAKS], capture_output=True, text=True,
                                  check=True).stdout.split()
    if peak == "None":
        pytest.skip("this system cannot reset the peak resident set size")
    assert int(peak) >= int(before) + 200 * 2**20


def test_flops_of_a_linear_pass_by_hand():
    from robustbench_ens.profiling import pass_flops

    model = torch.nn.Linear(10, 5)
    assert pass_flops(model, (3, 10), torch.device("cpu")) == (2 * 3 * 10 * 5, 2 * 3 * 10 * 5)


def test_an_attacks_flops_are_its_passes(tiny_models, batch):
    from robustbench_ens.profiling import pass_flops, recorded_flops

    recorder = record(Ens(tiny_models, steps=STEPS), tiny_models, batch)
    forward, backward = pass_flops(tiny_models[0], tuple(batch[0].shape), torch.device("cpu"))
    assert forward > 0 and backward > 0
    k = len(tiny_models)  # the tiny models share one architecture: the same FLOPs each
    assert recorded_flops(tiny_models, recorder.passes, torch.device("cpu")) == STEPS * k * (forward + backward)


def test_the_matmul_peak_is_a_rate():
    from robustbench_ens.profiling import matmul_peak

    assert 1e6 < matmul_peak(torch.device("cpu"), size=256, repeats=2) < 1e15
