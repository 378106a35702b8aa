"""CWA, AdaEA, SVRE and LGV: their update rules against hand computations, and each documented option."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchattacks

from attacks import CWA, LGV, SVRE, AdaEA, Ens


class Linear(nn.Module):
    """logits = W x + b on flattened images: its cross-entropy gradient has a closed form."""

    def __init__(self, seed, n_in=12, n_classes=3):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_classes, n_in, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(n_classes, generator=g, dtype=torch.float64))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def ce_grad(models, x, y, scale=1.0):
    """d CE(scale * sum_k f_k(x) / K, y) / dx by hand: sum_k W_k^T (p - onehot) * scale / K, per sample."""
    weight = sum(m.weight for m in models) / len(models) * scale
    bias = sum(m.bias for m in models) / len(models) * scale
    p = torch.softmax(x.flatten(1) @ weight.T + bias, dim=1)
    return ((p - F.one_hot(y, p.shape[1])) @ weight).view_as(x).detach()


def clip(x, images, eps):
    return torch.clamp(images + torch.clamp(x - images, -eps, eps), 0, 1)


def test_cwa_first_step_by_hand():
    models = [Linear(0), Linear(1)]
    g = torch.Generator().manual_seed(0)
    images = 0.3 + 0.4 * torch.rand(4, 3, 2, 2, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0])
    eps, r, beta, alpha = 0.2, 0.05, 0.03, 0.04

    x0 = clip(images - r * ce_grad(models, images, labels).sign(), images, eps)        # reverse step (mean)
    x, m = x0, torch.zeros_like(images)
    for model in models:                                                                # inner loop
        grad = ce_grad([model], x, labels)
        m = m + grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        x = clip(x + beta * m, images, eps)
    outer = (x - images) / (x - images).abs().mean(dim=(1, 2, 3), keepdim=True)        # outer momentum
    expected = clip(images + alpha * outer.sign(), images, eps)

    got = CWA(models, eps=eps, alpha=alpha, steps=1, reverse_step_size=r, inner_step_size=beta)(images, labels)
    assert torch.allclose(got, expected, atol=1e-12)
    assert not torch.equal(got, clip(images + alpha * ce_grad(models, images, labels).sign(), images, eps)), \
        "the case is too easy: CWA's step equals a plain ensemble step"


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_cwa_defaults_scale_with_eps(tiny_models):
    attack = CWA(tiny_models, eps=16 / 255)
    assert attack.alpha == pytest.approx(16 / 255 / 5) and attack.reverse_step_size == pytest.approx(16 / 255 / 15)
    assert attack.inner_step_size == 250 and attack.reverse_fusion == "mean" and attack.outer_norm == "sample"


@pytest.mark.parametrize("option", [{"inner_step_size": 0.5}, {"reverse_fusion": "sum"}, {"outer_norm": "batch"},
                                    {"alpha": 16 / 255 / 5}])
def test_cwa_each_option_changes_the_images(option, tiny_models):
    images, labels = _batch()
    base = dict(eps=8 / 255, steps=3, inner_step_size=2.0)
    default = CWA(tiny_models, **base)(images, labels)
    assert not torch.equal(CWA(tiny_models, **{**base, **option})(images, labels), default)


@pytest.mark.parametrize("outer_norm,coupled", [("sample", False), ("batch", True)])
def test_cwa_outer_norm_batch_coupling(outer_norm, coupled, tiny_models):
    """The official batch-wide L1 norm: one image's momentum changes when a batch-mate's gradient does."""
    attack = CWA(tiny_models, outer_norm=outer_norm)
    momentum, grad = torch.rand(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    louder = grad.clone()
    louder[1] *= 100
    first = attack.accumulate_momentum(momentum, grad)[0]
    assert torch.allclose(first, attack.accumulate_momentum(momentum, louder)[0]) != coupled


@pytest.mark.parametrize("granularity,coupled", [("sample", False), ("batch", True)])
def test_adaea_agm_granularity_batch_coupling(granularity, coupled, tiny_models):
    """The official batch-level weights: one image's adversarial example depends on its batch-mates."""
    images, labels = _batch(6)
    whole = AdaEA(tiny_models, steps=4, agm_granularity=granularity)(images, labels)
    first_half = AdaEA(tiny_models, steps=4, agm_granularity=granularity)(images[:3], labels[:3])
    assert torch.equal(whole[:3], first_half) != coupled


def test_adaea_without_modules_is_ens(tiny_models):
    images, labels = _batch()
    ada = AdaEA(tiny_models, agm=False, drf=False, alpha=2 / 255, decay=0.9, steps=5)(images, labels)
    ens = Ens(tiny_models, alpha=2 / 255, decay=0.9, steps=5)(images, labels)
    assert torch.equal(ada, ens)


def test_adaea_modules_change_the_images(tiny_models):
    images, labels = _batch()
    outs = {(a, d): AdaEA(tiny_models, agm=a, drf=d, threshold=0.0, steps=3)(images, labels)
            for a in (False, True) for d in (False, True)}
    assert len({tuple(o.flatten().tolist()) for o in outs.values()}) == 4


def test_adaea_agm_weights_by_hand(tiny_models):
    images, labels = _batch(4)
    attack = AdaEA(tiny_models[:2], beta=10.0)
    grads = [attack.model_gradient(m, images, labels) for m in tiny_models[:2]]
    one_step = [clip(images + attack.alpha * g.sign(), images, attack.eps) for g in grads]
    f0, f1 = tiny_models[:2]
    ce = lambda m, x: F.cross_entropy(m(x), labels, reduction="none")  # noqa: E731
    s0 = 10.0 * ce(f1, one_step[0]) / ce(f1, one_step[1])
    s1 = 10.0 * ce(f0, one_step[1]) / ce(f0, one_step[0])
    expected = torch.softmax(torch.stack([s0, s1]), dim=0)
    with torch.no_grad():
        got = attack.agm_weights(images, images, labels, grads)
    assert torch.allclose(torch.cat(got, dim=1).T, expected, atol=1e-6)


def test_adaea_drf_mask_by_hand():
    attack = AdaEA([nn.Identity(), nn.Identity(), nn.Identity()], threshold=0.0)
    g = torch.zeros(1, 3, 1, 2)
    g[0, :, 0, 0] = torch.tensor([1.0, 0, 0])   # pixel 0: all three agree
    g[0, :, 0, 1] = torch.tensor([0, 1.0, 0])
    h = g.clone()
    h[0, :, 0, 1] = torch.tensor([0, -1.0, 0])  # pixel 1: models 0 and 1 disagree, model 2 agrees with 0
    # pixel 1 mean cosine over pairs = (cos(g,h) + cos(g,g) + cos(h,g)) / 3 = (-1 + 1 - 1) / 3 < 0
    mask = attack.drf_mask([g, h, g])
    assert mask.shape == (1, 1, 1, 2) and mask.flatten().tolist() == [1.0, 0.0]
    assert AdaEA([nn.Identity()] * 3, threshold=-0.3).drf_mask([g, h, g]).flatten().tolist() == [1.0, 0.0]
    assert AdaEA([nn.Identity()] * 3, threshold=-0.4).drf_mask([g, h, g]).flatten().tolist() == [1.0, 1.0]


@pytest.mark.parametrize("k", [2, 3, 8])
def test_adaea_drf_similarity_is_the_mean_pairwise_cosine(k):
    """The filter's K-term sum equals the mean of the K(K-1)/2 channel cosines, at any gradient magnitude."""
    generator = torch.Generator().manual_seed(k)
    grads = [torch.randn(4, 3, 8, 8, generator=generator) * 10 ** (-12 * torch.rand(4, 1, 8, 8, generator=generator))
             for _ in range(k)]
    grads[0][0, :, 0, 0] = 0  # a zero gradient agrees with nothing
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    cosine = sum(F.cosine_similarity(grads[i], grads[j], dim=1, eps=1e-30) for i, j in pairs) / len(pairs)
    for threshold in (-0.3, 0.0, 0.2):
        mask = AdaEA([nn.Identity()] * k, threshold=threshold).drf_mask(grads).squeeze(1)
        decided = (cosine - threshold).abs() > 1e-5  # away from the threshold, where rounding cannot flip it
        assert torch.equal(mask[decided], (cosine >= threshold).float()[decided])


def test_svre_with_one_inner_step_is_ens(tiny_models):
    """M = 1: the variance-reduced gradient at x~ = x_t is exactly g_ens, so SVRE is MI-FGSM on the ensemble."""
    images, labels = _batch()
    svre = SVRE(tiny_models, inner_steps=1, steps=5)(images, labels)
    ens = Ens(tiny_models, steps=5)(images, labels)
    assert torch.equal(svre, ens)


def test_svre_defaults(tiny_models):
    attack = SVRE(tiny_models, eps=8 / 255, steps=10)
    assert attack.inner_steps == 12 and attack.inner_alpha == attack.alpha == pytest.approx(0.8 / 255)
    images, labels = _batch()
    a = SVRE(tiny_models, steps=3, seed=1)(images, labels)
    assert not torch.equal(a, SVRE(tiny_models, steps=3, seed=2)(images, labels)), "the model draws follow the seed"


@pytest.mark.parametrize("attack", [CWA, AdaEA, SVRE])
def test_l2_is_refused(attack, tiny_models):
    with pytest.raises(ValueError, match="Linf"):
        attack(tiny_models, norm="L2")


@pytest.mark.parametrize("attack,kwargs", [
    (CWA, {"inner_step_size": -1}), (CWA, {"reverse_fusion": "max"}), (CWA, {"outer_norm": "image"}),
    (CWA, {"reverse_step_size": float("inf")}), (AdaEA, {"threshold": 2.0}), (AdaEA, {"beta": -1}),
    (AdaEA, {"agm_granularity": "pixel"}), (AdaEA, {"transforms": ["dii"]}), (SVRE, {"inner_steps": 0}),
    (SVRE, {"inner_alpha": -0.1}), (SVRE, {"fusion": "median"}), (LGV, {"models_per_step": 0}),
    (LGV, {"models_per_step": 4}), (LGV, {"fusion": "median"}),
])
def test_bad_arguments(attack, kwargs, tiny_models):
    with pytest.raises(ValueError):
        attack(tiny_models, **kwargs)


def test_adaea_with_input_diversity_is_seeded(tiny_models):
    images, labels = _batch()
    make = lambda seed: AdaEA(tiny_models, transforms=[{"name": "di", "prob": 1.0}], steps=3, seed=seed)  # noqa: E731
    assert torch.equal(make(0)(images, labels), make(0)(images, labels))
    assert not torch.equal(make(0)(images, labels), make(1)(images, labels))


class Counting(nn.Module):
    """Counts the forward passes of the wrapped model."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def test_lgv_one_surrogate_is_torchattacks_bim(tiny_models):
    images, labels = _batch()
    ours = LGV(tiny_models[:1], eps=8 / 255, steps=7)(images, labels)
    theirs = torchattacks.BIM(tiny_models[0], eps=8 / 255, alpha=0.8 / 255, steps=7)(images, labels)
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("per_step,steps", [(1, 6), (2, 3), (3, 4)])
def test_lgv_cycles_through_every_member_equally(per_step, steps, tiny_models):
    """A shuffled cycle: over steps * per_step = a multiple of K draws, every member is used equally often."""
    counting = [Counting(m) for m in tiny_models]
    LGV(counting, steps=steps, models_per_step=per_step)(*_batch())
    uses = [m.calls for m in counting]
    assert sum(uses) == steps * per_step
    assert len(set(uses)) == 1, uses


def test_lgv_order_follows_the_seed(tiny_models):
    images, labels = _batch()
    a = LGV(tiny_models, steps=4, seed=1)(images, labels)
    assert torch.equal(a, LGV(tiny_models, steps=4, seed=1)(images, labels))
    assert not torch.equal(a, LGV(tiny_models, steps=4, seed=5)(images, labels)), "the member order follows the seed"


def test_lgv_defaults(tiny_models):
    attack = LGV(tiny_models, eps=4 / 255)
    assert (attack.steps, attack.decay, attack.models_per_step) == (50, 0.0, 1)
    assert attack.alpha == pytest.approx(0.4 / 255)


def test_lgv_never_uses_a_member_twice_in_one_iteration(tiny_models):
    """With 2 of 3 members per step, steps straddle cycle boundaries; no step may fuse a member with itself."""
    members = []
    attack = LGV(tiny_models, steps=15, models_per_step=2)
    original = attack.next_members

    def recording():
        members.append(original())
        return members[-1]

    attack.next_members = recording
    attack(*_batch())
    assert len(members) == 15 and all(len(set(m)) == 2 for m in members)
