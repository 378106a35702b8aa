"""Leaderboard renderer on a small synthetic grid with known numbers.

Grid: attacks pgd-ens and mi-fgsm (+ the clean row), eps 4/255 and 8/255 (headline 8/255),
defenses ens-a (seeds 0 and 1), ens-b and an XSS-named one (seed 0 only); mi-fgsm at 4/255
on ens-b failed.
"""
from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_ens.leaderboard import build, write_leaderboard
from robustbench_ens.leaderboard.format import canonical_eps, fmt_eps, fmt_pct

E4, E8 = 4 / 255, 8 / 255
XSS = "<script>alert(1)</script>"
SHA = "3f1c2a9d" * 8

# (attack, eps, defense) -> per-seed (robust_acc, success_rate); None = failed cell
GRID = {
    ("clean", 0.0, "ens-a"): [(0.90, np.nan), (0.92, np.nan)],
    ("clean", 0.0, "ens-b"): [(0.85, np.nan)],
    ("clean", 0.0, XSS): [(0.80, np.nan)],
    ("pgd-ens", E8, "ens-a"): [(0.40, 0.55), (0.44, 0.52)],
    ("pgd-ens", E8, "ens-b"): [(0.30, 0.65)],
    ("pgd-ens", E8, XSS): [(0.50, 0.40)],
    ("mi-fgsm", E8, "ens-a"): [(0.50, 0.45), (0.50, 0.46)],
    ("mi-fgsm", E8, "ens-b"): [(0.35, 0.60)],
    ("mi-fgsm", E8, XSS): [(0.45, 0.45)],
    ("pgd-ens", E4, "ens-a"): [(0.60, 0.35), (0.62, 0.33)],
    ("pgd-ens", E4, "ens-b"): [(0.55, 0.40)],
    ("pgd-ens", E4, XSS): [(0.65, 0.20)],
    ("mi-fgsm", E4, "ens-a"): [(0.70, 0.25), (0.66, 0.27)],
    ("mi-fgsm", E4, "ens-b"): [None],
    ("mi-fgsm", E4, XSS): [(0.60, 0.30)],
}
CLEAN = {"ens-a": [0.90, 0.92], "ens-b": [0.85], XSS: [0.80]}


def make_cells() -> pd.DataFrame:
    rows = []
    for (attack, eps, defense), seeds in GRID.items():
        for seed, val in enumerate(seeds):
            ok = val is not None
            robust, success = val if ok else (np.nan, np.nan)
            rows.append(dict(
                cell_id=f"cell{len(rows)}", suite="cifar10-ens", attack=attack, eps=round(eps, 7), defense=defense,
                seed=seed,
                n=200, clean_acc=CLEAN[defense][seed], robust_acc=robust, success_rate=success,
                linf_mean=eps if ok else np.nan, linf_max=eps if ok else np.nan,
                l2_mean=0.5 if ok else np.nan, l2_max=0.9 if ok else np.nan,
                craft_time_s=1.5, eval_time_s=0.2, status="ok" if ok else "failed",
                error=None if ok else "RuntimeError: CUDA out of memory | while crafting",
                finished_at=f"2025-01-01T00:00:{len(rows):02d}+00:00",
                versions=json.dumps({"torch": "2.3.0"})))
    return pd.DataFrame(rows)


def nested_outcomes(cells: pd.DataFrame) -> dict:
    """Per-example outcomes that agree with each ok cell's accuracies: the first clean_acc * n points right clean, the
    first robust_acc * n right under the attack. Nested sets: the per-example worst case is the per-attack minimum."""
    outcomes = {}
    for row in cells[cells["status"] == "ok"].itertuples():
        index = np.arange(int(row.n))
        outcomes[row.cell_id] = (index < round(row.clean_acc * row.n), index < round(row.robust_acc * row.n))
    return outcomes


def make_setting() -> dict:
    return {
        "suite": "cifar10-ens",
        "description": "Transfer attacks from a ResNet/VGG surrogate ensemble on CIFAR-10",
        "date": "2025-01-01T12:00:00+00:00", "version": "0.1.0", "git_commit": "abc1234",
        "hardware": {"device": "cpu", "cpu": "Test CPU 9000", "threads": 2, "torch": "2.3.0"},
        "data": {"source": "cifar-10-batches-py", "sha256": SHA, "n_examples": 200},
        "threat": {"norm": "Linf", "eps": [E4, E8], "headline_eps": E8},
        "seeds": [0, 1],
        "attacks": [
            {"name": "pgd-ens", "class": "EnsemblePGD", "params": {"steps": 10, "alpha": 2 / 255},
             "surrogates": ["resnet18", "vgg11"]},
            {"name": "mi-fgsm", "class": "MIFGSM", "params": {"steps": 10, "decay": 1.0},
             "surrogates": ["resnet18"]},
        ],
        "surrogates": [
            {"name": "resnet18", "arch": "ResNet-18", "origin": "trained here", "source": "zoo",
             "clean_acc": 0.94},
            {"name": "vgg11", "arch": "VGG-11", "origin": "trained here", "source": "zoo",
             "clean_acc": 0.91},
        ],
        "defenses": [
            {"name": "ens-a", "kind": "average", "members": ["m1", "m2"], "origin": "here",
             "clean_acc": 0.91},
            {"name": "ens-b", "kind": "vote", "members": ["m3"], "origin": "here", "clean_acc": 0.85},
            {"name": XSS, "kind": "average", "members": ["m4"], "origin": "here", "clean_acc": 0.8},
        ],
        "runtime_s": 321.0,
        "command": "robustbench-ens run --suite cifar10-ens",
    }


OUTPUTS = {"README.md", "entries.json", "index.html", "heatmap.png", "robust_vs_eps.png", "matrix.csv",
           "defenses.csv", "attacks.csv", "cells.csv", "leaderboard.json", "per_example.csv.gz", "success.csv",
           "paired_tests.csv"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("lb") / "cifar10-ens"
    paths = write_leaderboard(make_cells(), make_setting(), out, nested_outcomes(make_cells()))
    return out, paths


@pytest.fixture(scope="module")
def lb():
    return build(make_cells(), make_setting(), nested_outcomes(make_cells()))


# --------------------------------------------------------------------------- numbers


def test_format_eps_and_pct():
    assert fmt_eps(0.0313725) == "8/255"
    assert fmt_eps(8 / 255) == "8/255"
    assert fmt_eps(0.03) == "0.03"
    assert fmt_eps(0.0) == "0"
    assert fmt_eps(float("inf")) == "inf"  # the budget a grid without attacks ranks at (it crashed, found by fuzzing)
    assert canonical_eps(0.0313725) == canonical_eps(8 / 255)
    assert fmt_pct(0.4234) == "42.3"
    assert fmt_pct(0.42, 0.0283) == "42.0 ± 2.8"
    assert fmt_pct(float("nan")) == "—"


def test_defense_ranking(lb):
    r = lb.defense_ranking
    assert [x["defense"] for x in r] == [XSS, "ens-a", "ens-b"]
    assert [x["rank"] for x in r] == [1, 2, 3]
    worst = {x["defense"]: x["worst_robust_acc"] for x in r}
    assert worst == pytest.approx({XSS: 0.45, "ens-a": 0.42, "ens-b": 0.30})
    strongest = {x["defense"]: x["strongest_attack"] for x in r}
    assert strongest == {XSS: "mi-fgsm", "ens-a": "pgd-ens", "ens-b": "pgd-ens"}
    a = r[1]
    assert a["worst_robust_acc_std"] == pytest.approx(np.std([0.40, 0.44], ddof=1))
    assert a["clean_acc"] == pytest.approx(0.91)
    assert a["clean_acc_std"] == pytest.approx(np.std([0.90, 0.92], ddof=1))
    assert np.isnan(r[0]["worst_robust_acc_std"])  # one seed: no std
    # worst case at the other eps; ens-b's is only an upper bound (mi-fgsm failed there)
    b4 = r[2]["by_eps"]["4/255"]
    assert b4["robust_acc"] == pytest.approx(0.55)
    assert not b4["complete"] and b4["failed_attacks"] == ["mi-fgsm"]
    assert r[1]["by_eps"]["4/255"]["robust_acc"] == pytest.approx(0.61)
    assert r[0]["by_eps"]["4/255"]["strongest_attack"] == "mi-fgsm"
    # at the headline eps, ens-b's union holds the failed mi-fgsm at 4/255 (a smaller eps): an upper bound too
    assert [x["complete"] for x in r] == [True, True, False]
    assert r[2]["failed_attacks"] == ["mi-fgsm @ 4/255"]


def test_attack_ranking(lb):
    r = lb.attack_ranking
    assert [x["attack"] for x in r] == ["pgd-ens", "mi-fgsm"]
    assert r[0]["mean_success_rate"] == pytest.approx((0.535 + 0.65 + 0.40) / 3)
    assert r[1]["mean_success_rate"] == pytest.approx((0.455 + 0.60 + 0.45) / 3)
    assert np.isnan(r[0]["mean_success_rate_std"])  # seed 1 did not run on every defense
    assert r[0]["class"] == "EnsemblePGD" and r[0]["surrogates"] == ["resnet18", "vgg11"]
    mi4 = r[1]["by_eps"]["4/255"]
    assert mi4["success_rate"] == pytest.approx((0.26 + 0.30) / 2)  # failed cell not averaged
    assert not mi4["complete"] and mi4["failed_defenses"] == ["ens-b"] and mi4["n_defenses"] == 2


def test_attack_std_over_seeds_when_every_defense_has_them():
    cells = make_cells()
    extra = cells[(cells["seed"] == 0) & (cells["defense"] != "ens-a")].copy()
    extra["seed"] = 1
    extra["success_rate"] = extra["success_rate"] + 0.02
    lb2 = build(pd.concat([cells, extra]), make_setting())
    pgd = next(x for x in lb2.attack_ranking if x["attack"] == "pgd-ens")
    s0 = np.mean([0.55, 0.65, 0.40])
    s1 = np.mean([0.52, 0.67, 0.42])
    assert pgd["mean_success_rate_std"] == pytest.approx(np.std([s0, s1], ddof=1))


def test_all_seeds_failed_is_failed_not_a_number(lb):
    s = lb.robust[(canonical_eps(E4), "mi-fgsm", "ens-b")]
    assert s.status == "failed" and not s.has_value


# --------------------------------------------------------------------------- files


def test_files_written(rendered):
    out, paths = rendered
    assert {p.name for p in paths} == OUTPUTS
    assert all(p.parent == out and p.is_file() for p in paths)
    leftovers = [p.name for p in out.iterdir() if p.name not in OUTPUTS]
    assert leftovers == []  # no temp files


def test_matrix_csv(rendered):
    out, _ = rendered
    m = pd.read_csv(out / "matrix.csv")
    assert list(m.columns[:3]) == ["eps", "eps_label", "attack"]
    assert {"ens-a", "ens-b", XSS, "ens-a std"} <= set(m.columns)
    row = m[(m["eps_label"] == "8/255") & (m["attack"] == "pgd-ens")].iloc[0]
    assert float(row["ens-a"]) == pytest.approx(0.42)
    assert float(row["ens-b"]) == pytest.approx(0.30)
    assert float(row["ens-a std"]) == pytest.approx(np.std([0.40, 0.44], ddof=1), abs=1e-6)
    failed = m[(m["eps_label"] == "4/255") & (m["attack"] == "mi-fgsm")].iloc[0]
    assert failed["ens-b"] == "failed"
    clean = m[(m["eps_label"] == "8/255") & (m["attack"] == "clean")].iloc[0]
    assert float(clean[XSS]) == pytest.approx(0.80)
    assert set(m["eps_label"]) == {"4/255", "8/255"}


def test_rankings_csv(rendered):
    out, _ = rendered
    d = pd.read_csv(out / "defenses.csv")
    assert list(d["defense"]) == [XSS, "ens-a", "ens-b"]
    assert list(d["worst_robust_acc"]) == pytest.approx([0.45, 0.42, 0.30])
    assert "worst_robust_acc@4/255" in d.columns
    assert d.loc[d["defense"] == "ens-b", "complete@4/255"].item() == False  # noqa: E712
    a = pd.read_csv(out / "attacks.csv")
    assert list(a["attack"]) == ["pgd-ens", "mi-fgsm"]
    c = pd.read_csv(out / "cells.csv")
    assert len(c) == len(make_cells()) and (c["status"] == "failed").sum() == 1


def _strict(text: str):
    def bad(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=bad)


def test_json_is_strict_and_complete(rendered):
    out, _ = rendered
    data = _strict((out / "leaderboard.json").read_text(encoding="utf-8"))
    assert {"setting", "defense_ranking", "attack_ranking", "matrix", "cells"} <= set(data)
    assert data["setting"]["data"]["sha256"] == SHA
    assert [r["defense"] for r in data["defense_ranking"]] == [XSS, "ens-a", "ens-b"]
    assert data["defense_ranking"][0]["worst_robust_acc_std"] is None  # NaN -> null
    m8 = data["matrix"]["8/255"]
    assert m8["headline"] is True
    assert m8["robust_acc"]["pgd-ens"]["ens-a"]["robust_acc"] == pytest.approx(0.42)
    assert data["matrix"]["4/255"]["robust_acc"]["mi-fgsm"]["ens-b"]["status"] == "failed"
    assert data["matrix"]["4/255"]["robust_acc"]["mi-fgsm"]["ens-b"]["robust_acc"] is None
    assert len(data["cells"]) == len(make_cells())


# --------------------------------------------------------------------------- pages


def _section(md: str, heading: str) -> str:
    start = md.index(heading)
    nxt = md.find("\n## ", start + len(heading))
    return md[start: nxt if nxt >= 0 else None]


def test_markdown(rendered):
    out, _ = rendered
    md = (out / "README.md").read_text(encoding="utf-8")
    for text in ("# robustbench-ens leaderboard: cifar10-ens", "## Defense ranking",
                 "## Attack ranking", "## Robust accuracy matrix", "## Setting",
                 "### eps = 8/255 (headline)", "### eps = 4/255",
                 SHA, "first 200 test points", "transfer attack", "4/255, 8/255",
                 "Test CPU 9000", "EnsemblePGD", "resnet18, vgg11", "ResNet-18", "abc1234",
                 "robustbench-ens run --suite cifar10-ens", "5.3 min",
                 "](heatmap.png)", "](robust_vs_eps.png)", "(matrix.csv)", "(leaderboard.json)"):
        assert text in md, text
    assert "<script>" not in md and r"\<script\>alert(1)\</script\>" in md
    ranking = _section(md, "## Defense ranking")
    assert ranking.index("alert(1)") < ranking.index("ens-a") < ranking.index("ens-b")
    # each defense links to its card (GitHub's anchor of the card's heading)
    assert "| 2 | [ens-a](#defense-ens-a) | 91.0 ± 1.4 | 42.0 ± 2.8 | pgd-ens: 42.0 ± 2.8 |" in ranking
    card = md[md.index("### Defense: ens-a"):md.index("### Defense: ens-b")]
    for row in ("| Kind | average |", "| Members | 2: m1, m2 |", "| Clean accuracy (%) | 91.0 |",
                "| Worst case @ 8/255, overall (%) | 42.0 ± 2.8 |"):
        assert row in card, row
    attack_card = md[md.index("### Attack: pgd-ens"):md.index("### Attack: mi-fgsm")]
    assert "| Class | EnsemblePGD |" in attack_card and "| Crafted on | resnet18, vgg11 |" in attack_card
    assert "≤ 55.0" in ranking  # ens-b at 4/255: incomplete worst case
    attacks = _section(md, "## Attack ranking")
    assert "| 1 | pgd-ens | EnsemblePGD | resnet18, vgg11 | 52.8 |" in attacks
    matrix = _section(md, "## Robust accuracy matrix")
    m4 = matrix[matrix.index("### eps = 4/255"):]
    mi_row = next(line for line in m4.splitlines() if line.startswith("| mi-fgsm"))
    assert mi_row == "| mi-fgsm | 60.0 | 68.0 ± 2.8 | failed |"  # columns in ranking order
    assert "| clean (no attack) |" in matrix
    assert "## Failed cells" in md and "CUDA out of memory \\| while crafting" in md


def test_html_self_contained_and_escaped(rendered):
    out, _ = rendered
    page = (out / "index.html").read_text(encoding="utf-8")
    for bad in ('src="http', "href=\"http", "<link", "@import", "url(http", "src='http"):
        assert bad not in page, bad
    assert "alert(1)</script>" not in page and "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the inline sorter
    assert page.count('src="data:image/png;base64,') == 2
    # the rankings link each defense to its card, whose heading carries the anchor
    assert '<a href="#defense-ens-a">ens-a</a>' in page and '<h3 id="defense-ens-a">Defense: ens-a</h3>' in page
    assert page.count('<table class="sortable') >= 5
    assert "addEventListener('click'" in page
    assert 'class="num failed">failed</td>' in page
    values = re.findall(r'data-v="([^"]*)"', page)
    assert values and all(float(v) == float(v) for v in values)  # plain numbers, no NaN
    assert 'data-v="42">42.0 ± 2.8</td>' in page
    assert SHA in page and "Test CPU 9000" in page and "8/255" in page
    # every src/href is a data: URI, an in-page anchor or a file next to the page
    for url in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert url.startswith(("data:", "#")) or "/" not in url and ":" not in url, url


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_pngs(rendered):
    out, _ = rendered
    for name in ("heatmap.png", "robust_vs_eps.png"):
        w, h = _png_size(out / name)
        assert w >= 400 and h >= 250
        assert (out / name).stat().st_size > 10_000


def test_minimal_setting_does_not_crash(tmp_path):
    cells = make_cells().drop(columns=["versions", "finished_at", "error", "suite"])
    paths = write_leaderboard(cells, {}, tmp_path / "min")
    assert {p.name for p in paths} == OUTPUTS
    md = (tmp_path / "min" / "README.md").read_text(encoding="utf-8")
    assert "8/255" in md and "failed" in md
    _strict((tmp_path / "min" / "leaderboard.json").read_text(encoding="utf-8"))


def test_headline_fallback_rerun_and_no_results(tmp_path):
    cells = make_cells()
    # a re-run of the failed cell that succeeded later replaces it; an earlier failure is kept
    rerun = cells[cells["status"] == "failed"].copy()
    rerun[["status", "error", "robust_acc", "success_rate"]] = ["ok", None, 0.50, 0.4]
    rerun["finished_at"] = "2025-01-02T00:00:00+00:00"
    setting = make_setting()
    setting["threat"]["headline_eps"] = 16 / 255  # not in the data
    lb2 = build(pd.concat([cells, rerun]), setting)
    assert lb2.headline_eps == canonical_eps(E8)
    assert lb2.robust[(canonical_eps(E4), "mi-fgsm", "ens-b")].mean == pytest.approx(0.50)
    assert lb2.failed.empty
    paths = write_leaderboard(cells.iloc[:0], {"suite": "empty"}, tmp_path / "empty")
    assert {p.name for p in paths} == OUTPUTS
    assert "no attack results" in (tmp_path / "empty" / "README.md").read_text(encoding="utf-8")


def test_the_caveat_names_crossmax_defenses_as_transfer_only():
    from robustbench_ens.leaderboard.page import caveat

    setting = make_setting()
    assert "CrossMax" not in caveat(build(make_cells(), setting), setting)
    setting["defenses"][1].update(kind="self_ensemble")
    setting["defenses"][0].update(kind="ensemble", params={"aggregation": "crossmax"})
    text = caveat(build(make_cells(), setting), setting)
    assert "ens-a, ens-b aggregate with CrossMax" in text and "not a robustness claim" in text
    assert "upper bound on its white-box robustness" in text
    assert "White-box attacks" not in text
    _kinds(setting, **{"pgd-ens": "adaptive"})
    text = caveat(build(make_cells(), setting), setting)
    assert "White-box attacks are crafted on each defense itself" in text
    assert "ens-a, ens-b aggregate with CrossMax" in text and "read their rows under the adaptive attack" in text


def test_the_summary_counts_attacks_by_kind():
    from robustbench_ens.leaderboard.page import summary

    setting = make_setting()
    text = summary(build(make_cells(), setting), setting)
    assert "3 defenses against 2 transfer attacks crafted on surrogate models (resnet18, vgg11)," in text
    _kinds(setting, **{"pgd-ens": "adaptive"})
    text = summary(build(make_cells(), setting), setting)
    assert ("3 defenses against 2 attacks: 1 transfer attack crafted on surrogate models (resnet18, vgg11), "
            "and 1 run against each defense itself (adaptive),") in text
    assert "slice" not in text
    setting["slice"] = "2 of its 5 attacks; the first 8 of its 1000 test points"
    text = summary(build(make_cells(), setting), setting)
    assert ("This page shows a slice of that suite, run with fewer of its settings: 2 of its 5 attacks; the first 8 "
            "of its 1000 test points.") in text


def _kinds(setting: dict, **kinds) -> dict:
    setting["attacks"] = [{**a, "kind": kinds.get(a["name"], "transfer")} for a in setting["attacks"]]
    return setting


def test_masking_check_flags_a_transfer_attack_beating_the_white_box_one(tmp_path):
    setting = _kinds(make_setting(), **{"pgd-ens": "white-box"})
    lb = build(make_cells(), setting)
    assert lb.masking["ens-a"] == [] and lb.masking["ens-b"] == []
    assert lb.masking[XSS] == ["at 4/255 the transfer attack mi-fgsm (60.0 %) beats every white-box attack (65.0 %)",
                               "at 8/255 the transfer attack mi-fgsm (45.0 %) beats every white-box attack (50.0 %)"]
    assert build(make_cells(), make_setting()).masking[XSS] == [], "no white-box attack: nothing to check"
    out = tmp_path / "lb"
    write_leaderboard(make_cells(), setting, out)
    ranking = _section((out / "README.md").read_text(encoding="utf-8"), "## Defense ranking")
    assert "⚠ gradient masking? at 4/255 the transfer attack mi-fgsm" in ranking
    assert "no white-box attack ran" not in ranking, "pgd-ens ran at every eps"
    entries = json.loads((out / "entries.json").read_text())
    entry = next(e for e in entries if e["name"] == "ens-b")
    assert entry["adaptive_worst_case"] == pytest.approx(0.30) and entry["autoattack_acc"] is None
    assert entry["eps"] == pytest.approx(E8) and entry["masking_warnings"] == []


def _grid_cells(robust: dict) -> pd.DataFrame:
    """Cells from {(attack, eps, defense): robust accuracy}, clean accuracy 1.0."""
    rows = [dict(suite="toy", attack=a, eps=e, defense=d, seed=0, n=200, clean_acc=1.0, robust_acc=r,
                 success_rate=1 - r, status="ok") for (a, e, d), r in robust.items()]
    rows += [dict(suite="toy", attack="clean", eps=0.0, defense=d, seed=0, n=200, clean_acc=1.0, robust_acc=1.0,
                  success_rate=0.0, status="ok") for d in sorted({d for _, _, d in robust})]
    return pd.DataFrame(rows).assign(cell_id=lambda frame: [f"cell{i}" for i in range(len(frame))])


def test_masking_checks_fire_on_a_masked_toy_model_and_stay_quiet_on_a_plain_one():
    import torch
    from torch import nn

    from attacks import PGD, Ens
    from conftest import TinyNet
    from test_whitebox import Quantised

    net = TinyNet().eval()
    defenses = {"plain": net, "masked": nn.Sequential(Quantised(), net).eval()}
    images = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    robust = {}
    for name, model in defenses.items():
        labels = model(images).argmax(1)
        accuracy = lambda x: (model(x).argmax(1) == labels).float().mean().item()  # noqa: E731,B023
        for eps in (E4, E8):
            robust[("PGD", eps, name)] = accuracy(PGD(model, eps=eps, steps=10)(images, labels))
            robust[("Ens", eps, name)] = accuracy(Ens(net, eps=eps, steps=10)(images, labels))  # from the bare net
    robust[("PGD", 64 / 255, "masked")] = robust[("PGD", E8, "masked")]  # PGD cannot move at any eps
    robust[("PGD", 64 / 255, "plain")] = 0.0
    setting = {"suite": "toy", "threat": {"norm": "Linf"}, "attacks": [
        {"name": "PGD", "kind": "white-box"}, {"name": "Ens", "kind": "transfer"}]}
    lb = build(_grid_cells(robust), setting)
    assert lb.masking["plain"] == []
    from robustbench_ens.leaderboard.page import _transfer_only_note
    assert _transfer_only_note(lb) == ""
    del robust[("PGD", E4, "plain")], robust[("PGD", E4, "masked")]
    note = _transfer_only_note(build(_grid_cells(robust), setting))
    assert note == (" At 4/255 no white-box attack ran: there the worst case is over transfer attacks only, "
                    "an upper bound.")
    warnings = " | ".join(lb.masking["masked"])
    assert "the transfer attack Ens" in warnings and "at the large eps 64/255" in warnings


def test_masking_check_flags_more_steps_leaving_more_points_robust():
    robust = {("PGD-10", E8, "d"): 0.20, ("PGD-50", E8, "d"): 0.30, ("PGD-10", E8, "e"): 0.20,
              ("PGD-50", E8, "e"): 0.10}
    setting = {"suite": "toy", "attacks": [
        {"name": "PGD-10", "class": "PGD", "kind": "white-box", "params": {"steps": 10, "eot_samples": 1}},
        {"name": "PGD-50", "class": "PGD", "kind": "white-box", "params": {"steps": 50, "eot_samples": 1}}]}
    lb = build(_grid_cells(robust), setting)
    assert lb.masking["d"] == ["at 8/255 PGD-50 (50 steps) leaves more robust (30.0 %) than PGD-10 (10 steps, 20.0 %)"]
    assert lb.masking["e"] == []


def test_an_attack_run_on_a_subset_of_defenses_leaves_the_others_complete(tmp_path):
    robust = {("Ens", E8, "robust"): 0.50, ("Ens", E8, "weak"): 0.10, ("AA", E8, "robust"): 0.30}
    setting = {"suite": "toy", "threat": {"norm": "Linf"}, "attacks": [
        {"name": "Ens", "kind": "transfer", "defenses": "all"},
        {"name": "AA", "kind": "white-box", "defenses": ["robust"]}]}
    lb = build(_grid_cells(robust), setting, nested_outcomes(_grid_cells(robust)))
    ranking = {r["defense"]: r for r in lb.defense_ranking}
    assert ranking["weak"]["complete"] and ranking["weak"]["missing_attacks"] == []
    assert ranking["robust"]["complete"] and ranking["robust"]["worst_robust_acc"] == pytest.approx(0.30)
    attacks = {r["attack"]: r for r in lb.attack_ranking}
    assert attacks["AA"]["complete"] and attacks["AA"]["subset"] and attacks["AA"]["n_defenses"] == 1
    assert attacks["AA"]["missing_defenses"] == [] and not attacks["Ens"]["subset"]
    assert [r["attack"] for r in lb.attack_ranking] == ["Ens", "AA"], "a subset's mean is ranked after"
    write_leaderboard(_grid_cells(robust), setting, tmp_path, nested_outcomes(_grid_cells(robust)))
    page = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "| ≤" not in _section(page, "## Defense ranking"), "no defense is incomplete"
    assert re.search(r"\| AA \|.*\| robust \|", _section(page, "### Attacks"))
    assert re.search(r"\| Ens \|.*\| all \|", _section(page, "### Attacks"))


def test_l2_budgets_are_shown_as_decimals():
    assert [fmt_eps(e) for e in (0.25, 0.5, 1.0, 4.0, 254 / 255)] == ["0.25", "0.5", "1", "4", "254/255"]
    assert canonical_eps(4.0) == 4.0 and canonical_eps(1.0) == 1.0


def test_masking_check_flags_a_black_box_attack_beating_the_white_box_one():
    robust = {("PGD", E8, "d"): 0.60, ("Square", E8, "d"): 0.20, ("PGD", E8, "e"): 0.10, ("Square", E8, "e"): 0.30}
    setting = {"suite": "toy", "attacks": [{"name": "PGD", "kind": "white-box"},
                                           {"name": "Square", "kind": "black-box"}]}
    lb = build(_grid_cells(robust), setting)
    assert lb.masking["d"] == ["at 8/255 the black-box attack Square (20.0 %) beats every white-box attack (60.0 %)"]
    assert lb.masking["e"] == []


def test_the_eps_plot_does_not_join_transfer_only_worst_cases_to_white_box_ones():
    from robustbench_ens.leaderboard.plots import robust_vs_eps_png

    robust = {("Ens", E4, "d"): 0.6, ("Ens", E8, "d"): 0.5, ("PGD", E8, "d"): 0.1}
    setting = {"suite": "toy", "attacks": [{"name": "Ens", "kind": "transfer"}, {"name": "PGD", "kind": "white-box"}]}
    lb = build(_grid_cells(robust), setting)
    assert lb.transfer_only(E4, "d") and not lb.transfer_only(E8, "d"), "at 4/255 only a transfer attack ran"
    transfer = {"suite": "toy", "attacks": [{"name": "Ens", "kind": "transfer"}]}
    assert not build(_grid_cells({("Ens", E4, "d"): 0.6}), transfer).transfer_only(E4, "d")
    assert robust_vs_eps_png(lb, setting).startswith(b"\x89PNG")


def test_the_front_page_lists_every_published_leaderboard(tmp_path):
    import shutil

    from robustbench_ens.leaderboard.front import write_front_page

    published = Path(__file__).resolve().parents[1] / "leaderboards"
    for folder in ("cifar10/first_edition", "cifar10/first_edition/per_example_preview"):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(published / folder / "leaderboard.json", tmp_path / folder / "leaderboard.json")
    readme, index = write_front_page(tmp_path)
    text = readme.read_text()
    first, preview = "cifar10/first\\_edition", "cifar10/first\\_edition/per\\_example\\_preview"
    assert f"| {first} | 13 defenses; 8 transfer, 3 white-box, 1 adaptive, 1 black-box attacks | 500 |" in text
    assert "| per attack (first edition) | RN2B-AT2: 13.8 % (clean 69.0 %) |" in text
    assert f"| {preview} | 7 defenses; 7 transfer, 1 white-box attacks | 500 |" in text
    assert f"[{preview}/README.md](cifar10/first_edition/per_example_preview/README.md)" in text
    assert 'href="cifar10/first_edition/index.html"' in index.read_text()


def test_the_front_page_puts_the_answers_first_with_the_pages_behind_them(tmp_path):
    from robustbench_ens.leaderboard.front import read_answers, write_front_page

    (tmp_path / "answers.toml").write_text('''
[[answer]]
question = "Does X beat Y?"
answer = "No: -1.0 [-2.0, 0.0] points, no significant difference."
backed_by = [{ page = "suite_a/README.md", what = "paired tests" }]
''')
    readme, index = write_front_page(tmp_path)
    text = readme.read_text()
    assert text.index("## Answers") < text.index("## Suites")
    assert "Does X beat Y? No: -1.0 \\[-2.0, 0.0\\] points" in text
    assert "- [suite\\_a/README.md](suite_a/README.md): paired tests" in text
    assert 'href="suite_a/index.html"' in index.read_text()
    (tmp_path / "answers.toml").write_text('[[answer]]\nquestion = "Q?"\n')
    with pytest.raises(ValueError, match="answer 1 needs"):
        read_answers(tmp_path)
    (tmp_path / "answers.toml").write_text('[[answer]]\nquestion = "Q?"\nanswer = "`Ens` wins"\nbacked_by = []\n')
    with pytest.raises(ValueError, match="answer 1 is plain text"):
        read_answers(tmp_path)


def test_the_strongest_attack_cell_names_at_most_two_tied_attacks():
    from robustbench_ens.leaderboard.views import _single_cell
    cell = lambda names: _single_cell({"strongest_attack": names, "single_attack_acc": 0.024,  # noqa: E731
                                       "single_attack_acc_std": math.nan}).text
    assert cell("PGD") == "PGD: 2.4"
    assert cell("PGD, Square") == "PGD, Square: 2.4"
    assert cell("PGD-50#2, PGD-50#3, PGD-50#4") == "PGD-50#2 and 2 more: 2.4"


@pytest.mark.parametrize("width", [3.6, 6.0, 12.0])
def test_a_long_figure_title_is_wrapped_inside_the_figure(width):
    """A one-panel heatmap is narrower than its setting line: the title wraps instead of being clipped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from robustbench_ens.leaderboard.plots import suptitle

    fig = Figure(figsize=(width, 3), layout="constrained")
    fig.subplots()
    suptitle(fig, "Robust accuracy (%) - smoke: first 16 test points, Linf transfer/white-box attacks, 1 seed (0)"
             "\nsecond line")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box, frame = fig._suptitle.get_window_extent(canvas.get_renderer()), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1, (box, frame)


def test_cells_of_the_plan_that_have_not_run_are_missing_not_absent():
    """A partial publication (--publish-only before the grid finished): an attack planned at an eps with no cell
    yet is a row of '—' at that eps, and the defenses' worst cases there are marked incomplete."""
    robust = {("Ens", E4, "d"): 0.6, ("Ens", E8, "d"): 0.5, ("Ens", E4, "e"): 0.7, ("Ens", E8, "e"): 0.4,
              ("PGD", E4, "d"): 0.2}  # PGD has not run at 8/255 nor on e; Ens-probs not at all
    setting = {"suite": "toy", "threat": {"eps": [E4, E8], "headline_eps": E8},
               "attacks": [{"name": "Ens", "kind": "transfer", "eps": [E4, E8]},
                           {"name": "Ens-probs", "kind": "transfer", "eps": [E4, E8]},
                           {"name": "PGD", "kind": "white-box", "eps": [E4, E8]}]}
    lb = build(_grid_cells(robust), setting)
    assert lb.headline_eps == E8 and lb.matrix_rows(E8) == ["clean", "Ens", "Ens-probs", "PGD"]
    assert not lb.matrix_stat(E8, "Ens-probs", "d").has_value
    for defense in ("d", "e"):
        head = next(r for r in lb.defense_ranking if r["defense"] == defense)
        assert not head["complete"] and "Ens-probs" in head["missing_attacks"], head
    transfer_only = build(_grid_cells({k: v for k, v in robust.items() if k[0] == "Ens"}),
                          {**setting, "attacks": setting["attacks"][:1]})
    assert all(not r["missing_attacks"] for r in transfer_only.defense_ranking), "everything planned ran"
