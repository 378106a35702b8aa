"""SMER and SGM: their update rules against hand computations, and each documented option."""
import pytest
import torch
import torch.nn.functional as F
import torchvision

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
    assert len(residual_branch_ends(tiny_resnets[0])) == 2
    assert len(residual_branch_ends(torchvision.models.resnet18(num_classes=10))) == 8
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

    counts = {name: len(residual_branch_ends(load_checkpoint(models_path / f"{name}.safetensors")[0]))
              for name in ("resnet20_a_standard", "resnet20_b_chenyaofo", "resnet_sri_a_adv", "resnet8_mlperf_standard",
                           "resnet4b_at2")}
    assert counts == {"resnet20_a_standard": 9, "resnet20_b_chenyaofo": 9, "resnet_sri_a_adv": 3,
                      "resnet8_mlperf_standard": 3, "resnet4b_at2": 4}
