"""Input transformations (DI, TI, SI, Admix) and the CW loss: torchattacks' anchors, hand computations, composition."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchattacks

from attacks import CWA, LGV, PGD, SMER, SVRE, AdaEA, Admix, DI, Ens, SI, TI, create_attack
from attacks.fusion import FUSIONS, fused_loss
from attacks.losses import CW_KAPPA, classification_loss, cw_margin

GRADIENT_ATTACKS = [Ens, CWA, AdaEA, SVRE, LGV, PGD, SMER]


@pytest.mark.parametrize("seed", [0, 3])
def test_ens_with_di_equals_torchattacks_difgsm(seed, tiny_models, batch):
    images, labels = batch
    model = tiny_models[0]
    ours = Ens([model], eps=8 / 255, alpha=2 / 255, steps=10, decay=0.0, transforms=[DI()], seed=seed)(images, labels)
    torch.manual_seed(seed)  # torchattacks draws DI's sizes, offsets and coin from the global RNG, in the same order
    theirs = torchattacks.DIFGSM(model, eps=8 / 255, alpha=2 / 255, steps=10, decay=0.0)(images, labels)
    assert torch.equal(ours, theirs)


def test_ens_with_ti_equals_torchattacks_tifgsm(tiny_models, batch):
    images, labels = batch
    model = tiny_models[0]
    ours = Ens([model], eps=8 / 255, alpha=2 / 255, steps=10, decay=1.0, transforms=[TI(kernel_size=5)])(images, labels)
    theirs = torchattacks.TIFGSM(model, eps=8 / 255, alpha=2 / 255, steps=10, decay=1.0, len_kernel=5,
                                 diversity_prob=0.0)(images, labels)
    assert torch.equal(ours, theirs)
    # torchattacks' TIFGSM defaults: DI as well, and the ImageNet 15 x 15 kernel
    ours = Ens([model], eps=8 / 255, alpha=2 / 255, steps=10, decay=0.0, transforms=[DI(), TI(kernel_size=15)],
               seed=1)(images, labels)
    torch.manual_seed(1)
    assert torch.equal(ours, torchattacks.TIFGSM(model, eps=8 / 255, alpha=2 / 255, steps=10)(images, labels))


@pytest.mark.parametrize("size", [5, 15])
def test_ti_kernel_is_the_papers(size):
    scipy_stats = pytest.importorskip("scipy.stats")
    density = scipy_stats.norm.pdf(np.linspace(-3, 3, size))
    expected = np.outer(density, density)
    assert torch.allclose(TI(kernel_size=size)._kernel, torch.tensor(expected / expected.sum(), dtype=torch.float32))


def test_ti_smooths_each_channel_alone():
    grad = torch.zeros(1, 3, 9, 9)
    grad[0, 1, 4, 4] = 1.0
    out = TI(kernel_size=5).smooth(grad)
    assert out[0, 0].abs().sum() == 0 and out[0, 2].abs().sum() == 0
    assert torch.allclose(out[0, 1, 2:7, 2:7], TI(kernel_size=5)._kernel)
    assert torch.isclose(out.sum(), torch.tensor(1.0))


def test_di_keeps_or_enlarges_the_size():
    x = torch.rand(2, 3, 32, 32)
    assert DI(prob=0.0).copies(x, torch.Generator().manual_seed(0)) == [x]
    shrunk = DI(prob=1.0).copies(x, torch.Generator().manual_seed(0))[0]
    assert shrunk.shape == x.shape and not torch.equal(shrunk, x)
    assert DI(resize_rate=1.1, prob=1.0).copies(x, torch.Generator().manual_seed(0))[0].shape[-1] == 35
    assert torch.equal(shrunk, DI(prob=1.0).copies(x, torch.Generator().manual_seed(0))[0])


def test_si_gradient_is_the_mean_over_scaled_copies(tiny_models, batch):
    images, labels = batch
    attack = Ens(tiny_models[:1], transforms=[SI()])
    model = tiny_models[0]
    by_hand = torch.stack([torch.autograd.grad(F.cross_entropy(model(x / 2 ** i), labels), x)[0]
                           for i in range(5) for x in [images.clone().requires_grad_(True)]]).mean(0)
    assert torch.allclose(attack.ensemble_gradient([model], images, labels), by_hand, atol=1e-7)


def test_admix_copies_mix_other_images_then_scale():
    x = torch.rand(4, 3, 8, 8)
    copies = Admix().copies(x, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    orders = [torch.randperm(4, generator=g) for _ in range(3)]
    assert len(copies) == 15
    for i in range(5):
        for j, order in enumerate(orders):
            assert torch.allclose(copies[3 * i + j], (x + 0.2 * x[order]) / 2 ** i)


def test_transformations_compose_in_order():
    x = torch.rand(2, 3, 32, 32)
    attack = Ens(torch.nn.Identity(), transforms=[SI(scales=3), DI(prob=1.0)])
    attack.host_generator = torch.Generator().manual_seed(0)
    copies = attack.transformed(x)
    assert len(copies) == 3 and all(c.shape == x.shape for c in copies)
    assert copies[2].max() <= x.max() / 4 + 1e-6  # the third scale (1/4), then resized and padded


@pytest.mark.parametrize("attack", GRADIENT_ATTACKS, ids=lambda a: a.__name__)
def test_every_gradient_attack_takes_transformations_by_name(attack, tiny_models, batch):
    images, labels = batch
    make = lambda seed: attack(tiny_models, steps=2, seed=seed, transforms=["di", "ti", "si"])  # noqa: E731
    x_adv = make(0)(images, labels)
    assert torch.equal(x_adv, make(0)(images, labels)) and not torch.equal(x_adv, make(1)(images, labels))
    assert (x_adv - images).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_adaea_without_its_modules_shares_the_transformations_draws_with_ens(tiny_models, batch):
    images, labels = batch
    transforms = [DI(prob=1.0), TI()]
    ada = AdaEA(tiny_models, agm=False, drf=False, transforms=transforms, steps=3, seed=2)(images, labels)
    assert torch.equal(ada, Ens(tiny_models, alpha=2 / 255, decay=0.9, transforms=transforms, steps=3,
                                seed=2)(images, labels))


def test_transformations_from_a_suite_table(tiny_models):
    attack = create_attack("ens", tiny_models, transforms=["DI", {"name": "ti", "kernel_size": 7}, "admix"])
    assert attack.transforms == (DI(), TI(kernel_size=7), Admix())
    assert "TI(kernel_size=7, nsig=3.0)" in repr(attack)


@pytest.mark.parametrize("spec,message", [
    (["dii"], "did you mean di"), ([{"name": "ti", "kernel_size": 4}], "odd"), ([{"name": "di", "prob": 1.5}], "prob"),
    ([{"name": "di", "resize_rate": 1.0}], "differ from 1"), ([{"name": "si", "size": 3}], "unexpected keyword"),
    ([{"kernel_size": 3}], "a name"), ([3], "a name"),
])
def test_bad_transformations(spec, message, tiny_models):
    with pytest.raises((ValueError, TypeError), match=message):
        Ens(tiny_models, transforms=spec)


def test_cw_margin_by_hand():
    logits = torch.tensor([[2.0, 5.0, 1.0], [0.0, -1.0, 100.0]])
    labels = torch.tensor([1, 0])
    assert torch.equal(cw_margin(logits, labels), torch.tensor([-3.0, 100.0]))
    assert classification_loss(logits, labels, "cw") == (-3.0 + CW_KAPPA) / 2  # the second margin capped at kappa


@pytest.mark.parametrize("fusion", FUSIONS)
def test_cw_loss_in_every_fusion(fusion, tiny_models, batch):
    images, labels = batch
    logits = [m(images) for m in tiny_models]
    weights = [1 / 3] * 3
    loss = fused_loss(logits, labels, fusion, weights, "cw")
    if fusion == "logits":
        assert torch.isclose(loss, cw_margin(sum(logits) / 3, labels).clamp_max(CW_KAPPA).mean())
    assert not torch.isclose(loss, fused_loss(logits, labels, fusion, weights, "ce"))


@pytest.mark.parametrize("attack", GRADIENT_ATTACKS, ids=lambda a: a.__name__)
def test_cw_loss_raises_the_margin(attack, tiny_models, batch):
    images, labels = batch
    x_adv = attack(tiny_models, steps=5, loss="cw")(images, labels)
    ensemble = lambda x: torch.stack([m(x) for m in tiny_models]).mean(0)  # noqa: E731
    assert cw_margin(ensemble(x_adv), labels).mean() > cw_margin(ensemble(images), labels).mean()


def test_unknown_loss(tiny_models):
    with pytest.raises(ValueError, match="loss must be one of"):
        Ens(tiny_models, loss="hinge")
