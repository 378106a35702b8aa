import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from attacks import CWA, LGV, PGD, SMER, SVRE, AdaEA, Ens, create_attack, list_attacks
from attacks.registry import UnknownAttackError

ATTACKS = {"Ens": Ens, "CWA": CWA, "AdaEA": AdaEA, "SVRE": SVRE, "SMER": SMER, "LGV": LGV, "PGD": PGD}
CASES = [(name, norm, eps) for name in sorted(ATTACKS) for norm, eps in (("Linf", 8 / 255), ("L2", 0.5))
         if norm in ATTACKS[name].norms]


@pytest.mark.parametrize("name,norm,eps", CASES)
def test_invariants(name, norm, eps, tiny_models, batch):
    images, labels = batch
    tiny_models[1].train()  # a model in train mode must come back in train mode
    modes = [[m.training for m in model.modules()] for model in tiny_models]
    for model in tiny_models:
        for p in model.parameters():
            p.grad = torch.full_like(p, 7.0)
    params = [[p.detach().clone() for p in model.parameters()] for model in tiny_models]

    x_adv = ATTACKS[name](tiny_models, eps=eps, norm=norm, steps=3, random_start=True)(images, labels)

    assert x_adv.shape == images.shape and x_adv.dtype == images.dtype and x_adv.device == images.device
    assert not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - images).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert (size > 0).any(), "the attack did not move"
    assert [[m.training for m in model.modules()] for model in tiny_models] == modes
    for model, before in zip(tiny_models, params):
        for p, p0 in zip(model.parameters(), before):
            assert torch.equal(p, p0)
            assert torch.equal(p.grad, torch.full_like(p, 7.0))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_same_seed_same_images(name, tiny_models, batch):
    images, labels = batch
    make = lambda seed: ATTACKS[name](tiny_models, steps=3, random_start=True, seed=seed)  # noqa: E731
    assert torch.equal(make(1)(images, labels), make(1)(images, labels))
    assert not torch.equal(make(1)(images, labels), make(2)(images, labels))
    state = torch.random.get_rng_state()
    make(3)(images, labels)
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG was touched"


def test_ens_one_surrogate_equals_torchattacks_mifgsm(tiny_models, batch):
    images, labels = batch
    model = tiny_models[0]
    ours = Ens([model], eps=8 / 255, alpha=2 / 255, steps=10, decay=1.0)(images, labels)
    theirs = torchattacks.MIFGSM(model, eps=8 / 255, alpha=2 / 255, steps=10, decay=1.0)(images, labels)
    assert torch.equal(ours, theirs)


def test_ens_equals_torchattacks_on_a_pretrained_resnet(slice_path, models_path):
    from robustbench_ens.data import load_cifar10
    from robustbench_ens.zoo import load_checkpoint

    model, _ = load_checkpoint(models_path / "resnet20_a_standard.safetensors")
    images, labels = load_cifar10(slice_path).test(16)
    ours = Ens(model, eps=4 / 255, alpha=1 / 255, steps=5, decay=0.9)(images, labels)
    theirs = torchattacks.MIFGSM(model, eps=4 / 255, alpha=1 / 255, steps=5, decay=0.9)(images, labels)
    assert torch.equal(ours, theirs)
    assert (model(ours).argmax(1) != labels).float().mean() > 0.8  # white-box: nearly all fooled


def _fused_loss_by_hand(models, x, y, fusion):
    logits = [m(x) for m in models]
    if fusion == "logits":
        return F.cross_entropy(torch.stack(logits).mean(0), y)
    if fusion == "probs":
        return F.nll_loss(torch.stack([z.softmax(1) for z in logits]).mean(0).log(), y)
    return torch.stack([F.cross_entropy(z, y) for z in logits]).mean()


@pytest.mark.parametrize("fusion", ["logits", "probs", "loss"])
def test_ens_first_step_follows_the_fused_gradient(fusion, tiny_models, batch):
    images, labels = batch
    x = images.clone().requires_grad_(True)
    grad = torch.autograd.grad(_fused_loss_by_hand(tiny_models, x, labels, fusion), x)[0]
    expected = torch.clamp(images + 2 / 255 * grad.sign(), 0, 1)
    got = Ens(tiny_models, eps=8 / 255, alpha=2 / 255, steps=1, fusion=fusion)(images, labels)
    assert torch.allclose(got, expected, atol=1e-6)


def test_fusions_differ(tiny_models, batch):
    images, labels = batch
    outs = [Ens(tiny_models, steps=5, fusion=f)(images, labels) for f in ("logits", "probs", "loss")]
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_targeted_moves_towards_the_target(tiny_models, batch):
    images, _ = batch
    targets = torch.full((len(images),), 3)
    ensemble = lambda x: torch.stack([m(x) for m in tiny_models]).mean(0)  # noqa: E731
    before = F.cross_entropy(ensemble(images), targets)
    x_adv = Ens(tiny_models, eps=16 / 255, steps=10, targeted=True)(images, targets)
    assert F.cross_entropy(ensemble(x_adv), targets) < before


def test_untargeted_raises_the_loss(tiny_models, batch):
    images, labels = batch
    ensemble = lambda x: torch.stack([m(x) for m in tiny_models]).mean(0)  # noqa: E731
    x_adv = Ens(tiny_models, steps=10)(images, labels)
    assert F.cross_entropy(ensemble(x_adv), labels) > F.cross_entropy(ensemble(images), labels)


def test_default_alpha_is_eps_over_steps(tiny_models):
    assert Ens(tiny_models, eps=8 / 255, steps=4).alpha == pytest.approx(2 / 255)


def test_weights_are_normalised(tiny_models):
    assert Ens(tiny_models, weights=[2, 1, 1]).weights == [0.5, 0.25, 0.25]


@pytest.mark.parametrize("kwargs,error", [
    ({"eps": -0.1}, ValueError), ({"steps": 0}, ValueError), ({"steps": 2.5}, ValueError),
    ({"alpha": -1.0}, ValueError), ({"norm": "L1"}, ValueError), ({"fusion": "max"}, ValueError),
    ({"weights": [1, 1]}, ValueError), ({"decay": float("nan")}, ValueError),
])
def test_bad_arguments(kwargs, error, tiny_models):
    with pytest.raises(error):
        Ens(tiny_models, **kwargs)


def test_no_models():
    with pytest.raises(ValueError, match="at least one"):
        Ens([])
    with pytest.raises(TypeError):
        Ens("resnet20")


@pytest.mark.parametrize("problem", ["range", "nan", "batch", "shape", "dtype", "float labels"])
def test_bad_inputs(problem, tiny_models, batch):
    images, labels = batch
    if problem == "range":
        images = images * 2
    if problem == "nan":
        images[0, 0, 0, 0] = float("nan")
    if problem == "float labels":
        labels = labels.float()
    if problem == "batch":
        labels = labels[:-1]
    if problem == "shape":
        images = images[0]
    if problem == "dtype":
        images = (images * 255).to(torch.uint8)
    with pytest.raises((ValueError, TypeError)):
        Ens(tiny_models)(images, labels)


BAD_COMMON_ARGUMENTS = [{"eps": -0.1}, {"eps": "8/255"}, {"steps": 0}, {"alpha": -1.0}, {"decay": float("nan")}]


@pytest.mark.parametrize("name,kwargs", [  # every bad value of every argument the attack takes (PGD has no decay)
    (name, kwargs) for name in sorted(ATTACKS) for kwargs in BAD_COMMON_ARGUMENTS
    if set(kwargs) <= set(inspect.signature(ATTACKS[name]).parameters)])
def test_every_attack_checks_common_arguments(name, kwargs, tiny_models):
    with pytest.raises(ValueError):
        ATTACKS[name](tiny_models, **kwargs)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_checks_inputs(name, tiny_models, batch):
    images, labels = batch
    with pytest.raises(ValueError, match="batch sizes"):
        ATTACKS[name](tiny_models)(images, labels[:-1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ATTACKS[name](tiny_models)(images + 1, labels)
    with pytest.raises(ValueError, match="labels must be class indices >= 0"):
        ATTACKS[name](tiny_models)(images, labels - labels.max() - 1)
    with pytest.raises(ValueError, match="labels must be class indices below the models' number of classes"):
        ATTACKS[name](tiny_models)(images, labels + 1000)
    with pytest.raises(ValueError, match="at least one"):
        ATTACKS[name]([])


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_with_the_cw_loss_names_labels_beyond_the_classes(name, tiny_models, batch):
    if "loss" not in inspect.signature(ATTACKS[name]).parameters:
        pytest.skip(f"{name} has no loss option")
    images, labels = batch
    with pytest.raises(ValueError, match="labels must be class indices below the models' number of classes"):
        ATTACKS[name](tiny_models, loss="cw")(images, labels + 1000)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_returns_an_empty_batch_as_it_came(name, tiny_models, batch):
    images, labels = batch
    out = ATTACKS[name](tiny_models, steps=2)(images[:0], labels[:0])
    assert out.shape == images[:0].shape and out.dtype == images.dtype


def test_numpy_numbers_are_numbers(tiny_models):
    attack = PGD(tiny_models, eps=np.float32(8 / 255), steps=np.int64(4), eot_samples=np.int64(2))
    assert attack.alpha == pytest.approx(2.5 * (8 / 255) / 4) and type(attack.steps) is int
    assert type(attack.eot_samples) is int and Ens(tiny_models, steps=np.int32(5)).alpha == pytest.approx(1.6 / 255)
    with pytest.raises(ValueError, match="a Python or NumPy number"):
        Ens(tiny_models, eps=torch.tensor(8 / 255))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_targeted_lowers_the_target_loss(name, tiny_models, batch):
    images, _ = batch
    targets = torch.full((len(images),), 3)
    ensemble = lambda x: torch.stack([m(x) for m in tiny_models]).mean(0)  # noqa: E731
    x_adv = ATTACKS[name](tiny_models, eps=16 / 255, steps=5, targeted=True)(images, targets)
    assert F.cross_entropy(ensemble(x_adv), targets) < F.cross_entropy(ensemble(images), targets)


def test_a_module_list_is_a_list_of_surrogates(tiny_models, batch):
    images, labels = batch
    assert torch.equal(Ens(nn.ModuleList(tiny_models))(images, labels), Ens(tiny_models)(images, labels))
    assert len(CWA(nn.ModuleList(tiny_models)).models) == 3
    with pytest.raises(TypeError, match="ModuleDict"):
        Ens(nn.ModuleDict({"a": tiny_models[0]}))


def test_labels_of_any_integer_dtype(tiny_models, batch):
    images, labels = batch
    assert torch.equal(Ens(tiny_models)(images, labels.int()), Ens(tiny_models)(images, labels))


def test_linf_eps_in_pixel_units_warns(tiny_models):
    with pytest.warns(UserWarning, match="8/255"):
        Ens(tiny_models, eps=8)


class GlobalNoise(nn.Module):
    """A randomised model drawing its input noise from torch's global RNG."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x + 0.1 * torch.rand_like(x))


def test_a_model_drawing_from_the_global_rng_repeats_and_leaves_the_callers_state(tiny_models, batch):
    images, labels = batch
    model = GlobalNoise(tiny_models[0]).eval()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = PGD(model, steps=3, eot_samples=2)(images, labels)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(PGD(model, steps=3, eot_samples=2)(images, labels), first)


class OwnNoise(nn.Module):
    """A randomised model drawing its input noise from its own generator, as the CrossMax self-ensemble's stack."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = nn.Sequential(net)
        self.generator = torch.Generator().manual_seed(7)

    def forward(self, x):
        return self.net[0](x + 0.1 * torch.rand(x.shape, generator=self.generator))


def test_a_model_with_its_own_generator_repeats_and_keeps_its_state(tiny_models, batch):
    images, labels = batch
    model = nn.Sequential(OwnNoise(tiny_models[0])).eval()  # wrapped: the generator is found in the submodules
    state = model[0].generator.get_state()
    first = PGD(model, steps=3, eot_samples=2)(images, labels)
    assert torch.equal(model[0].generator.get_state(), state), "the model's generator was left advanced"
    assert torch.equal(PGD(model, steps=3, eot_samples=2)(images, labels), first)
    assert not torch.equal(PGD(model, steps=3, eot_samples=2, seed=1)(images, labels), first)


def test_adaea_needs_two_models_for_its_modules(tiny_models, batch):
    with pytest.raises(ValueError, match="at least 2 models"):
        AdaEA(tiny_models[:1])
    images, labels = batch
    plain = AdaEA(tiny_models[:1], agm=False, drf=False, decay=1.0, alpha=0.8 / 255)(images, labels)
    assert torch.equal(plain, Ens(tiny_models[:1])(images, labels))


def test_importing_attacks_leaves_the_heavy_libraries_unloaded():
    """torchattacks (and scipy behind it) and pyautoattack load only when Square or AutoAttack runs."""
    code = "import sys, attacks; print(sorted({'torchattacks', 'pyautoattack', 'scipy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry(tiny_models):
    assert {"ens", "cwa", "adaea", "svre", "smer", "sgm"} <= set(list_attacks())
    assert isinstance(create_attack("Ens", tiny_models, steps=2), Ens)
    with pytest.raises(UnknownAttackError, match="did you mean ens"):
        create_attack("enss", tiny_models)


class Band(nn.Module):
    """Two classes on the images' mean brightness s: class 1 wins only in a narrow band around 0.55, so PGD steps
    into the band and, one step later, out of it again."""

    def forward(self, x):
        s = x.mean(dim=(1, 2, 3))
        return torch.stack([10 * (s - 0.55).abs(), torch.full_like(s, 0.2)], dim=1)


def test_pgd_early_stop_keeps_a_point_that_a_later_step_would_unfool():
    images, labels = torch.full((1, 3, 4, 4), 0.5), torch.tensor([0])
    model = Band()
    make = lambda early: PGD(model, eps=0.1, alpha=0.04, steps=2, random_start=False, early_stop=early)  # noqa: E731
    assert model(make(False)(images, labels)).argmax(1).item() == 0  # in the band after one step, out after two
    assert model(make(True)(images, labels)).argmax(1).item() == 1


def test_pgd_early_stop_fools_at_least_the_points_plain_pgd_fools(tiny_models, batch):
    images, labels = batch
    model = tiny_models[0]
    with torch.no_grad():
        labels = model(images).argmax(1)  # every point starts correct
    plain, early = (PGD(model, eps=8 / 255, steps=10, early_stop=e)(images, labels) for e in (False, True))
    with torch.no_grad():
        fooled_plain, fooled_early = (model(x).argmax(1) != labels for x in (plain, early))
    assert fooled_plain.any() and not fooled_plain.all() and (fooled_early | ~fooled_plain).all()
    from robustbench_ens.profiling import PassRecorder
    images_seen = []
    for stop in (False, True):
        with PassRecorder([model]) as recorder:
            PGD(model, eps=8 / 255, steps=10, early_stop=stop)(images, labels)
        images_seen.append(recorder.counts()["images_forward"])
    assert images_seen[1] < images_seen[0]  # the fooled points left the batch
    assert ((early - images).abs().max() <= 8 / 255 + 1e-6) and early.min() >= 0 and early.max() <= 1


def test_pgd_early_stop_needs_one_deterministic_model(tiny_models):
    for kwargs in ({"early_stop": True, "eot_samples": 2}, {"early_stop": True, "transforms": ["di"]}):
        with pytest.raises(ValueError, match="early_stop"):
            PGD(tiny_models[:1], **kwargs)
    with pytest.raises(ValueError, match="early_stop"):
        PGD(tiny_models, early_stop=True)
