"""White-box attacks: PGD with EOT, AutoAttack through pyautoattack, BPDA, and the adaptive view of CrossMax."""
from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn

from attacks import BPDA, PGD, AutoAttack, Ens, Square
from defenses import Ensemble, MeanLogitsView, adaptive_view
from conftest import TinyNet


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


class Noisy(nn.Module):
    """A randomised model: its input gets fresh uniform noise from its own generator at every call."""

    def __init__(self, net: nn.Module, amount: float = 0.3, seed: int = 0):
        super().__init__()
        self.net, self.amount, self.generator = net, amount, torch.Generator().manual_seed(seed)

    def forward(self, x):
        return self.net(x + self.amount * torch.rand(x.shape, generator=self.generator))


class Quantised(nn.Module):
    """A deliberately masked model: inputs rounded to 4 levels (zero gradient almost everywhere)."""

    def forward(self, x):
        return torch.round(x * 3) / 3


@pytest.mark.parametrize("norm,reference", [("Linf", torchattacks.PGD), ("L2", torchattacks.PGDL2)])
def test_pgd_without_eot_is_torchattacks_pgd(norm, reference):
    model = TinyNet().eval()
    images, labels = _batch()
    eps = 8 / 255 if norm == "Linf" else 0.5
    ours = PGD(model, eps=eps, steps=5, norm=norm, random_start=False)(images, labels)
    theirs = reference(model, eps=eps, alpha=2.5 * eps / 5, steps=5, random_start=False)(images, labels)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert PGD(model).alpha == pytest.approx(2.5 * (8 / 255) / 50) and PGD(model).random_start


def test_eot_averages_the_gradient_over_the_models_randomness():
    images, labels = _batch(4)
    model = Noisy(TinyNet()).eval()
    attack = PGD(model, eot_samples=5)
    model.generator.manual_seed(3)
    eot = attack.gradient(images, images, labels)
    model.generator.manual_seed(3)  # the same five draws, one gradient each
    single = Ens(model)
    samples = [single.gradient(images, images, labels) for _ in range(5)]
    assert torch.allclose(eot, torch.stack(samples).mean(0), atol=1e-6)
    assert not torch.allclose(samples[0], samples[1]), "each sample sees new randomness"
    with pytest.raises(ValueError, match="eot_samples"):
        PGD(model, eot_samples=0)


def test_pgd_projects_around_the_clean_image_even_with_a_random_start():
    images, labels = _batch()
    for norm, eps in (("Linf", 4 / 255), ("L2", 0.3)):
        x_adv = PGD(TinyNet().eval(), eps=eps, steps=3, norm=norm)(images, labels)
        delta = (x_adv - images).flatten(1)
        size = delta.abs().max(1).values if norm == "Linf" else delta.norm(dim=1)
        assert (size <= eps + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1


def test_autoattack_checks_its_attack_names_and_takes_an_empty_batch():
    model = TinyNet().eval()
    with pytest.raises(ValueError, match="apgd-ce"):
        AutoAttack(model, version="custom", attacks=["apgd"])
    with pytest.raises(ValueError, match="non-empty"):
        AutoAttack(model, version="custom", attacks=[])
    empty = torch.zeros(0, 3, 32, 32)
    assert AutoAttack(model)(empty, torch.zeros(0, dtype=torch.long)).shape == empty.shape


@pytest.mark.parametrize("attack", [AutoAttack, Square])
def test_library_attacks_refuse_labels_the_model_has_no_logit_for(attack):
    """pyautoattack and torchattacks would count such points as misclassified and return them unchanged."""
    images, labels = _batch(4)
    with pytest.raises(ValueError, match="number of classes; the largest is 10 .the model has 10 classes"):
        attack(TinyNet().eval())(images, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=">= 0"):
        attack(TinyNet().eval())(images, labels - 10)


def test_autoattack_wrapper_runs_the_library_and_keeps_the_global_rng():
    model = TinyNet().eval()
    images, _ = _batch(8)
    labels = model(images).argmax(1)
    state = torch.random.get_rng_state()
    attack = AutoAttack(model, eps=16 / 255, version="custom", attacks=["apgd-ce"], n_iter=10)
    x_adv = attack(images, labels)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert (x_adv - images).abs().max() <= 16 / 255 + 1e-6
    assert (model(x_adv).argmax(1) == labels).float().mean() < 1.0
    assert torch.equal(x_adv, AutoAttack(model, eps=16 / 255, version="custom", attacks=["apgd-ce"],
                                         n_iter=10)(images, labels)), "seeded: the same images twice"
    for kwargs, match in (({"version": "fast"}, "version"), ({"attacks": ["apgd-ce"]}, "custom"),
                          ({"n_iter": 0}, "n_iter")):
        with pytest.raises(ValueError, match=match):
            AutoAttack(model, **kwargs)
    with pytest.raises(ValueError, match="one model"):
        AutoAttack([model, model])


def test_autoattack_takes_no_weight_gradient_and_leaves_the_parameters_as_found():
    """The library's FAB calls .backward(): the parameters are frozen for the call (no wasted weight gradient, no
    .grad written) and each one's requires_grad comes back as it was."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))  # FAB's 100 steps: fast on a linear model
    images, _ = _batch(2)
    labels = model(images).argmax(1)
    parameters = list(model.parameters())
    parameters[0].requires_grad_(False)
    for p in parameters[1:]:
        p.grad = torch.full_like(p, 7.0)
    AutoAttack(model, eps=8 / 255, version="custom", attacks=["fab"])(images, labels)
    assert parameters[0].grad is None and not parameters[0].requires_grad
    assert all(p.requires_grad and torch.equal(p.grad, torch.full_like(p, 7.0)) for p in parameters[1:])


def test_square_needs_no_gradient_and_breaks_a_masked_model():
    from attacks import Square

    masked = nn.Sequential(Quantised(), TinyNet()).eval()
    images, _ = _batch(16)
    labels = masked(images).argmax(1)
    state = torch.random.get_rng_state()
    x_adv = Square(masked, eps=32 / 255, n_queries=300)(images, labels)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's RNG is left as it was"
    assert torch.equal(x_adv, Square(masked, eps=32 / 255, n_queries=300)(images, labels)), "seeded"
    assert (x_adv - images).abs().max() <= 32 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    pgd = PGD(masked, eps=32 / 255, steps=10, random_start=False)(images, labels)
    accuracy = lambda x: (masked(x).argmax(1) == labels).float().mean().item()  # noqa: E731
    assert accuracy(pgd) == 1.0, "the rounding step hides the gradient from PGD"
    assert accuracy(x_adv) <= 0.5, "the scores alone are enough for Square"
    plain = TinyNet().eval()
    l2 = Square(plain, eps=2.0, norm="L2", n_queries=100)(images, plain(images).argmax(1))
    assert ((l2 - images).flatten(1).norm(dim=1) <= 2.0 + 1e-4).all()
    for kwargs, match in (({"n_queries": 0}, "n_queries"), ({"p_init": 1.5}, "p_init")):
        with pytest.raises(ValueError, match=match):
            Square(masked, **kwargs)


def test_bpda_sees_through_a_step_that_masks_the_gradient():
    net = TinyNet().eval()
    masked = nn.Sequential(Quantised(), net).eval()
    images, _ = _batch(16)
    labels = masked(images).argmax(1)
    plain = PGD(masked, eps=8 / 255, steps=10, random_start=False)(images, labels)
    assert torch.equal(plain, images), "zero gradient: plain PGD cannot move"
    through = PGD(nn.Sequential(BPDA(Quantised()), net), eps=8 / 255, steps=10, random_start=False)(images, labels)
    accuracy = lambda x: (masked(x).argmax(1) == labels).float().mean().item()  # noqa: E731
    assert accuracy(through) < accuracy(plain) == 1.0
    assert torch.equal(BPDA(Quantised())(images), Quantised()(images)), "forward is the real component"


def test_adaptive_view_is_the_mean_of_the_predictors_logits():
    members = [TinyNet(seed=s).eval() for s in range(3)]
    ensemble = Ensemble(members, aggregation="crossmax", crossmax_k=2)
    images, _ = _batch(4)
    view = adaptive_view(ensemble)
    assert isinstance(view, MeanLogitsView)
    assert torch.allclose(view(images), torch.stack([m(images) for m in members]).mean(0), atol=1e-6)
    assert adaptive_view(members[0]) is members[0], "a single model is its own view"
    with pytest.raises(TypeError, match="predictor_logits"):
        MeanLogitsView(members[0])


def test_on_a_toy_crossmax_self_ensemble_the_adaptive_attack_beats_plain_pgd(slice_path, models_path):
    from defenses.multires import MultiResolutionStack
    from defenses.self_ensemble import SelfEnsemble, _HeadView
    from robustbench_ens.data import load_cifar10
    from robustbench_ens.zoo import TrainRecipe, load_checkpoint, train_model

    data = load_cifar10(slice_path)
    base, _ = load_checkpoint(models_path / "resnet20_b_baseline_m0.safetensors")
    still = MultiResolutionStack(resolutions=(32,), noise=0.0, jitter=0, contrast=(1, 1), colour=(1, 1))
    torch.manual_seed(0)
    model = SelfEnsemble(depth=20, head_blocks=(8,), k=2, stack=still).init_backbone_from(base)
    train_model(_HeadView(model, 0), data, TrainRecipe(epochs=1, n_train=512, lr=0.01, batch_size=64),
                progress=False)  # a head on the last block; with the classifier, CrossMax over 2 predictors
    model.eval()
    images, labels = data.test(64)
    accuracy = lambda x: (model(x).argmax(1) == labels).float().mean().item()  # noqa: E731
    plain = accuracy(PGD(model, eps=2 / 255, steps=5)(images, labels))
    adaptive = accuracy(PGD(adaptive_view(model), eps=2 / 255, steps=5)(images, labels))
    assert accuracy(images) > 0.8
    assert adaptive < plain - 0.05, (plain, adaptive)


def test_a_random_forward_pass_is_detected_and_gets_eot():
    from robustbench_ens.suite import AttackEntry
    from robustbench_ens.whitebox import eot_samples, is_randomised, whitebox_params

    images, _ = _batch(4)
    plain, noisy = TinyNet().eval(), Noisy(TinyNet()).eval()
    assert not is_randomised(plain, images) and is_randomised(noisy, images)
    assert not noisy.training, "eval mode is restored"
    pgd = AttackEntry(name="PGD", attack="pgd", params={"steps": 5}, surrogates=(), on="defense", eot=7)
    assert whitebox_params(pgd, randomised=False) == {"steps": 5}
    assert whitebox_params(pgd, randomised=True) == {"steps": 5, "eot_samples": 7}
    aa = AttackEntry(name="AA", attack="autoattack", params={}, surrogates=(), on="defense")
    assert whitebox_params(aa, randomised=True) == {"version": "rand"}
    assert whitebox_params(aa, randomised=False) == {}
    # the setting reports the EOT samples each attack would use (AutoAttack's rand version: the library's 20)
    ens = AttackEntry(name="Ens", attack="ens", params={}, surrogates=("a",))
    assert (eot_samples(pgd), eot_samples(aa), eot_samples(ens)) == (7, 20, None)
