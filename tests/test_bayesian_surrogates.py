"""MBA and cSGLD surrogate collections: their steps against hand computations, seeding, and their checks."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attacks import LGV
from robustbench_ens.data import load_cifar10
from robustbench_ens.zoo import CSGLD_RECIPE, MBA_RECIPE, collect_csgld, collect_mba, create_model
from robustbench_ens.zoo.derived import checked_settings
from robustbench_ens.zoo.mba import _Moments, flatness_gradient
from robustbench_ens.zoo.train import _scheduler


@pytest.fixture
def small_data(slice_path):
    data = load_cifar10(slice_path)
    return dataclasses.replace(data, x_train=data.x_train[:256], y_train=data.y_train[:256],
                               x_test=data.x_test[:64], y_test=data.y_test[:64])


def test_flatness_gradient_by_hand():
    torch.manual_seed(0)
    net = nn.Linear(6, 3)
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    loss = lambda w, b: F.cross_entropy(x @ w.T + b, y)  # noqa: E731
    w, b = net.weight.detach().clone().requires_grad_(True), net.bias.detach().clone().requires_grad_(True)
    g = torch.autograd.grad(loss(w, b), (w, b))
    shift = 0.1 / torch.sqrt(sum(t.square().sum() for t in g))
    g_plus = torch.autograd.grad(loss(w + shift * g[0], b + shift * g[1]), (w, b))
    F.cross_entropy(net(x), y).backward()
    before = [p.detach().clone() for p in net.parameters()]
    flatness_gradient(net, x, y, radius=0.1, flatness=1.0)
    for p, p0, g_k, gp_k in zip(net.parameters(), before, g, g_plus):
        assert torch.equal(p, p0)  # restored
        assert torch.allclose(p.grad, g_k + 10.0 * (gp_k - g_k), atol=1e-6)


def test_moments_and_draws():
    nets = [nn.Linear(2, 1) for _ in range(3)]
    with torch.no_grad():
        for value, net in zip((1.0, 2.0, 6.0), nets):
            net.weight.fill_(value)
            net.bias.fill_(0.0)
    moments = _Moments(nets[0])
    for net in nets:
        moments.update(net)
    assert torch.allclose(moments.mean[0], torch.full((1, 2), 3.0))
    assert torch.allclose(moments.square[0] - moments.mean[0].square(), torch.full((1, 2), 14 / 3))
    draws = moments.draw(moments.mean_model(nets[0]), 200, scale=1.5, beta=0.0, seed=0)
    weights = torch.stack([d.weight for d in draws]).detach()
    assert abs(weights.mean() - 3.0) < 0.5 and abs(weights.std() - 1.5 * (14 / 3) ** 0.5) < 0.5
    same = moments.draw(moments.mean_model(nets[0]), 2, scale=0.0, beta=0.0, seed=0)
    assert all(torch.allclose(d.weight, torch.full((1, 2), 3.0)) for d in same)


def test_mba_collection(small_data):
    model = create_model("resnet20_a", seed=0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = dataclasses.replace(MBA_RECIPE, epochs=1, batch_size=64)
    make = lambda: collect_mba(model, small_data, recipe, n_samples=3, moment_updates=4, progress=False)  # noqa: E731
    samples = make()
    assert len(samples) == 3 and all(not s.training for s in samples)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "the base model changed"
    first = [s.net.conv1.weight for s in samples]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[0], model.net.conv1.weight)
    assert all(torch.equal(a.net.conv1.weight, b.net.conv1.weight) for a, b in zip(samples, make()))
    x, y = small_data.test(4)
    assert LGV(samples, steps=3)(x, y).shape == x.shape


def test_cyclical_schedule_restarts_each_cycle():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = _scheduler(optimizer, dataclasses.replace(CSGLD_RECIPE, epochs=2, cycles=2), total_steps=8)
    lrs = []
    for _ in range(8):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == lrs[4] == 0.5 and lrs[2] == pytest.approx(0.25) and lrs[3] < lrs[2] < lrs[1] < lrs[0]


def test_csgld_collection(small_data):
    model = create_model("resnet2b", seed=5)  # from scratch starts from the architecture initialised with seed 0
    recipe = dataclasses.replace(CSGLD_RECIPE, epochs=4, cycles=2, batch_size=64)
    make = lambda **kw: collect_csgld(model, small_data, recipe, samples_per_cycle=1,  # noqa: E731
                                      progress=False, **{"noise_epochs": 1, **kw})
    samples = make()
    assert len(samples) == 2 and all(not s.training for s in samples)
    weights = [s.net.linear2.weight for s in samples]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], model.net.linear2.weight)
    assert all(torch.equal(a, b.net.linear2.weight) for a, b in zip(weights, make()))  # seeded, noise included
    quiet = make(noise_epochs=0, temperature=1.0)
    assert not torch.equal(quiet[0].net.linear2.weight, weights[0])  # the Langevin noise moved the samples
    warm = make(warm_start=True)
    assert not torch.equal(warm[0].net.linear2.weight, weights[0])


@pytest.mark.parametrize("method,params,train,match", [
    ("mba", {"n_samples": 0}, {}, "n_samples"), ("mba", {"samples": 3}, {}, "unknown MBA params"),
    ("mba", {"radius": 0.0}, {}, "radius"), ("csgld", {}, {"schedule": "constant"}, "cyclical"),
    ("csgld", {"samples_per_cycle": 60}, {}, r"\[0, 50\]"), ("csgld", {}, {"epochs": 7, "cycles": 2}, "multiple"),
    ("csgld", {"temperature": -1}, {}, "temperature"), ("csgld", {"cycle": 3}, {}, "unknown cSGLD params"),
])
def test_bad_settings(method, params, train, match):
    with pytest.raises(ValueError, match=match):
        checked_settings(method, 1, params, train)


def test_default_settings_are_the_papers():
    _, mba = checked_settings("mba", 1)
    assert (mba["n_samples"], mba["scale"], mba["radius"], mba["recipe"]["lr"], mba["recipe"]["epochs"]) == \
        (50, 1.5, 0.1, 0.05, 10)
    _, csgld = checked_settings("csgld", 1)
    assert (csgld["recipe"]["lr"], csgld["recipe"]["epochs"] // csgld["recipe"]["cycles"], csgld["samples_per_cycle"],
            csgld["noise_epochs"], csgld["recipe"]["momentum"]) == (0.5, 50, 3, 3, 0.0)
