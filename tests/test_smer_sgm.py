"""SMER and SGM: their update rules against hand computations, and each documented option."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from attacks import SGM, SMER, Ens
from attacks.sgm import residual_branch_ends, skip_gradient


def test_smer_reweighing_step_by_hand(tiny_models, batch):
    images, labels = batch
    attack = SMER(tiny_models, weight_lr=0.1, weight_decay=0.01)
    attack._weights = torch.full((len(images), 3), 1.5)
    logits = [m(images).detach() for m in tiny_models]
    w = attack._weights.clone().requires_grad_(True)
    ce = F.cross_entropy(sum(w[:, m:m + 1] * z for m, z in enumerate(logits)) / 3, labels, reduction="none")
    grad = torch.autograd.grad(-ce.log().sum(), w)[0]
    expected = attack._weights - 0.1 * (grad + 0.01 * attack._weights)
    attack.reweigh(1, images, None, labels)
    assert torch.allclose(attack._weights, expected, atol=1e-6)
    assert not torch.allclose(attack._weights[0], attack._weights[1])  # one set of weights per image


def test_smer_per_image_weights_make_an_image_independent_of_its_batch(tiny_models, batch):
    images, labels = batch
    alone = torch.cat([SMER(tiny_models, steps=3)(images[i:i + 1], labels[i:i + 1]) for i in range(3)])
    together = SMER(tiny_models, steps=3)(images, labels)[:3]
    assert torch.allclose(alone, together, atol=1e-6)
    batch_weights = SMER(tiny_models, steps=3, weight_granularity="batch")(images, labels)[:3]
    assert not torch.equal(batch_weights, together)


def test_smer_visits_every_model_inner_passes_times_per_step(tiny_models):
    attack = SMER(tiny_models, inner_passes=4)
    attack.host_generator = torch.Generator().manual_seed(0)
    order = attack.inner_order()
    assert len(order) == 12 and all(sorted(order[i:i + 3]) == [0, 1, 2] for i in range(0, 12, 3))


@pytest.mark.parametrize("kwargs", [{"inner_passes": 0}, {"weight_lr": -1.0}, {"weight_granularity": "pixel"},
                                    {"norm": "L2"}])
def test_smer_bad_arguments(kwargs, tiny_models):
    with pytest.raises(ValueError):
        SMER(tiny_models, **kwargs)


def test_sgm_gamma_one_is_ens(tiny_resnets, batch):
    images, labels = batch
    assert torch.equal(SGM(tiny_resnets, gamma=1.0, steps=3)(images, labels),
                       Ens(tiny_resnets, steps=3)(images, labels))
    assert not torch.equal(SGM(tiny_resnets, steps=3)(images, labels), Ens(tiny_resnets, steps=3)(images, labels))


def test_sgm_gradient_by_hand(tiny_resnets, batch):
    """One block, z = x + r(x): SGM's gradient is dL/dz + gamma * J_r(x)^T dL/dz."""
    net = tiny_resnets[0]
    block = net.blocks[0]
    head = lambda z: net.head(torch.flatten(F.adaptive_avg_pool2d(net.blocks[1](z), 4), 1))  # noqa: E731
    branch = lambda x: block.conv2(torch.relu(block.conv1(x)))  # noqa: E731
    x, labels = torch.randn(3, 4, 8, 8), batch[1][:3]
    z = (x + branch(x)).detach().requires_grad_(True)
    upstream = torch.autograd.grad(F.cross_entropy(head(z), labels), z)[0]
    x_ = x.clone().requires_grad_(True)
    through_branch = torch.autograd.grad(branch(x_), x_, upstream)[0]
    with skip_gradient(residual_branch_ends(block), 0.3):
        x_ = x.clone().requires_grad_(True)
        got = torch.autograd.grad(F.cross_entropy(head(block(x_)), labels), x_)[0]
    assert torch.allclose(got, upstream + 0.3 * through_branch, atol=1e-6)


def test_sgm_finds_the_residual_blocks_and_leaves_no_hook(tiny_resnets, batch, tiny_models):
    # as the official code: every block but the first (downsampling) one of each stage
    assert residual_branch_ends(tiny_resnets[0]) == [tiny_resnets[0].blocks[1].conv2]
    assert len(residual_branch_ends(tiny_resnets[0], skip_first_block=False)) == 2
    resnet18 = torchvision.models.resnet18(num_classes=10)
    assert residual_branch_ends(resnet18) == [getattr(resnet18, f"layer{i}")[1].bn2 for i in range(1, 5)]
    assert len(residual_branch_ends(resnet18, skip_first_block=False)) == 8
    every_block = SGM(tiny_resnets, steps=2, skip_first_block=False)(*batch)
    assert not torch.equal(SGM(tiny_resnets, steps=2)(*batch), every_block)
    attack = SGM(tiny_resnets, steps=2)
    attack(*batch)
    assert all(not end._forward_hooks for model in tiny_resnets for end in residual_branch_ends(model))
    with pytest.raises(ValueError, match="residual"):
        SGM(tiny_models)
    with pytest.raises(ValueError, match="gamma"):
        SGM(tiny_resnets, gamma=1.5)


def test_sgm_on_stacked_surrogates_is_sgm(tiny_resnets, batch):
    from attacks.acceleration import accelerate

    stacked = accelerate(tiny_resnets, stack=True, channels_last=False)
    assert torch.allclose(SGM(stacked, steps=3)(*batch), SGM(tiny_resnets, steps=3)(*batch), atol=1e-6)


def test_sgm_on_the_zoos_resnets(models_path):
    from robustbench_ens.zoo import load_checkpoint

    names = ("resnet20_a_standard", "resnet20_b_chenyaofo", "resnet_sri_a_adv", "resnet8_mlperf_standard",
             "resnet4b_at2")
    models = {name: load_checkpoint(models_path / f"{name}.safetensors")[0] for name in names}
    counts = {name: (len(residual_branch_ends(m)), len(residual_branch_ends(m, skip_first_block=False)))
              for name, m in models.items()}
    assert counts == {"resnet20_a_standard": (6, 9), "resnet20_b_chenyaofo": (6, 9), "resnet_sri_a_adv": (2, 3),
                      "resnet8_mlperf_standard": (2, 3), "resnet4b_at2": (2, 4)}
    resnet20 = models["resnet20_a_standard"].net
    assert residual_branch_ends(resnet20) == [getattr(resnet20, f"layer{i}")[b].bn2 for i in (1, 2, 3) for b in (1, 2)]


def test_log_cross_entropy_is_finite_where_the_cross_entropy_underflows():
    from attacks.losses import log_cross_entropy

    logits = torch.tensor([[40.0, 0.0, -3.0], [2.0, 1.0, 0.0], [0.0, 5.0, 1.0], [120.0, 1.0, 0.0]],
                          requires_grad=True)
    labels = torch.tensor([0, 0, 0, 0])
    assert F.cross_entropy(logits[[0, 3]], labels[:2], reduction="none").eq(0).all()  # float32 underflow
    got = log_cross_entropy(logits, labels)

    def reference(z):  # log(-log(1 - q)) in float64, q the probability off the label (exp of a logsumexp difference)
        q = torch.exp(torch.logsumexp(z[:, 1:], 1) - torch.logsumexp(z, 1))
        return torch.log(-torch.log1p(-q))

    x = logits.detach().double().requires_grad_(True)
    exact = reference(x)
    assert torch.allclose(got.double(), exact.detach(), rtol=1e-6)
    grad = torch.autograd.grad(got.sum(), logits)[0]
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad.double(), torch.autograd.grad(exact.sum(), x)[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("granularity", ["sample", "batch"])
def test_smer_moves_every_image_even_where_the_surrogates_are_certain(tiny_models, batch, granularity):
    """Surrogates so sure of the label that CE is 0 in float32: the weights stay finite and every image moves."""
    images, labels = batch
    confident = [nn.Sequential(m, _Times(200.0)) for m in tiny_models]
    fused = sum(m(images) for m in confident) / len(confident)
    labels = fused.argmax(1)
    assert F.cross_entropy(fused, labels, reduction="none").eq(0).any()
    x_adv = SMER(confident, steps=2, weight_granularity=granularity)(images, labels)
    assert ((x_adv - images).flatten(1).abs().amax(1) > 0).all()


def test_an_attack_whose_gradient_is_nan_says_so(tiny_models, batch):
    nan_model = nn.Sequential(tiny_models[0], _Times(float("nan")))
    with pytest.raises(FloatingPointError, match="NaN or infinite for"):
        Ens([nan_model], steps=2)(*batch)


class _Times(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor
