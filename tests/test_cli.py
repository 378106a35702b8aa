"""The command line: --help, and one clear line with exit code 2 for every kind of bad input."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustbench_ens.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_help_explains_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--suite", "--data", "--models", "--attacks", "--defenses", "--eps", "--n-examples", "--device",
                 "--out", "--resume", "--fresh", "--seed", "RBE_DATA", "RBE_MODELS", "smoke", "cifar10"):
        assert flag in text


def test_missing_data_file_subprocess(tmp_path):
    """As a user sees it: one line on stderr, exit code 2, no traceback."""
    done = subprocess.run([sys.executable, str(REPO / "run_all.py"), "--suite", "smoke", "--data",
                           str(tmp_path / "missing.npz")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--data" in lines[0]


def test_a_crash_in_native_code_leaves_the_python_stack_in_the_log(tmp_path):
    """A segfault in a kernel kills the run with no traceback of its own: the log must still say where it died."""
    crash = ("import ctypes, sys; from robustbench_ens import cli, environment; "
             "environment.configure_threads = lambda threads: ctypes.string_at(0); "
             "sys.exit(cli.main(['--suite', 'smoke', '--out', sys.argv[1]]))")
    done = subprocess.run([sys.executable, "-c", crash, str(tmp_path / "run")], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode != 0
    assert "Fatal Python error: Segmentation fault" in done.stderr
    assert "cli.py" in done.stderr and "in main" in done.stderr


def test_no_data_and_no_network(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.delenv("RBE_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["--suite", "smoke", "--data", str(tmp_path / "empty_folder"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --data PATH" in err[0] and "network unreachable" in err[0]


@pytest.mark.parametrize("args,expected", [
    (["--attacks", "Nope"], "unknown attack 'Nope'"),
    (["--defenses", "nope"], "unknown defense 'nope'"),
    (["--eps", "8"], "did you mean 8/255"),
    (["--eps=-1/255"], ">= 0"),
    (["--n-examples", "0"], ">= 1"),
    (["--n-examples", "100000"], "1..846"),
    (["--suite", "cifar100"], "unknown suite"),
    (["--device", "tpu"], "device"),
    (["--out", "blocker/run"], "cannot write the run folder (--out)"),
    (["--leaderboard-dir", "blocker"], "cannot write the leaderboard folder"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected, tmp_path, monkeypatch, capsys, slice_path, models_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    code = main(["--suite", "smoke", "--data", str(slice_path), "--models", str(models_path), "--no-progress",
                 *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and expected in err[0]
    assert not (tmp_path / "leaderboards").exists(), "no partial leaderboard"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="no /proc here")
def test_an_out_folder_that_cannot_be_made_stops_the_run_before_any_model_is_loaded(tmp_path, slice_path,
                                                                                    models_path):
    """As a user sees it: root may write /proc by os.access, but no folder can be made there."""
    done = subprocess.run([sys.executable, str(REPO / "run_all.py"), "--suite", "smoke", "--data", str(slice_path),
                           "--models", str(models_path), "--out", "/proc/forbidden"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the run folder (--out) /proc/forbidden: ")
    assert "[zoo]" not in done.stdout, "no model is loaded"


@pytest.mark.parametrize("args,folder,expected", [
    (["--cache", "blocker/cache"], None,
     "model cache (--cache or $RBE_CACHE) {cwd}/blocker/cache: it cannot be created: {cwd}/blocker is not a folder"),
    (["--out", "run"], "run/results.sqlite", "results store (in --out) {cwd}/run/results.sqlite: it is a folder"),
    (["--leaderboard-dir", "board"], "board/per_example.csv.gz",
     "per-example file (in --leaderboard-dir) {cwd}/board/per_example.csv.gz: it is a folder"),
])
def test_every_path_the_run_writes_is_checked_before_any_model_is_loaded(args, folder, expected, tmp_path, monkeypatch,
                                                                         capsys, slice_path, models_path):
    from robustbench_ens import workspace

    monkeypatch.setattr(workspace, "resolve_models", lambda *a, **k: pytest.fail("models were loaded"))
    monkeypatch.setenv("RBE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    if folder:
        (tmp_path / folder).mkdir(parents=True)
    code = main(["--suite", "smoke", "--data", str(slice_path), "--models", str(models_path), "--no-progress",
                 *args])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [f"error: cannot write the {expected.format(cwd=Path.cwd())}; "
                                        "pass a folder you can write"]
    assert "[zoo]" not in out
    assert {p.name for p in tmp_path.iterdir()} <= {"blocker", "run", "board"}, "the checks leave no folder behind"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(tmp_path, monkeypatch, capsys, slice_path, models_path):
    monkeypatch.chdir(tmp_path)
    assert main(["--suite", "smoke", "--data", str(slice_path), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


SMOKE = REPO / "robustbench_ens" / "suites" / "smoke.toml"


@pytest.mark.parametrize("old,new,expected", [
    ('attack = "ens"\nparams = { steps = 5, decay = 1.0, fusion = "probs" }', 'attack = "ensx"\nparams = {}',
     "did you mean ens"),
    ("steps = 5, decay", "stepz = 5, decay", "stepz"),
])
def test_bad_attack_in_a_suite_file(old, new, expected, tmp_path, monkeypatch, capsys, slice_path, models_path):
    text = SMOKE.read_text()
    assert old in text
    path = tmp_path / "s.toml"
    path.write_text(text.replace(old, new))
    monkeypatch.chdir(tmp_path)
    assert main(["--suite", str(path), "--data", str(slice_path), "--models", str(models_path)]) == 2
    assert expected in capsys.readouterr().err


def test_a_suite_typo_stops_the_run_before_any_model_is_loaded(tmp_path, monkeypatch, capsys, slice_path):
    """Attack names, parameter names and values and defense kinds are judged from the suite alone: no model is
    needed (the values on stand-in models)."""
    from robustbench_ens import workspace

    monkeypatch.setattr(workspace, "resolve_models", lambda *a, **k: pytest.fail("models were loaded"))
    path = tmp_path / "s.toml"
    for old, new, expected in (("steps = 5, decay", "stepz = 5, decay", "unknown parameter stepz"),
                               ('kind = "ensemble"', 'kind = "ensembel"', "did you mean ensemble"),
                               ("steps = 5, decay", 'steps = "five", decay', "steps must be an integer"),
                               ('fusion = "logits"', 'fusion = "logit"', "fusion must be one of")):
        assert old in SMOKE.read_text()
        path.write_text(SMOKE.read_text().replace(old, new, 1))
        assert main(["--suite", str(path), "--data", str(slice_path), "--models", str(tmp_path)]) == 2
        assert expected in capsys.readouterr().err


def test_a_missing_models_folder_is_named(tmp_path, monkeypatch, capsys, slice_path):
    monkeypatch.chdir(tmp_path)
    assert main(["--suite", "smoke", "--data", str(slice_path), "--models", str(tmp_path / "nope")]) == 2
    assert "nope does not exist" in capsys.readouterr().err


def test_help_loads_no_torch():
    """--help (and a usage error) answer at once: the CLI module imports neither torch nor the runner."""
    code = "import sys, robustbench_ens.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "False"


def test_an_interrupted_run_says_how_to_resume(tmp_path, monkeypatch, capsys, slice_path, models_path):
    import robustbench_ens.runner

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(robustbench_ens.runner, "run_suite", interrupted)
    monkeypatch.chdir(tmp_path)
    command = ["--suite", "smoke", "--data", str(slice_path), "--out", str(tmp_path / "run")]
    assert main(command) == 130
    err = capsys.readouterr().err
    assert "interrupted: no cell had finished; run the same command to resume" in err, "no run folder yet"
    (tmp_path / "run").mkdir()
    assert main(command) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and str(tmp_path / "run") in err and "run the same command to resume" in err
    assert "Traceback" not in err


def test_a_partial_run_leaves_the_suites_leaderboard_alone(tmp_path, monkeypatch, capsys, slice_path, models_path):
    monkeypatch.chdir(tmp_path)
    args = ["--suite", "smoke", "--data", str(slice_path), "--models", str(models_path), "--no-progress",
            "--cache", str(tmp_path / "cache"), "--attacks", "Ens", "--eps", "8/255,8/255", "--n-examples", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "runs" / "smoke" / "leaderboard" / "README.md").is_file()
    assert not (tmp_path / "leaderboards").exists()
    assert "4 cells evaluated" in out, "the clean row and Ens at 8/255 (given twice, run once) on 2 defenses"
    assert "1 adversarial set crafted" in out and "0 of the grid's 4 failed" in out
    data = json.loads((tmp_path / "runs" / "smoke" / "leaderboard" / "leaderboard.json").read_text())["setting"]["data"]
    assert data["file_sha256"] == hashlib.sha256(slice_path.read_bytes()).hexdigest()
    assert data["indices"] == "0-3 (the first 4 points of the test set, in the official order)"

    import robustbench_ens.runner

    chosen = []
    monkeypatch.setattr(robustbench_ens.runner, "run_suite", lambda config: sys.exit(chosen.append(config)))
    for extra, folder in (([], Path("leaderboards/smoke")), (["--seed", "1"], Path("runs/smoke/leaderboard"))):
        with pytest.raises(SystemExit):
            main([*args[:-6], *extra])
        assert chosen.pop().leaderboard_dir == folder, "another seed is not the suite's own grid either"


def test_an_attack_left_without_eps_by_the_command_line_is_named(tmp_path, monkeypatch, capsys, slice_path):
    import robustbench_ens.runner

    monkeypatch.setattr(robustbench_ens.runner, "run_suite", lambda config: sys.exit("ran"))
    path = tmp_path / "s.toml"
    old = 'params = { steps = 5, decay = 1.0, fusion = "probs" }'
    assert old in SMOKE.read_text()
    path.write_text(SMOKE.read_text().replace(old, old + '\neps = ["8/255"]'))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="ran"):
        main(["--suite", str(path), "--data", str(slice_path), "--eps", "4/255"])
    assert "note: skipped Ens-probs: the suite runs them at none of this run's eps" in capsys.readouterr().err


def test_publish_only_runs_no_cell_and_names_what_has_not_run(tmp_path, monkeypatch, capsys, slice_path, models_path):
    """A long run's partial results: --publish-only writes the leaderboard from the store alone, and the page, its
    JSON and the front page say which cells are missing; the full command then finishes the grid."""
    import attacks.ens

    monkeypatch.chdir(tmp_path)
    args = ["--suite", "smoke", "--data", str(slice_path), "--models", str(models_path), "--no-progress",
            "--cache", str(tmp_path / "cache"), "--eps", "8/255", "--n-examples", "4", "--out", str(tmp_path / "run"),
            "--leaderboard-dir", str(tmp_path / "leaderboards" / "smoke")]
    assert main([*args, "--attacks", "Ens", "--leaderboard-dir", str(tmp_path / "partial")]) == 0  # Ens only
    capsys.readouterr()
    crafted = []
    original = attacks.ens.Ens.forward
    monkeypatch.setattr(attacks.ens.Ens, "forward", lambda self, *a: crafted.append(self) or original(self, *a))

    assert main([*args, "--publish-only"]) == 0
    out = capsys.readouterr().out
    assert crafted == [] and "0 cells evaluated, 4 already finished, 0 adversarial sets crafted" in out
    assert "0 of the grid's 6 failed" in out and "not run yet: Ens-probs 2 cells" in out
    board = json.loads((tmp_path / "leaderboards" / "smoke" / "leaderboard.json").read_text())
    assert board["setting"]["not_run"] == {"cells": 6, "attacks": {"Ens-probs": 2}}
    page = (tmp_path / "leaderboards" / "smoke" / "README.md").read_text()
    assert "Partial results: 2 of the grid's 6 cells had not run when this page was written (Ens-probs 2)" in page
    assert "≤" in page, "a defense lacking an attack is marked as an upper bound"
    assert "partial: 2 of 6 cells not run" in (tmp_path / "leaderboards" / "README.md").read_text()

    with pytest.raises(SystemExit):
        main([*args, "--publish-only", "--fresh"])
    assert "--publish-only runs no cell" in capsys.readouterr().err

    assert main(args) == 0  # the full command finishes the grid: the page is whole again
    assert crafted and "not_run" not in json.loads((tmp_path / "leaderboards" / "smoke" / "leaderboard.json")
                                                  .read_text())["setting"]
    assert "Partial results" not in (tmp_path / "leaderboards" / "smoke" / "README.md").read_text()
    assert "partial" not in (tmp_path / "leaderboards" / "README.md").read_text()
