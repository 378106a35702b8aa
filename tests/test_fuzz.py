"""Fuzzing the two ways in: random suite files and random command lines either work or stop with one clean line."""
from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from robustbench_ens.cli import main
from robustbench_ens.suite import Suite, SuiteError, apply_overrides, load_suite

SCALARS = st.one_of(st.integers(-3, 2000), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.booleans(), st.sampled_from(["8/255", "1/0", "L2", "Linf", "-1/255", "resnet20_a", "a", "",
                                                    "ens", "pgd", "defense", "adaptive", "__import__('os')"]),
                    st.text(string.printable, max_size=8))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
KEYS = {
    "top": ["name", "description", "surrogates", "extends", "bogus"],
    "data": ["n_examples", "batch_size", "typo"],
    "threat": ["norm", "eps", "headline_eps"],
    "run": ["seed", "device"],
    "model": ["arch", "checkpoint", "source", "require_checkpoint", "method", "from", "params", "train", "seed"],
    "attack": ["name", "attack", "params", "surrogates", "on", "eps", "eot", "defenses"],
    "defense": ["name", "kind", "members", "params"],
}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # a TOML basic string


def _table(kind: str):
    return st.dictionaries(st.sampled_from(KEYS[kind]), VALUES, max_size=4)


@st.composite
def suite_texts(draw) -> str:
    """A suite file: the minimal valid one with random tables, keys and values changed or added."""
    top = {"name": "fuzz", "surrogates": ["a"], **draw(_table("top"))}
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for table in ("data", "threat", "run"):
        lines += [f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in draw(_table(table)).items()]
    models = {"a": {"arch": "resnet20_a", **draw(_table("model"))}}
    for name, spec in models.items():
        lines += [f"[models.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    lines += ["[models.b]", 'arch = "resnet20_b"']  # the target: no model is a surrogate and a target of one attack
    for kind, base in (("attacks", {"name": "Ens", "attack": "ens"}), ("defenses", {"name": "d", "members": ["b"]})):
        for _ in range(draw(st.integers(0, 2))):
            spec = {**base, **draw(_table(kind[:-1]))}
            lines += [f"[[{kind}]]"] + [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    if draw(st.booleans()):  # a stray character somewhere: not TOML any more
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.text(string.printable, min_size=1, max_size=6)))
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=suite_texts(), overrides=st.fixed_dictionaries({}, optional={
    "eps": st.lists(st.sampled_from(["8/255", "8", "0.5", "x", "-1"]), max_size=2),
    "n_examples": st.integers(-2, 5), "seed": st.integers(-2, 3),
    "attacks": st.lists(st.sampled_from(["Ens", "PGD", "nope"]), max_size=2)}))
def test_a_random_suite_file_parses_or_is_refused_with_a_suite_error(tmp_path, text, overrides):
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    try:
        suite = apply_overrides(load_suite(str(path)), **overrides)
    except SuiteError as error:
        message = str(error)
        assert message and "\n" not in message.strip().split("\n")[0]
        return
    assert isinstance(suite, Suite) and suite.defenses and suite.eps


OPTION_VALUES = {  # mostly valid values, so that many draws run; some wrong ones
    "--attacks": ["Ens", "Ens-probs", "Ens,Ens-probs", "Nope", ""],
    "--defenses": ["resnet2b-at", "baseline-ens", "resnet2b-at,baseline-ens", "x"],
    "--eps": ["4/255", "8/255,4/255", "2/255", "8", "-1/255", "1/0"],
    "--n-examples": ["1", "2", "3", "0", "99999", "two"],
    "--device": ["cpu", "auto", "tpu"],
    "--seed": ["0", "1", "-1", "x"],
    "--suite": ["smoke", "cifar100", "missing.toml"],
}
FLAGS = ["--fresh", "--resume", "--retry-failed", "--no-progress"]
ARGUMENTS = st.lists(st.one_of(
    st.sampled_from(sorted(OPTION_VALUES)).flatmap(lambda flag: st.tuples(st.just(flag),
                                                                          st.sampled_from(OPTION_VALUES[flag]))),
    st.sampled_from(FLAGS).map(lambda flag: (flag,)),
    st.text(string.ascii_letters + string.digits + "/-,.", max_size=6).map(lambda junk: (junk,)),
), max_size=4).map(lambda groups: [token for group in groups for token in group])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=ARGUMENTS)
def test_a_random_command_line_runs_or_exits_with_one_clean_line(argv, tmp_path_factory, slice_path, models_path,
                                                                 monkeypatch, capsys):
    work = tmp_path_factory.mktemp("cli")
    monkeypatch.chdir(work)
    fixed = ["--suite", "smoke", "--n-examples", "2", "--data", str(slice_path), "--models", str(models_path),
             "--cache", str(work / "cache"), "--out", str(work / "run"), "--leaderboard-dir", str(work / "lb"),
             "--no-progress"]
    try:
        code = main([*fixed, *argv])  # the random arguments come last: they override the fixed ones
    except SystemExit as exit_:  # argparse: a usage error (2)
        code = exit_.code
    err = capsys.readouterr().err
    event(f"exit code {code}")  # pytest --hypothesis-show-statistics: how many ran, how many were refused
    assert "Traceback" not in err
    assert code in (0, 1, 2)
    if code == 2:
        assert err.strip(), "a refusal says why"
        assert not (work / "lb").exists(), "no partial leaderboard"
    elif code == 0:
        assert (work / "lb" / "README.md").is_file()


@pytest.mark.parametrize("text", ["", "\x00", "name = 1\n[[defenses]]\nmembers = 3\n", "[threat]\neps = [[1]]\n"])
def test_degenerate_suite_files_are_refused(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SuiteError):
        load_suite(str(path))
