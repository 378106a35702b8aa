"""ADP, GAL and TRS: their losses against hand computations, one step lowers each, and joint training resumes."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import interrupted_training
from defenses import JointRecipe, adp_loss, adp_objective, gal_loss, gal_objective, train_jointly, trs_objective
from defenses.trs import trs_loss
from robustbench_ens.zoo import create_model, list_methods
from robustbench_ens.zoo.derived import checked_settings


class Linear(nn.Module):
    """logits = W x on flattened inputs, in float64: its cross-entropy input gradient has a closed form."""

    def __init__(self, seed, n_in=4, n_classes=3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, n_in, generator=torch.Generator().manual_seed(seed),
                                               dtype=torch.float64))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def ce_input_gradient(model, x, y):
    """d mean_n CE(W x_n, y_n) / d x, by hand: W^T (softmax(W x) - onehot(y)) / N."""
    p = torch.softmax(x @ model.weight.T, dim=1)
    return (p - F.one_hot(y, p.shape[1]).double()) @ model.weight / len(x)


def test_adp_loss_by_hand():
    logits = [torch.tensor([row], dtype=torch.float64) for row in ([2.0, 1.0, 0.0], [0.0, 3.0, 1.0])]
    y = torch.tensor([0])
    p = [z.softmax(1)[0] for z in logits]
    ce = sum(-math.log(q[0].item()) for q in p)
    mean = (p[0] + p[1]) / 2
    entropy = -(mean * torch.log(mean)).sum().item()
    u, v = (q[1:] / q[1:].norm() for q in p)
    cos = (u @ v).item()
    log_det = math.log((1 + 1e-6) ** 2 - cos ** 2)
    loss, terms = adp_loss(logits, y, alpha=2.0, beta=0.5)
    assert loss.item() == pytest.approx(ce - 2.0 * entropy - 0.5 * log_det, rel=1e-9)
    assert terms == pytest.approx({"ce": ce, "entropy": entropy, "log_det": log_det}, rel=1e-9)


def test_adp_takes_any_number_of_members():
    logits = [torch.randn(4, 10, generator=torch.Generator().manual_seed(k)) for k in range(5)]
    loss, terms = adp_loss(logits, torch.arange(4))
    assert torch.isfinite(loss) and terms["log_det"] < 0  # five unit vectors: the volume is below 1


def test_gal_loss_by_hand():
    members = [Linear(0), Linear(1), Linear(2)]
    x, y = torch.rand(5, 4, dtype=torch.float64, requires_grad=True), torch.tensor([0, 1, 2, 0, 1])
    grads = [ce_input_gradient(m, x.detach(), y) for m in members]
    cos = torch.stack([F.cosine_similarity(grads[i], grads[j]) for i, j in ((0, 1), (0, 2), (1, 2))], dim=1)
    coherence = torch.log(cos.exp().sum(1)).mean()
    ce = sum(F.cross_entropy(m(x.detach()), y) for m in members) / 3
    loss, _ = gal_loss([m(x) for m in members], x, y, lam=0.5)
    assert loss.item() == pytest.approx((ce + 0.5 * coherence).item(), rel=1e-9)


def test_trs_loss_by_hand():
    members = [Linear(0), Linear(1)]
    x, y = torch.rand(6, 4, dtype=torch.float64, requires_grad=True), torch.tensor([0, 1, 2, 0, 1, 2])
    points = torch.rand(6, 4, dtype=torch.float64, requires_grad=True)
    grads = [ce_input_gradient(m, x.detach(), y) for m in members]
    cosine = F.cosine_similarity(grads[0], grads[1]).abs().mean()
    smooth = sum(2 * ce_input_gradient(m, points.detach(), y).square().sum(1).mean() for m in members) / 2
    ce = sum(F.cross_entropy(m(x.detach()), y) for m in members)
    smooth_grads = [torch.autograd.grad(F.cross_entropy(m(points), y), points, create_graph=True)[0] for m in members]
    loss, terms = trs_loss([m(x) for m in members], x, y, smooth_grads, lambda_a=40.0, lambda_b=2.5)
    assert loss.item() == pytest.approx((ce + 40 * cosine + 2.5 * smooth).item(), rel=1e-9)
    assert terms["cosine"] == pytest.approx(cosine.item(), rel=1e-9)


def _small_cnn(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 10))


@pytest.mark.parametrize("objective", [adp_objective(), gal_objective(), trs_objective()], ids=["adp", "gal", "trs"])
def test_one_training_step_lowers_the_loss(objective):
    members = [_small_cnn(s) for s in range(3)]
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(16, 3, 8, 8, generator=generator), torch.randint(0, 10, (16,), generator=generator)

    def loss():
        torch.manual_seed(1)  # the same random starts for TRS's smoothness points
        return objective(members, images, labels, 0.0)[0]

    before = loss()
    optimizer = torch.optim.SGD([p for m in members for p in m.parameters()], lr=0.01)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert loss().item() < before.item()


def _resnets():
    return [create_model("resnet20_b", seed=s) for s in range(2)]


def test_joint_training_resumes_exactly(tmp_path, slice_path, monkeypatch):
    from defenses import joint
    from robustbench_ens.data import load_cifar10

    data = load_cifar10(slice_path)
    recipe = JointRecipe(epochs=2, batch_size=16, n_train=32, milestones=(1,))
    train = lambda members, checkpoint_dir: train_jointly(  # noqa: E731
        members, data, adp_objective(), recipe, method="adp", seed=3, checkpoint_dir=checkpoint_dir, progress=False)
    straight = _resnets()
    summary = train(straight, tmp_path / "a")
    assert len(summary["losses"]) == 2 and set(summary["terms"][0]) == {"ce", "entropy", "log_det"}
    assert not torch.equal(straight[0].net.conv1.weight, _resnets()[0].net.conv1.weight), "training moved the weights"
    resumed, summary = interrupted_training(joint, train, _resnets, tmp_path / "b", 1, monkeypatch)
    assert summary["resumed_from_epoch"] == 1
    for a, b in zip(straight, resumed):
        for (name, p), q in zip(a.net.state_dict().items(), b.net.state_dict().values()):
            assert torch.equal(p, q), name
    with pytest.raises(ValueError, match="another recipe or seed"):
        train_jointly(_resnets(), data, adp_objective(), JointRecipe(epochs=3, batch_size=16, n_train=32),
                      method="adp", seed=3, checkpoint_dir=tmp_path / "b", progress=False)


def test_methods_for_suites_with_the_papers_defaults():
    assert {"adp", "gal", "trs"} <= set(list_methods())
    _, adp = checked_settings("adp", 3)
    assert adp["params"] == {"alpha": 2.0, "beta": 0.5} and adp["recipe"]["epochs"] == 200
    assert adp["recipe"]["optimizer"] == "adam" and adp["recipe"]["lr"] == 0.001
    _, gal = checked_settings("gal", 3)
    assert gal["params"] == {"lam": 0.5}
    _, trs = checked_settings("trs", 5, {}, {"epochs": 10})
    assert trs["params"]["lambda_a"] == 40.0 and trs["recipe"]["epochs"] == 10
    with pytest.raises(ValueError, match="unknown adp params"):
        checked_settings("adp", 3, {"gamma": 1.0})
    with pytest.raises(ValueError, match="at least 2"):
        checked_settings("gal", 1)
    with pytest.raises(ValueError, match="optimizer"):
        checked_settings("trs", 3, {}, {"optimizer": "rmsprop"})


def test_epoch_steps_is_a_budget_of_batches_per_epoch(slice_path):
    from defenses.dverge import DVERGERecipe
    from robustbench_ens.data import load_cifar10

    for recipe_class in (JointRecipe, DVERGERecipe):
        assert recipe_class(batch_size=128).steps_per_epoch(50_000) == 391
        assert recipe_class(batch_size=128, epoch_steps=50).steps_per_epoch(50_000) == 50
        assert recipe_class(batch_size=128, epoch_steps=500).steps_per_epoch(50_000) == 391
        for bad in (0, -1, 2.5, True):
            with pytest.raises(ValueError, match="epoch_steps"):
                recipe_class(epoch_steps=bad)
    calls = []

    def counting(members, images, labels, progress):
        calls.append((progress, len(images)))
        return adp_objective()(members, images, labels, progress)

    summary = train_jointly(_resnets(), load_cifar10(slice_path), counting,
                            JointRecipe(epochs=3, batch_size=8, epoch_steps=2, milestones=()), method="adp",
                            progress=False)
    assert calls == [(0.0, 8), (0.0, 8), (1 / 3, 8), (1 / 3, 8), (2 / 3, 8), (2 / 3, 8)]
    assert len(summary["losses"]) == 3
