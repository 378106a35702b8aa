import pytest

from robustbench_ens.suite import SuiteError, apply_overrides, load_suite, parse_eps, shipped_suites


def test_shipped_suites_parse():
    assert {"cifar10", "smoke"} <= set(shipped_suites())
    for name in shipped_suites():
        suite = load_suite(name)
        assert suite.attacks and suite.defenses and suite.eps
        assert set(suite.model_names()) <= set(suite.models)


@pytest.mark.parametrize("text,value", [("8/255", 8 / 255), (" 16/255 ", 16 / 255), ("0.5", 0.5), (0.25, 0.25),
                                        (0, 0.0)])
def test_parse_eps(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["8", 8, "-1/255", "abc", "1/0", "nan", "__import__('os')"])
def test_parse_eps_refuses(text):
    with pytest.raises(SuiteError):
        parse_eps(text)


def test_an_l2_budget_may_exceed_one():
    assert parse_eps("4.0", "L2") == 4.0 and parse_eps("0.5", "L2") == 0.5
    with pytest.raises(SuiteError, match="above 1"):
        parse_eps("4.0", "Linf")


def test_eight_is_read_as_a_mistake_for_eight_over_255():
    with pytest.raises(SuiteError, match="8/255"):
        parse_eps("8")


def test_overrides():
    suite = apply_overrides(load_suite("smoke"), attacks=["Ens"], defenses=["resnet2b-at"], eps=["2/255"],
                            n_examples=8, device="cpu", seed=3)
    assert [a.name for a in suite.attacks] == ["Ens"]
    assert [d.name for d in suite.defenses] == ["resnet2b-at"]
    assert suite.eps == (2 / 255,) and suite.headline_eps == 2 / 255
    assert (suite.n_examples, suite.device, suite.seed) == (8, "cpu", 3)
    assert apply_overrides(load_suite("smoke"), eps=["8/255", "4/255", "8/255"]).eps == (8 / 255, 4 / 255), "once each"
    smoke = load_suite("smoke")
    assert suite.slice == (f"1 of its {len(smoke.attacks)} attacks; 1 of its {len(smoke.defenses)} defenses; "
                           f"eps 2/255 instead of its {', '.join(f'{round(e * 255)}/255' for e in smoke.eps)}; the "
                           f"first 8 of its {smoke.n_examples} test points; seed 3 instead of its 0")
    assert apply_overrides(smoke, eps=["8/255"]).slice == "eps 8/255 of its 4/255, 8/255", "a subset of its eps"
    assert apply_overrides(smoke, eps=["4/255", "8/255", "16/255"]).slice == \
        "eps 4/255, 8/255, 16/255 instead of its 4/255, 8/255", "more eps than it has"
    assert load_suite("smoke").slice == "" and apply_overrides(smoke, device="cpu", n_examples=10_000).slice == "", \
        "what does not shrink the grid is no slice"


@pytest.mark.parametrize("kwargs,match", [
    ({"attacks": ["Nope"]}, "unknown attack 'Nope'.*Ens"),
    ({"attacks": ["Ens-prob"]}, "did you mean Ens-probs"),
    ({"defenses": ["x"]}, "unknown defense"),
    ({"n_examples": 0}, ">= 1"),
    ({"eps": []}, "at least one"),
    ({"attacks": []}, "--attacks names no attack"),
    ({"defenses": []}, "--defenses names no defense"),
    ({"n_examples": "16"}, "must be an integer"),
])
def test_bad_overrides(kwargs, match):
    with pytest.raises(SuiteError, match=match):
        apply_overrides(load_suite("smoke"), **kwargs)


def _write(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


MINIMAL = """
name = "t"
surrogates = ["a"]
[models.a]
arch = "resnet20_a"
[models.b]
arch = "resnet20_b"
[[attacks]]
name = "Ens"
attack = "ens"
[[defenses]]
name = "d"
members = ["b"]
"""


def test_minimal_suite_file(tmp_path):
    suite = load_suite(str(_write(tmp_path, MINIMAL)))
    assert suite.defenses[0].kind == "single" and suite.attacks[0].surrogates == ("a",)


@pytest.mark.parametrize("extra,match", [
    ("[data]\nn_exampels = 3\n", "unknown key.*n_exampels"),
    ("[[attacks]]\nname = \"W\"\nattack = \"pgd\"\non = \"model\"\n", "on must be one of surrogates, defense"),
    ("[[attacks]]\nname = \"W\"\nattack = \"pgd\"\non = \"defense\"\nsurrogates = [\"a\"]\n", "takes no surrogates"),
    ("[[attacks]]\nname = \"W\"\nattack = \"pgd\"\neps = [\"16/255\"]\n", "non-empty subset of threat.eps"),
    ("[[defenses]]\nname = \"d\"\nmembers = [\"zz\"]\n", "repeated: d|zz"),
    ("[[defenses]]\nname = \"e\"\nmembers = [\"zz\"]\n", "zz not defined"),
    ("[threat]\neps = [\"8\"]\n", "8/255"),
    ("[threat]\nnorm = \"L1\"\n", "Linf or L2"),
    ("[[attacks]]\nname = \"clean\"\nattack = \"ens\"\n", "reserved"),
    ("[models.l]\nmethod = \"lgv\"\nfrom = [\"zz\"]\n", "derived model 'l' needs 'from' = plain models.*'zz'"),
    ("[models.l]\nmethod = \"lgv\"\nfrom = [\"a\"]\n[models.m]\nmethod = \"lgv\"\nfrom = [\"l\"]\n",
     "derived model 'm' needs 'from' = plain models"),
    ("[models.l]\narch = \"resnet20_a\"\nmethod = \"lgv\"\nfrom = [\"a\"]\n", "is made from its bases"),
    ("[models.l]\nmethod = \"lgv\"\nfrom = \"a\"\n", "'from' must be a list"),
    ("[models.l]\narch = \"resnet20_a\"\nfrom = [\"a\"]\n", "belong to a derived model"),
    ("[models.l]\nmethod = \"lgv\"\nform = [\"a\"]\n", "unknown key.*form"),
    ("[[attacks]]\nname = \"W\"\nattack = \"pgd\"\ndefenses = [\"x\"]\n", "defenses must be.*unknown: \\['x'\\]"),
    ("[[attacks]]\nname = \"W\"\nattack = \"pgd\"\ndefenses = []\n", "defenses must be a non-empty list"),
    ("[[attacks]]\nname = \"W\"\nattack = \"pgd\"\ndefenses = \"d\"\n", "'defenses' must be a list"),
    ("[threat]\nnorm = \"Linf\"\neps = [4.0]\n", "above 1"),
    ("[threat]\neps = [\"4/255\", \"8/255\"]\nheadline_eps = \"16/255\"\n", "headline_eps '16/255' must be one of eps"),
    ("[threat]\neps = [\"4/25x\"]\n", "threat\\]: eps: eps '4/25x' is not a number"),
    ("[[defenses]]\nname = \"e\"\nmembers = [\"b\"]\ncertify = \"crown\"\n",
     "certify must be one of 'ibp', got 'crown'"),
    ("[[defenses]]\nname = \"e\"\nkind = \"ensemble\"\nmembers = [\"b\"]\ncertify = \"ibp\"\n",
     "certify needs a defense of kind \"single\""),
    ("[models.l]\narch = \"resnet20_a\"\nrequire_checkpoint = \"false\"\n",
     "'require_checkpoint' must be true or false"),
    ("[data]\nn_examples = \"16\"\n", "n_examples must be an integer"),
])
def test_bad_suite_files(tmp_path, extra, match):
    with pytest.raises(SuiteError, match=match):
        load_suite(str(_write(tmp_path, MINIMAL + extra)))


def test_a_single_defense_may_ask_for_a_certified_floor(tmp_path):
    suite = load_suite(str(_write(tmp_path, MINIMAL.replace('members = ["b"]', 'members = ["b"]\ncertify = "ibp"'))))
    assert suite.defenses[0].certify == "ibp"
    assert load_suite(str(_write(tmp_path, MINIMAL))).defenses[0].certify is None


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(SuiteError, match="not valid TOML"):
        load_suite(str(_write(tmp_path, "name = ")))
    with pytest.raises(SuiteError, match="no suite file"):
        load_suite(str(tmp_path / "nope.toml"))
    with pytest.raises(SuiteError, match="unknown suite"):
        load_suite("cifar100")


def test_a_derived_model_brings_its_bases(tmp_path):
    text = MINIMAL.replace('surrogates = ["a"]', 'surrogates = ["l"]').replace('members = ["b"]', 'members = ["c"]') + \
        '[models.c]\narch = "resnet20_b"\n' \
        '[models.l]\nmethod = "lgv"\nfrom = ["b", "a"]\nparams = { samples_per_epoch = 2 }\ntrain = { epochs = 3 }\n'
    suite = load_suite(str(_write(tmp_path, text)))
    assert suite.model_names() == ["b", "a", "l", "c"]
    entry = suite.models["l"]
    assert (entry.method, entry.bases, entry.params, entry.train) == ("lgv", ("b", "a"), {"samples_per_epoch": 2},
                                                                      {"epochs": 3})


def test_white_box_entries_and_eps_subsets(tmp_path):
    text = MINIMAL.replace("[models.a]", '[threat]\neps = ["4/255", "8/255"]\n[models.a]') + \
        '[[attacks]]\nname = "PGD"\nattack = "pgd"\non = "adaptive"\neot = 4\neps = ["8/255"]\n'
    suite = load_suite(str(_write(tmp_path, text)))
    transfer, pgd = suite.attacks
    assert not transfer.whitebox and transfer.eps_values(suite.eps) == [4 / 255, 8 / 255]
    assert pgd.whitebox and (pgd.on, pgd.eot, pgd.surrogates) == ("adaptive", 4, ())
    assert pgd.eps_values(suite.eps) == [8 / 255]
    assert suite.model_names() == ["a", "b"]
    narrowed = apply_overrides(suite, eps=["4/255"])  # a CLI --eps may leave an attack without its budgets
    assert narrowed.attacks[1].eps_values(narrowed.eps) == []


def test_an_attack_can_run_on_a_subset_of_defenses(tmp_path):
    text = MINIMAL + '[[defenses]]\nname = "e"\nmembers = ["b"]\n' + \
        '[[attacks]]\nname = "AA"\nattack = "autoattack"\non = "defense"\ndefenses = ["e"]\n'
    suite = load_suite(str(_write(tmp_path, text)))
    ens, aa = suite.attacks
    assert ens.defenses is None and ens.runs_on("d") and ens.runs_on("e")
    assert aa.defenses == ("e",) and aa.runs_on("e") and not aa.runs_on("d")
    assert apply_overrides(suite, defenses=["d"]).attacks[1].defenses == ("e",)  # --defenses may leave it none


def test_an_l2_suite_takes_budgets_above_one(tmp_path):
    text = MINIMAL.replace("[models.a]", '[threat]\nnorm = "L2"\neps = [0.5, 4.0]\nheadline_eps = 0.5\n[models.a]')
    suite = load_suite(str(_write(tmp_path, text)))
    assert (suite.norm, suite.eps, suite.headline_eps) == ("L2", (0.5, 4.0), 0.5)
    assert apply_overrides(suite, eps=["2.0"]).eps == (2.0,)


def test_a_suite_extends_another(tmp_path):
    base = _write(tmp_path, MINIMAL.replace("[models.a]", "[data]\nn_examples = 7\n[models.a]"))
    (tmp_path / "l2.toml").write_text(
        'extends = "s.toml"\nname = "t_l2"\n[threat]\nnorm = "L2"\neps = [0.5]\n'
        '[models.b]\narch = "resnet20_b"\n[[attacks]]\nname = "PGD"\nattack = "pgd"\non = "defense"\n')
    suite = load_suite(str(tmp_path / "l2.toml"))
    assert (suite.name, suite.norm, suite.eps, suite.n_examples) == ("t_l2", "L2", (0.5,), 7)
    assert set(suite.models) == {"a", "b"}, "[models] merged by key"
    assert [a.name for a in suite.attacks] == ["PGD"] and [d.name for d in suite.defenses] == ["d"]
    assert "extends" in suite.source and str(base) in suite.source
    (tmp_path / "s.toml").write_text('extends = "l2.toml"\n' + MINIMAL)
    with pytest.raises(SuiteError, match="cycle"):
        load_suite(str(tmp_path / "l2.toml"))
    shipped = load_suite("cifar10_l2")
    assert shipped.norm == "L2" and shipped.defenses == load_suite("cifar10").defenses


def test_a_suite_takes_named_models_from_another(tmp_path):
    trained = '\n[models.t]\nmethod = "finetune"\nfrom = ["a"]\ntrain = { epochs = 3 }\nsource = "made in o"\n'
    (tmp_path / "o.toml").write_text(MINIMAL + trained)
    taker = MINIMAL + '\n[models_from]\n"o.toml" = ["t"]\n'
    suite = load_suite(str(_write(tmp_path, taker)))
    assert suite.models["t"] == load_suite(str(tmp_path / "o.toml")).models["t"], "verbatim"
    for bad, match in ((taker.replace('["t"]', '["z"]'), "has no model 'z'"),
                       (taker + trained, "both under \\[models\\] and taken from"),
                       (taker.replace('"o.toml" = ["t"]', '"s.toml" = ["a"]'), "which takes them from this suite"),
                       ('models_from = ["o.toml"]\n' + MINIMAL, "must map")):
        with pytest.raises(SuiteError, match=match):
            load_suite(str(_write(tmp_path, bad)))


POOLS = MINIMAL.replace('surrogates = ["a"]', '') + """
[pools]
homo = ["a", "h"]
hetero = ["a", "v"]
[models.h]
arch = "resnet32_a"
[models.v]
arch = "vit_tiny_p4"
[[attacks]]
name = "CWA"
attack = "cwa"
pools = ["hetero"]
[[attacks]]
name = "I-FGSM"
attack = "lgv"
surrogates = ["h"]
[[attacks]]
name = "PGD"
attack = "pgd"
on = "defense"
"""


def test_every_transfer_attack_runs_on_each_pool_unless_it_names_its_own(tmp_path):
    suite = load_suite(str(_write(tmp_path, POOLS)))
    assert [a.name for a in suite.attacks] == ["Ens@homo", "Ens@hetero", "CWA@hetero", "I-FGSM", "PGD"]
    ens_homo, ens_hetero, cwa, ifgsm, pgd = suite.attacks
    assert (ens_homo.pool, ens_homo.surrogates, ens_homo.family) == ("homo", ("a", "h"), "Ens")
    assert (ens_hetero.pool, ens_hetero.surrogates) == ("hetero", ("a", "v"))
    assert (cwa.pool, ifgsm.pool, ifgsm.surrogates, pgd.pool, pgd.surrogates) == ("hetero", None, ("h",), None, ())
    assert suite.pools == {"homo": ("a", "h"), "hetero": ("a", "v")}
    # --attacks takes an attack's family name (every pool) or one pool's entry
    assert [a.name for a in apply_overrides(suite, attacks=["Ens"]).attacks] == ["Ens@homo", "Ens@hetero"]
    assert [a.name for a in apply_overrides(suite, attacks=["CWA@hetero", "PGD"]).attacks] == ["CWA@hetero", "PGD"]
    with pytest.raises(SuiteError, match="did you mean Ens@homo"):
        apply_overrides(suite, attacks=["Ens@homa"])


@pytest.mark.parametrize("old,new,match", [
    ('pools = ["hetero"]', 'pools = ["heteros"]', "unknown pool\\(s\\) 'heteros'; did you mean hetero"),
    ('pools = ["hetero"]', 'pools = ["hetero"]\nsurrogates = ["a"]', "surrogates or pools, not both"),
    ('on = "defense"', 'on = "defense"\npools = ["homo"]', "takes no pools"),
    ('homo = ["a", "h"]', 'homo = []', "pool 'homo' has no models"),
    ('homo = ["a", "h"]', 'homo = ["a", "zz"]', "zz not defined"),
    ('members = ["b"]', 'members = ["v"]',
     "model\\(s\\) v would be both a surrogate of attack 'Ens@hetero' and a target"),
])
def test_bad_pools(tmp_path, old, new, match):
    with pytest.raises(SuiteError, match=match):
        load_suite(str(_write(tmp_path, POOLS.replace(old, new, 1))))


def test_a_model_derived_from_a_surrogate_is_no_target_either(tmp_path):
    text = MINIMAL.replace('members = ["b"]', 'members = ["f"]') + \
        '[models.f]\nmethod = "finetune"\nfrom = ["a"]\n'
    with pytest.raises(SuiteError, match="model\\(s\\) a would be both a surrogate of attack 'Ens'"):
        load_suite(str(_write(tmp_path, text)))


def test_a_step_written_relative_to_the_budget(tmp_path):
    from robustbench_ens.suite import at_eps

    text = POOLS.replace('name = "PGD"\nattack = "pgd"\non = "defense"',
                         'name = "PGD"\nattack = "pgd"\non = "defense"\nparams = { alpha = "eps/5", steps = 3 }')
    pgd = load_suite(str(_write(tmp_path, text))).attacks[-1]
    assert at_eps(pgd.params, 0.05) == {"alpha": 0.01, "steps": 3}
    assert at_eps({"alpha": "2.5*eps", "fusion": "logits", "r": "eps"}, 0.04) == \
        {"alpha": pytest.approx(0.1), "fusion": "logits", "r": 0.04}
    for bad in ("eps/0", "eps/x", "eps*2", "-1*eps"):
        with pytest.raises(SuiteError, match="PGD.*eps/<number>"):
            load_suite(str(_write(tmp_path, text.replace('"eps/5"', f'"{bad}"'))))


def test_random_restarts_are_entries_with_their_own_seeds(tmp_path):
    text = POOLS.replace('name = "CWA"\nattack = "cwa"\npools = ["hetero"]',
                         'name = "M-PGD"\nattack = "pgd"\npools = ["hetero"]\nrestarts = 3')
    suite = load_suite(str(_write(tmp_path, text)))
    runs = [a for a in suite.attacks if a.family == "M-PGD"]
    assert [(a.name, a.restart, a.pool) for a in runs] == [(f"M-PGD#{r}@hetero", r, "hetero") for r in range(3)]
    assert [a.name for a in apply_overrides(suite, attacks=["M-PGD"]).attacks] == [a.name for a in runs]
    with pytest.raises(SuiteError, match="restarts"):
        load_suite(str(_write(tmp_path, text.replace("restarts = 3", "restarts = 0"))))


def test_early_stop_is_refused_on_an_adaptive_attack(tmp_path):
    text = POOLS.replace('name = "PGD"\nattack = "pgd"\non = "defense"',
                         'name = "PGD"\nattack = "pgd"\non = "adaptive"\nparams = { early_stop = true }')
    with pytest.raises(SuiteError, match="early_stop.*adaptive"):
        load_suite(str(_write(tmp_path, text)))


def test_the_gpu_protocol_trains_at_the_papers_budgets_on_3_5_and_8_members():
    import defenses  # noqa: F401  (registers dverge, adp, gal, trs)
    from robustbench_ens.zoo.derived import checked_settings

    cpu, gpu = load_suite("dverge_protocol"), load_suite("dverge_protocol_gpu")
    assert gpu.n_examples == 10_000 and gpu.attacks == cpu.attacks and gpu.eps == cpu.eps
    epochs = {"dverge": 200, "adp": 200, "gal": 200, "trs": 120}
    for k, suffix in ((3, ""), (5, "_5"), (8, "_8")):
        for method, budget in epochs.items():
            entry = gpu.models[f"{method}_ours{suffix}"]
            _, settings = checked_settings(method, k, entry.params, entry.train)
            assert len(entry.bases) == k and settings["recipe"]["epochs"] == budget
            assert settings["recipe"].get("epoch_steps") is None
        assert gpu.models[f"baseline_finetuned{suffix}"].train["epochs"] == 200
    assert {gpu.models[f"baseline_m{i}"].checkpoint for i in range(3, 8)} == {None}  # trained here from scratch
    names = {d.name for d in gpu.defenses}
    assert {d.name for d in cpu.defenses} <= names and {"DVERGE-ours-8xRN20", "TRS-ours-5xRN20"} <= names


def test_the_suites_that_share_a_trained_model_share_its_recipe():
    """One cached copy serves both suites only while the recipes match (the cache key is the recipe)."""
    def recipe(suite, name):
        model = load_suite(suite).models[name]
        return model.method, model.bases, model.train, model.params, model.seed, model.source

    for name in ("dverge_ours", "adp_ours", "gal_ours", "trs_ours", "baseline_finetuned"):
        assert recipe("cifar10", name) == recipe("dverge_protocol", name), name
    assert recipe("cifar10", "mba_resnet20") == recipe("cifar10_transfer_methods", "mba_resnet20")
