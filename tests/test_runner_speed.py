"""The runner's speed options: flags reach the run, bf16 cells are other cells, accelerated models craft alike;
threads and the CPU allocator set from the machine."""
import os
import platform
import subprocess
import sys
import textwrap

import pytest
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
    monkeypatch.setattr(environment, "tune_cpu_allocator", lambda: seen.setdefault("allocator", True))
    try:
        main(["--suite", "smoke", "--data", str(slice_path), "--out", str(tmp_path), "--bf16", "--channels-last",
              "--stack", "--threads", "1"])
    except SystemExit:
        pass
    assert seen["config"].acceleration == Acceleration(bf16=True, channels_last=True, stack=True, compile=False)
    assert seen["threads"] == 1 and seen["allocator"]


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


# A pass's activations in miniature: twenty 8 MiB blocks alive at once, written, then all freed, ten times over
# after a first round; prints the minor page faults per page written (about 1: every page faulted in again,
# about 0: the freed memory reused). "malloc" calls the C library directly (no small allocation of Python's
# between the blocks, which would pin glibc's heap by chance); "torch" allocates tensors (posix_memalign).
_FAULTS_PER_PAGE = textwrap.dedent("""
    import ctypes, resource, sys, torch
    from robustbench_ens import environment
    mode, allocate = sys.argv[1:]
    if mode == "tune":
        assert environment.tune_cpu_allocator() == "glibc, freed memory kept"
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    SIZE, BLOCKS, ROUNDS = 8 << 20, 20, 10

    def live_set():
        if allocate == "torch":
            return [torch.ones(SIZE // 4) for _ in range(BLOCKS)]
        blocks = [libc.malloc(SIZE) for _ in range(BLOCKS)]
        for block in blocks:
            ctypes.memset(block, 1, SIZE)
        for block in blocks:
            libc.free(block)

    live_set()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(ROUNDS):
        live_set()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (ROUNDS * BLOCKS * SIZE / 4096))
""")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_allocator_reuses_freed_memory_instead_of_faulting_it_in_again():
    def faults_per_page(mode: str, allocate: str) -> float:
        env = {key: value for key, value in os.environ.items()  # glibc's malloc as it comes
               if key != "LD_PRELOAD" and not key.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_PAGE, mode, allocate], capture_output=True,
                             text=True, check=True, env=env)
        return float(out.stdout.split()[-1])

    assert faults_per_page("default", "malloc") > 0.9  # glibc returns the blocks to the system, faults them in again
    assert faults_per_page("tune", "malloc") < 0.01
    assert faults_per_page("tune", "torch") < 0.1


def test_tune_cpu_allocator_leaves_a_preloaded_allocator_alone(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert environment.tune_cpu_allocator() == "jemalloc (preloaded), left as is"
