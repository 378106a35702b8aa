"""IBP certificates (robustbench_ens.certify): exact on hand-computed nets, sound under sampling and PGD, and the
leaderboard's check that no attack breaks a certified point, on hand-made outcome tables and end to end."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from attacks import PGD
from conftest import TinyNet, shared_models_path
from robustbench_ens.certify import UnsupportedModelError, certified, margin_lower_bounds
from robustbench_ens.data import load_cifar10
from robustbench_ens.leaderboard import build, write_leaderboard
from robustbench_ens.runner import RunConfig, run_suite
from robustbench_ens.suite import SuiteError, apply_overrides, load_suite
from robustbench_ens.zoo import load_checkpoint
from robustbench_ens.zoo.normalize import CIFAR10_MEAN, CIFAR10_STD, RAW_PIXEL_MEAN, RAW_PIXEL_STD, Normalized
from test_worst_case import _table

E2, E8, E16 = 2 / 255, 8 / 255, 16 / 255
CNN_A = "cnn_a_certified_linf8"


def _linear(weight, bias) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


W, B = [[1.0, -2.0], [3.0, 0.5], [0.0, 1.0]], [0.1, -0.2, 0.3]


def test_a_linear_layer_is_bounded_exactly_by_the_rows_w_y_minus_w_j():
    """The margin of a linear map over a box is attained at a corner: c . mid + d - |c| . rad, exactly."""
    net = _linear(W, B)
    images, labels = torch.tensor([[0.5, 0.5], [0.95, 0.05]]), torch.tensor([1, 1])
    # point 0, box [0.4, 0.6]^2: W1 - W0 = (2, 2.5), b1 - b0 = -0.3 -> 2.25 - 0.3 - 0.45 = 1.5;
    # W1 - W2 = (3, -0.5), b1 - b2 = -0.5 -> 1.25 - 0.5 - 0.35 = 0.4 (the logits' intervals would give only 1.3, 0.3)
    # point 1, box [0.85, 1] x [0, 0.15] (clipped to [0, 1]): 1.7 + 0 - 0.3 = 1.4 and 2.55 - 0.075 - 0.5 = 1.975
    bounds = margin_lower_bounds(net, images, labels, 0.1)
    np.testing.assert_allclose(bounds, [[1.5, math.inf, 0.4], [1.4, math.inf, 1.975]], rtol=1e-6)
    assert certified(net, images, labels, 0.1).tolist() == [True, True]
    # at 0.3 point 0's box [0.2, 0.8]^2 lets class 2 win: 1.25 - 0.5 - 1.05 = -0.3
    assert margin_lower_bounds(net, images[:1], labels[:1], 0.3)[0, 2].item() == pytest.approx(-0.3)
    assert certified(net, images, labels, 0.3).tolist() == [False, True]
    assert certified(net, images, torch.tensor([0, 1]), 0.0).tolist() == [False, True]  # point 0 is class 1


def test_the_normalisation_of_a_raw_pixel_model_is_bounded_as_its_affine_map():
    """mean 0.1, std 1/255 on 1x1 RGB images: margin 255 (-(r - 0.1) + 2 (g - 0.1) + (b - 0.1)) over the box."""
    net = nn.Sequential(nn.Flatten(), _linear([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], [0.0, 0.0]))
    model = Normalized(net, mean=(0.1, 0.1, 0.1), std=RAW_PIXEL_STD, arch="toy")
    image = torch.tensor([0.2, 0.5, 0.3]).view(1, 3, 1, 1)  # box r in [0.1, 0.3], g in [0.4, 0.6], b in [0.2, 0.4]
    assert margin_lower_bounds(model, image, torch.tensor([1]), 0.1)[0, 0].item() == pytest.approx(255 * 0.5)


def test_a_net_not_ending_in_linear_is_bounded_by_its_outputs_intervals():
    """Sequential(Linear, Sigmoid): logits' boxes [-0.7, -0.1], [1.2, 1.9], [0.7, 0.9] at (0.5, 0.5), eps 0.1."""
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    bounds = margin_lower_bounds(nn.Sequential(_linear(W, B), nn.Sigmoid()), torch.tensor([[0.5, 0.5]]),
                                 torch.tensor([1]), 0.1)
    np.testing.assert_allclose(bounds[0], [sigmoid(1.2) - sigmoid(-0.1), math.inf, sigmoid(1.2) - sigmoid(0.9)],
                               rtol=1e-6)


def _random_net(seed: int, activation: type[nn.Module], std) -> Normalized:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), activation(), nn.Conv2d(4, 6, 3), activation(),
                        nn.Flatten(), nn.Linear(6 * 2 * 2, 8), activation(), nn.Linear(8, 5))
    return Normalized(net, mean=CIFAR10_MEAN if std == CIFAR10_STD else RAW_PIXEL_MEAN, std=std, arch="toy").eval()


def _margins(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = model(images).double()
    return (logits.gather(1, labels.view(-1, 1)) - logits).scatter(1, labels.view(-1, 1), math.inf)  # as the bounds


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Sigmoid])
@pytest.mark.parametrize("std", [CIFAR10_STD, RAW_PIXEL_STD])
def test_no_sampled_or_attacked_point_of_the_ball_beats_the_bounds(activation, std):
    model = _random_net(seed=0, activation=activation, std=std)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(12, 3, 8, 8, generator=generator)
    with torch.no_grad():
        labels = model(images).argmax(1)  # every point right clean, so the certificate turns on the margins alone
    scale = 1 if std == CIFAR10_STD else 255  # a raw-pixel net's margins (and bounds) grow 255 times
    for eps in (0.3 / 255, 2 / 255, 8 / 255):
        bounds, points = margin_lower_bounds(model, images, labels, eps), certified(model, images, labels, eps)
        # 200 corners of the box (where a linear margin's extremes lie) and 200 points inside it, per image
        deltas = torch.cat([torch.randint(0, 2, (200, *images.shape), generator=generator) * 2 - 1.0,
                            torch.rand(200, *images.shape, generator=generator) * 2 - 1])
        x = (images + eps * deltas).clamp(0, 1).flatten(0, 1)
        assert (_margins(model, x, labels.repeat(400)) >= bounds.repeat(400, 1) - 1e-5 * scale).all()
        x_adv = PGD(model, eps=eps, steps=10)(images, labels)
        assert (_margins(model, x_adv, labels) >= bounds - 1e-5 * scale).all()
        with torch.no_grad():
            assert (model(x_adv).argmax(1) == labels)[torch.from_numpy(points)].all()
        if eps == 0.3 / 255:
            assert points.any(), "a small ball certifies some points, or the test checks nothing"


@pytest.mark.parametrize("model,match", [
    (Normalized(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2)), CIFAR10_MEAN, CIFAR10_STD, "toy"),
     "layer 'net.1' \\(MaxPool2d\\)"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), "layer '1' \\(BatchNorm2d\\)"),
    (nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"))), "'0.0'.*reflect"),
    (TinyNet(), "layer 'model' \\(TinyNet\\)"),
    (type("Custom", (nn.Sequential,), {})(nn.Flatten()), "\\(Custom\\)"),  # a subclass may compute anything
])
def test_a_layer_ibp_cannot_bound_is_named(model, match):
    with pytest.raises(UnsupportedModelError, match=match):
        certified(model, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), E8)


def test_an_l2_ball_is_certified_through_the_linf_ball_that_holds_it():
    x, y = torch.rand(64, 2, generator=torch.Generator().manual_seed(0)), torch.randint(0, 2, (64,))
    model = _linear(W, B)
    l2 = certified(model, x, y, 0.1, norm="L2")
    assert np.array_equal(l2, certified(model, x, y, 0.1, norm="Linf"))
    # sound: no point of an L2 ball around a certified point changes the prediction (sampled on the sphere)
    directions = torch.randn(64, 200, 2, generator=torch.Generator().manual_seed(1))
    points = (x[:, None] + 0.1 * directions / directions.norm(dim=2, keepdim=True)).clamp(0, 1)
    with torch.no_grad():
        kept = (model(points.reshape(-1, 2)).argmax(1).reshape(64, 200) == y[:, None]).all(1).numpy()
    assert l2.any() and kept[l2].all()
    with pytest.raises(UnsupportedModelError, match="not norm 'L1'"):
        certified(model, x, y, 0.5, norm="L1")


# ----------------------------------------------------------------------------- the leaderboard's check

SETTING = {"suite": "toy", "threat": {"norm": "Linf", "headline_eps": E8},
           "attacks": [{"name": "PGD", "kind": "white-box"}, {"name": "Ens", "kind": "transfer"}]}
CLEAN_C = "1111111110"
ROWS = {
    ("clean", 0.0, "c"): (CLEAN_C, CLEAN_C),
    ("PGD", E2, "c"): (CLEAN_C, "0011111110"),  # breaks points 0, 1
    ("PGD", E8, "c"): (CLEAN_C, "0011100000"),  # breaks 0, 1 and 5..8
    ("Ens", E8, "c"): (CLEAN_C, "1111100110"),  # breaks 5, 6
}


def _bits(points: str) -> np.ndarray:
    return np.array([c == "1" for c in points])


def test_an_attack_that_breaks_a_certified_point_is_flagged_and_one_that_does_not_is_not(tmp_path):
    cells, outcomes = _table(ROWS)
    certificates = {("c", E2): _bits("0011100000"), ("c", E8): _bits("1111100000")}  # as if from certified()
    lb = build(cells, SETTING, outcomes, certificates)
    found = lb.certificate_checks["c"]
    assert found[E2] == []  # PGD@2 breaks 0, 1, which IBP does not certify at 2/255; Ens@8 is outside that ball
    # at 8/255 it certifies 0..4: PGD@2 (inside the ball) and PGD@8 break 0 and 1; Ens breaks only uncertified points
    assert found[E8] == [f"attack PGD at {a} turns 2 points wrong that IBP certifies at 8/255: an eps or evaluation bug"
                         for a in ("2/255", "8/255")]
    assert lb.certified_acc("c", E8) == pytest.approx(0.5)

    write_leaderboard(cells, SETTING, tmp_path, outcomes, certificates=certificates)
    page = (tmp_path / "README.md").read_text(encoding="utf-8")
    section = page[page.index("## Certified lower bounds (IBP)"):page.index("## Attack ranking")]
    assert "| c | 2/255 | 30.0 | 70.0 | yes |" in section
    assert "| c | 8/255 | 50.0 | 30.0 | no: attack PGD at 2/255 turns 2 points wrong" in section
    ranking = page[page.index("## Defense ranking"):page.index("## Certified")]
    assert "⚠ certificate broken: attack PGD at 2/255 turns 2 points wrong that IBP certifies at 8/255" in ranking
    entries = {e["name"]: e for e in json.loads((tmp_path / "entries.json").read_text())}
    assert entries["c"]["certified_acc"] == pytest.approx(0.5)
    saved = json.loads((tmp_path / "leaderboard.json").read_text())["certificates"]["c"]
    assert saved["2/255"] == {"eps": pytest.approx(E2), "certified_acc": pytest.approx(0.3), "violations": []}
    assert len(saved["8/255"]["violations"]) == 2


def test_a_certificate_no_attack_outcome_reaches_is_not_checked_and_says_so(tmp_path):
    cells, outcomes = _table({key: bits for key, bits in ROWS.items() if key[1] != E2})
    lb = build(cells, SETTING, outcomes, {("c", E2): _bits("1111100000")})
    assert lb.certificate_checks == {"c": {E2: None}}  # only attacks at 8/255 ran: none lies inside the 2/255 ball
    write_leaderboard(cells, SETTING, tmp_path, outcomes, certificates={("c", E2): _bits("1111100000")})
    assert "| c | 2/255 | 50.0 | — | not checked: no attack with per-example outcomes |" in \
        (tmp_path / "README.md").read_text(encoding="utf-8")
    assert build(cells, SETTING, outcomes).certificate_checks == {}  # no certificate, no check


def test_a_certificate_over_other_points_than_the_outcomes_is_an_error():
    cells, outcomes = _table(ROWS)
    with pytest.raises(ValueError, match="covers 3 points, the outcomes of PGD at 2/255 10"):
        build(cells, SETTING, outcomes, {("c", E8): _bits("111")})


def _outcome_text(points: np.ndarray) -> str:
    return "".join("1" if p else "0" for p in points)


def test_an_attack_crafted_at_a_larger_eps_than_recorded_breaks_the_certificate():
    """IBP at 2/255, then PGD crafted at 16/255 but recorded as a 2/255 cell (an eps bug): flagged; crafted at the
    2/255 it is recorded at: quiet."""
    model = _random_net(seed=0, activation=nn.ReLU, std=CIFAR10_STD)
    images = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        labels = model(images).argmax(1)
    certificate = certified(model, images, labels, E2)
    assert certificate.any()
    found = {}
    for crafted_at in (E16, E2):
        with torch.no_grad():
            adv = model(PGD(model, eps=crafted_at, steps=20)(images, labels)).argmax(1) == labels
        right = _outcome_text(np.ones(len(images), dtype=bool))
        cells, outcomes = _table({("clean", 0.0, "m"): (right, right),
                                  ("PGD", E2, "m"): (right, _outcome_text(adv.numpy()))})
        found[crafted_at] = build(cells, SETTING, outcomes, {("m", E2): certificate}).certificate_checks["m"][E2]
    assert len(found[E16]) == 1 and "IBP certifies at 2/255: an eps or evaluation bug" in found[E16][0]
    assert found[E2] == []


# ----------------------------------------------------------------------------- a real certified model


@pytest.fixture
def cnn_a():
    path = shared_models_path() / f"{CNN_A}.safetensors"
    if not path.is_file():
        pytest.skip(f"no {path}")
    return load_checkpoint(path)[0]


def test_the_certified_cnn_a_has_a_plausible_ibp_floor_that_pgd_respects(cnn_a, slice_path):
    """Wong et al. (2018) report about 21 % certified at 8/255 with their dual bound; IBP is looser."""
    images, labels = load_cifar10(slice_path).test(100)
    points = certified(cnn_a, images, labels, E8)
    assert 0.05 <= points.mean() <= 0.4  # 26 % measured on these points
    with torch.no_grad():
        broken = cnn_a(PGD(cnn_a, eps=E8, steps=20)(images, labels)).argmax(1) != labels
    assert not broken[torch.from_numpy(points)].any()


SUITE = f"""
name = "certified"
surrogates = ["standard"]
[data]
n_examples = 40
batch_size = 40
[threat]
eps = ["2/255", "8/255"]
[models.standard]
arch = "cnn-a-2c2f"
checkpoint = "cnn_a_standard"
[models.certified]
arch = "cnn-a-2c2f"
checkpoint = "{CNN_A}"
require_checkpoint = true
[[attacks]]
name = "PGD"
attack = "pgd"
on = "defense"
params = {{ steps = 10 }}
[[defenses]]
name = "cnn-a-certified"
members = ["certified"]
certify = "ibp"
"""


def test_the_runner_checks_a_certified_defense_and_publishes_its_floor(cnn_a, slice_path, tmp_path):
    (tmp_path / "s.toml").write_text(SUITE)
    config = RunConfig(suite=apply_overrides(load_suite(str(tmp_path / "s.toml")), device="cpu"),
                       out_dir=tmp_path / "run", leaderboard_dir=tmp_path / "lb", data_path=str(slice_path),
                       models_dir=shared_models_path(), cache_dir=tmp_path / "cache", progress=False)
    run_suite(config)
    page = (tmp_path / "lb" / "README.md").read_text(encoding="utf-8")
    section = page[page.index("## Certified lower bounds (IBP)"):page.index("## Attack ranking")]
    assert section.count("| cnn-a-certified |") == 2 and section.count("| yes |") == 2
    entry = json.loads((tmp_path / "lb" / "entries.json").read_text())[0]
    assert 0 < entry["certified_acc"] <= entry["adaptive_worst_case"]

    unbounded = replace(config.suite, models={**config.suite.models, "certified": replace(
        config.suite.models["certified"], arch="resnet2b", checkpoint="resnet2b_at2")})
    with pytest.raises(SuiteError, match="defense 'cnn-a-certified' \\(certify = 'ibp'\\): cannot bound layer 'net' "
                                         "\\(VnnResNet\\)"):
        run_suite(replace(config, suite=unbounded, out_dir=tmp_path / "run2"))
    assert not (tmp_path / "run2" / "adv").exists() or not any((tmp_path / "run2" / "adv").iterdir())
