"""Defenses: plain ensembles, single models, CrossMax on hand-made logit stacks, the multi-resolution stack."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from defenses import Ensemble, UnknownDefenseError, build_defense
from defenses.crossmax import crossmax
from defenses.multires import MultiResolutionStack
from conftest import interrupted_training


class Fixed(nn.Module):
    """Returns the same logits for every image."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_crossmax_by_hand():
    # two images, three predictors, three classes
    z = torch.tensor([[[2.0, 0.0, 1.0], [5.0, 4.0, 0.0], [0.0, 3.0, 3.0]],
                      [[1.0, 1.0, 1.0], [0.0, 2.0, 1.0], [4.0, 0.0, 0.0]]])
    # step 1 (minus each predictor's max): [[0,-2,-1],[0,-1,-5],[-3,0,0]] and [[0,0,0],[-2,0,-1],[0,-4,-4]]
    # step 2 (minus each class's max over predictors): class maxima [0,0,0] and [0,0,0] -> unchanged
    # median over predictors: [0,-1,-1] and [0,0,-1]; 2nd highest: [0,-1,-1] and [0,0,-1]; 3rd: [-3,-2,-5], [-2,-4,-4]
    assert torch.equal(crossmax(z), torch.tensor([[0.0, -1.0, -1.0], [0.0, 0.0, -1.0]]))
    assert torch.equal(crossmax(z, k=2), torch.tensor([[0.0, -1.0, -1.0], [0.0, 0.0, -1.0]]))
    assert torch.equal(crossmax(z, k=3), torch.tensor([[-3.0, -2.0, -5.0], [-2.0, -4.0, -4.0]]))
    with pytest.raises(ValueError, match=r"integer in \[2, 3\]"):  # every class reaches its own max somewhere: zeros
        crossmax(z, k=1)


def test_crossmax_second_step_by_hand():
    """One predictor with huge confidence in class 0 cannot carry the vote alone."""
    z = torch.tensor([[[10.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    # step 1: [[0,-10],[-1,0],[-1,0]]; step 2 (class maxima [0, 0]): unchanged; median: [-1, 0] -> class 1
    assert torch.equal(crossmax(z), torch.tensor([[-1.0, 0.0]]))
    assert crossmax(z).argmax(1).item() == 1 and z.mean(1).argmax(1).item() == 0  # mean logits would say class 0


def test_crossmax_ties_and_one_predictor():
    tied = torch.ones(1, 4, 3)
    assert torch.equal(crossmax(tied), torch.zeros(1, 3)) and torch.equal(crossmax(tied, k=4), torch.zeros(1, 3))
    one = torch.tensor([[[3.0, -1.0, 2.0]]])  # step 2 would subtract each value from itself: a constant prediction
    for k in (None, 1):
        with pytest.raises(ValueError, match="at least two predictors"):
            crossmax(one, k)


def test_constant_crossmax_refused_by_the_defenses():
    """k = 1 or a single member would make every prediction class 0: the defenses refuse them when built."""
    members = [Fixed([1.0, 0.0, 2.0]), Fixed([0.0, 3.0, 1.0])]
    with pytest.raises(ValueError, match="at least two predictors"):
        Ensemble(members[:1], aggregation="crossmax")
    with pytest.raises(ValueError, match=r"integer in \[2, 2\]"):
        Ensemble(members, aggregation="crossmax", crossmax_k=1)
    from defenses.self_ensemble import SelfEnsemble

    with pytest.raises(ValueError, match=r"integer in \[2, 8\]"):
        SelfEnsemble(depth=20, k=1)
    with pytest.raises(ValueError, match=r"integer in \[2, 8\]"):
        build_defense("self_ensemble", [SelfEnsemble(depth=20)], k=1)


@pytest.mark.parametrize("k", [None, 2, 3, 4])
def test_crossmax_invariances(k):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, 10, generator=g)
    out = crossmax(z, k)
    assert out.shape == (5, 10)
    assert torch.equal(crossmax(z[:, torch.tensor([2, 0, 3, 1])], k), out), "order of predictors"
    shifted = z.clone()
    shifted[:, 1] += 7.5
    assert torch.allclose(crossmax(shifted, k), out, atol=1e-5), "a constant added to one predictor"


@pytest.mark.parametrize("logits,k", [(torch.zeros(2, 3), None), (torch.zeros(1, 2, 3), 0),
                                      (torch.zeros(1, 2, 3), 3), (torch.zeros(1, 2, 3), 1.5)])
def test_crossmax_refuses_bad_input(logits, k):
    with pytest.raises(ValueError):
        crossmax(logits, k)


def test_ensemble_aggregations():
    members = [Fixed([2.0, 0.0, 1.0]), Fixed([5.0, 4.0, 0.0]), Fixed([0.0, 3.0, 3.0])]
    x = torch.rand(2, 3, 8, 8)
    stack = torch.stack([m(x) for m in members], dim=1)
    mean_prob = Ensemble(members)(x)
    assert torch.allclose(mean_prob.exp(), stack.softmax(2).mean(1), atol=1e-6)
    assert torch.allclose(Ensemble(members, "mean_logits")(x), stack.mean(1))
    assert torch.equal(Ensemble(members, "crossmax")(x), crossmax(stack))
    assert torch.equal(Ensemble(members, "crossmax", crossmax_k=3)(x), crossmax(stack, 3))
    assert torch.equal(Ensemble(members).predictor_logits(x), stack)


@pytest.mark.parametrize("kwargs", [{"aggregation": "vote"}, {"aggregation": "mean_prob", "crossmax_k": 2},
                                    {"aggregation": "crossmax", "crossmax_k": 5}])
def test_ensemble_refuses_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        Ensemble([Fixed([0.0, 1.0])] * 2, **kwargs)


def test_registry():
    members = [Fixed([0.0, 1.0]), Fixed([1.0, 0.0])]
    assert isinstance(build_defense("ensemble", members, aggregation="crossmax"), Ensemble)
    assert build_defense("single", members[:1]) is members[0]
    with pytest.raises(ValueError, match="exactly one"):
        build_defense("single", members)
    with pytest.raises(UnknownDefenseError, match="did you mean ensemble"):
        build_defense("ensembel", members)
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])


def test_crossmax_where_the_class_step_matters():
    z = torch.tensor([[[0.0, -5.0], [0.0, -3.0]]])
    # step 1 leaves it; step 2 subtracts the class maxima [0, -3]: [[0, -2], [0, 0]]
    assert torch.equal(crossmax(z, k=2), torch.tensor([[0.0, -2.0]]))
    assert torch.equal(crossmax(z), torch.tensor([[0.0, -2.0]]))  # the lower median of two


def test_multires_stack_shapes_range_and_seed():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    stack = MultiResolutionStack(seed=1)
    out = stack(x)
    assert out.shape == (4, 12, 32, 32) and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, stack(x)), "fresh perturbations at every call"
    stack.reseed(1)
    assert torch.equal(out, stack(x)), "same seed, same views"
    assert torch.equal(MultiResolutionStack(seed=1)(x), out)


def test_multires_stack_without_perturbations():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = MultiResolutionStack(resolutions=(32, 8), noise=0.0, jitter=0, contrast=(1, 1), colour=(1, 1))
    out = plain(x)
    assert torch.allclose(out[:, :3], x, atol=1e-5), "full resolution, no perturbation: the image itself"
    coarse = out[:, 3:]
    blocks = coarse.unfold(2, 4, 4).unfold(3, 4, 4)  # a bicubic 8x8 view is smooth: far less detail than x
    assert coarse.std() < x.std() and blocks.std(dim=(-1, -2)).mean() < 0.1


def test_multires_roll_matches_torch_roll():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6)
    stack = MultiResolutionStack(jitter=2, seed=3)
    rolled = stack._roll(x)
    stack.reseed(3)
    dy, dx = torch.randint(-2, 3, (2, 2), generator=stack.generator)
    expected = torch.stack([torch.roll(x[i], (int(dy[i]), int(dx[i])), dims=(1, 2)) for i in range(2)])
    assert torch.equal(rolled, expected)


def test_multires_stack_passes_gradients():
    x = torch.rand(2, 3, 32, 32).requires_grad_(True)
    MultiResolutionStack()(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [{"resolutions": ()}, {"resolutions": (32, 0)}, {"noise": -1.0},
                                    {"jitter": 1.5}, {"contrast": (1.5, 0.7)}, {"colour": (-0.1, 1.0)}])
def test_multires_stack_refuses_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        MultiResolutionStack(**kwargs)


def _resnet20(seed):
    from robustbench_ens.zoo import create_model

    return create_model("resnet20_b", seed=seed)


def test_dverge_features_follow_the_official_numbering():
    from defenses.dverge import feature_layers, features

    model = _resnet20(0).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert feature_layers(model) == 20
    assert torch.allclose(features(model, x, 20), model(x), atol=1e-5), "the last layer is the logits"
    assert features(model, x, 1).shape == (2, 16, 32, 32)  # the stem's BN, before its ReLU
    assert features(model, x, 1).min() < 0
    assert features(model, x, 8).shape == (2, 32, 16, 16)  # block 4 (first of stage 2): first BN
    assert features(model, x, 19).shape == (2, 64, 8, 8)   # block 9: residual sum, before the ReLU
    for bad in (0, 21, 2.0):
        with pytest.raises(ValueError, match="layer"):
            features(model, x, bad)
    with pytest.raises(TypeError, match="CIFAR ResNet"):
        features(nn.Linear(2, 2), x, 1)


@pytest.mark.parametrize("layer", [3, 12, 20])
def test_distillation_lowers_the_feature_distance_inside_its_ball(layer):
    from defenses.dverge import distill, features

    model = _resnet20(0).eval()
    g = torch.Generator().manual_seed(1)
    source, target = torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)
    distilled = distill(model, source, target, layer)
    distance = lambda x: F.mse_loss(features(model, x, layer), features(model, target, layer)).item()  # noqa: E731
    assert distance(distilled) < 0.9 * distance(source)
    assert (distilled - source).abs().max() <= 0.07 + 1e-6
    assert distilled.min() >= 0 and distilled.max() <= 1
    assert all(p.grad is None for p in model.parameters())


def test_one_dverge_step_lowers_its_loss():
    from defenses.dverge import cross_training_loss, distill, dverge_step

    members = [_resnet20(s) for s in range(3)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in members]
    g = torch.Generator().manual_seed(2)
    source, target = torch.rand(16, 3, 32, 32, generator=g), torch.rand(16, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (16,), generator=g)

    def total_loss():
        with torch.no_grad():
            distilled = [distill(m, source, target, 5, steps=3) for m in members]
        return sum(cross_training_loss(m, i, distilled, labels).item() for i, m in enumerate(members))

    torch.manual_seed(0)
    before = total_loss()
    losses = dverge_step(members, optimizers, source, labels, target, 5, steps=3)
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    assert total_loss() < before
    with pytest.raises(ValueError, match="two members"):
        dverge_step(members[:1], optimizers[:1], source, labels, target, 5)


def test_dverge_adv_variant_adds_the_pgd_term():
    from defenses.dverge import dverge_step

    g = torch.Generator().manual_seed(3)
    source, target = torch.rand(8, 3, 32, 32, generator=g), torch.rand(8, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (8,), generator=g)

    def run(**kwargs):  # lr 0: the members stay as built, so both runs see the same models
        members = [_resnet20(s) for s in range(2)]
        optimizers = [torch.optim.SGD(m.parameters(), lr=0.0) for m in members]
        return members, dverge_step(members, optimizers, source, labels, target, 5, steps=2, **kwargs)

    _, plain = run()
    members, with_adv = run(adv=True, adv_coeff=0.5)
    for member, p, a in zip(members, plain, with_adv):
        pgd_term = a - 0.5 * p
        with torch.no_grad():
            clean = F.cross_entropy(member(source), labels).item()
        assert pgd_term > clean, "the +adv term is the loss on PGD examples, above the clean loss"


def _dverge_run(data, folder, recipe, interrupt_after=None, monkeypatch=None):
    from defenses import dverge as dverge_training

    make = lambda: [_resnet20(s) for s in range(2)]  # noqa: E731
    train = lambda members, checkpoint_dir: dverge_training.train_dverge(  # noqa: E731
        members, data, recipe, seed=4, checkpoint_dir=checkpoint_dir, progress=False)
    if interrupt_after is not None:
        return interrupted_training(dverge_training, train, make, folder, interrupt_after, monkeypatch)
    members = make()
    return members, train(members, folder)


def test_dverge_training_resumes_exactly(tmp_path, slice_path, monkeypatch):
    from defenses.dverge import DVERGERecipe
    from robustbench_ens.data import load_cifar10

    data = load_cifar10(slice_path)
    recipe = DVERGERecipe(epochs=2, batch_size=16, n_train=32, steps=2, lr=0.05)
    straight, summary = _dverge_run(data, tmp_path / "a", recipe)
    assert len(summary["layers"]) == 2 and all(1 <= layer <= 20 for layer in summary["layers"])
    assert summary["resumed_from_epoch"] == 0 and all(len(losses) == 2 for losses in summary["losses"])
    fresh = _resnet20(0)
    assert not torch.equal(straight[0].net.conv1.weight, fresh.net.conv1.weight), "training moved the weights"

    resumed, summary = _dverge_run(data, tmp_path / "b", recipe, interrupt_after=1, monkeypatch=monkeypatch)
    assert summary["resumed_from_epoch"] == 1 and len(summary["layers"]) == 2
    for a, b in zip(straight, resumed):
        for (name, p), q in zip(a.net.state_dict().items(), b.net.state_dict().values()):
            assert torch.equal(p, q), name
    with pytest.raises(ValueError, match="another recipe or seed"):
        _dverge_run(data, tmp_path / "b", DVERGERecipe(epochs=3, batch_size=16, n_train=32, steps=2))


def test_dverge_schedule():
    from defenses.dverge import DVERGERecipe

    recipe = DVERGERecipe()
    assert [recipe.lr_at(e) for e in (0, 99, 100, 149, 150, 199)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    with pytest.raises(ValueError):
        DVERGERecipe(steps=0)


def test_dverge_ensemble_classifies_with_the_mean_softmax():
    from defenses import DVERGE

    members = [_resnet20(s).eval() for s in range(3)]
    x = torch.rand(2, 3, 32, 32)
    ensemble = build_defense("dverge", members)
    assert isinstance(ensemble, DVERGE)
    assert torch.allclose(ensemble(x), Ensemble(members)(x))
    with pytest.raises(ValueError, match="two members"):
        DVERGE(members[:1])
    with pytest.raises(TypeError, match="CIFAR ResNet"):
        DVERGE([nn.Linear(2, 2), nn.Linear(2, 2)])


def test_self_ensemble_predictors_and_crossmax():
    from defenses.self_ensemble import SelfEnsemble

    model = SelfEnsemble(depth=20).eval()
    assert model.head_blocks == (2, 3, 4, 5, 6, 7, 8) and model.n_predictors == 8
    x = torch.rand(3, 3, 32, 32)
    model.stack.reseed(5)
    stacked = model.predictor_logits(x)
    assert stacked.shape == (3, 8, 10)
    model.stack.reseed(5)
    assert torch.equal(model(x), crossmax(stacked, 3)), "CrossMax (3rd highest) over the 8 predictors"
    assert not torch.equal(model(x), model(x)), "a fresh random stack at every call: a randomised defense"
    x.requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_self_ensemble_options_and_registry():
    from defenses.self_ensemble import SelfEnsemble

    small = SelfEnsemble(depth=8, head_blocks=(0, 2), k=None,
                         stack=MultiResolutionStack(resolutions=(32, 8)))
    assert small.n_predictors == 3 and small.backbone.conv1.in_channels == 6
    assert small.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert build_defense("self_ensemble", [small]).k is None, "without k, the model keeps its own"
    assert build_defense("self_ensemble", [small], k=2).k == 2
    with pytest.raises(ValueError, match=r"k must be None \(the median\) or an integer in \[2, 3\]"):
        build_defense("self_ensemble", [small], k=4)
    for kwargs in ({"head_blocks": (9,)}, {"head_blocks": ()}, {"k": 9}):
        with pytest.raises(ValueError):
            SelfEnsemble(depth=20, **kwargs)
    with pytest.raises(ValueError, match="exactly one SelfEnsemble"):
        build_defense("self_ensemble", [nn.Linear(2, 2)])


def test_self_ensemble_training_phases(slice_path):
    from defenses.self_ensemble import SelfEnsemble, _HeadView, train_self_ensemble
    from robustbench_ens.data import load_cifar10
    from robustbench_ens.zoo import TrainRecipe, train_model

    data = load_cifar10(slice_path)
    recipe = TrainRecipe(epochs=1, batch_size=16, n_train=32, lr=0.02)
    model = SelfEnsemble(depth=8, head_blocks=(0, 1), stack=MultiResolutionStack(resolutions=(32, 8)))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    summary = train_self_ensemble(model, data, recipe, recipe, progress=False)
    assert set(summary) == {"backbone", "heads"} and sorted(summary["heads"]) == ["0", "1"]
    assert 0 <= summary["backbone"]["clean_acc"] <= 1
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, initial[k])}
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("heads.0") for k in changed)
    assert any(k.startswith("heads.1") for k in changed) and not model.training

    # phase 2 leaves the backbone (weights and BatchNorm statistics) exactly as it was
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head = model.heads[0][2].weight.clone()
    train_model(_HeadView(model, 0), data, recipe, progress=False)
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone.items())
    assert not torch.equal(head, model.heads[0][2].weight)


@pytest.mark.parametrize("count", [5, 8])
def test_a_dverge_step_trains_every_member_of_larger_ensembles(count):
    from defenses.dverge import dverge_step

    members = [_resnet20(s) for s in range(count)]
    before = [m.net.fc.weight.clone() for m in members]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01) for m in members]
    g = torch.Generator().manual_seed(6)
    source, target = torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)
    losses = dverge_step(members, optimizers, source, torch.randint(0, 10, (4,), generator=g), target, 20, steps=1)
    assert len(losses) == count and all(loss > 0 for loss in losses)
    assert all(not torch.equal(m.net.fc.weight, w) for m, w in zip(members, before))


def _deterministic_stack(resolutions=(32, 32)):
    return MultiResolutionStack(resolutions=resolutions, noise=0.0, jitter=0, contrast=(1, 1), colour=(1, 1))


def test_self_ensemble_backbone_starts_from_a_trained_resnet():
    from defenses.self_ensemble import SelfEnsemble

    trained = _resnet20(3).eval()
    model = SelfEnsemble(depth=20, stack=_deterministic_stack()).init_backbone_from(trained).eval()
    assert model.normalize_mean == trained.normalize_mean and model.normalize_std == trained.normalize_std
    x = torch.rand(2, 3, 32, 32)
    # two identical views, each through half the trained kernel: exactly the trained network
    assert torch.allclose(model.predictor_logits(x)[:, -1], trained(x), atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        SelfEnsemble(depth=32).init_backbone_from(trained)
    with pytest.raises(TypeError, match="CIFAR ResNet"):
        SelfEnsemble(depth=20).init_backbone_from(nn.Linear(2, 2))


def test_self_ensemble_checkpoints_round_trip(tmp_path):
    from defenses.self_ensemble import SelfEnsemble, load_self_ensemble, save_self_ensemble
    from robustbench_ens.zoo import CheckpointError, save_checkpoint

    model = SelfEnsemble(depth=8, head_blocks=(0, 2), k=2, stack=MultiResolutionStack(resolutions=(32, 8), seed=4),
                         mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_self_ensemble(model, tmp_path / "se", {"note": "test"})
    loaded, record = load_self_ensemble(tmp_path / "se.safetensors")
    assert loaded.config() == model.config() and record["note"] == "test" and not loaded.training
    x = torch.rand(3, 3, 32, 32)
    model.stack.reseed(9)
    loaded.stack.reseed(9)
    assert torch.equal(model(x), loaded(x))

    path = tmp_path / "se.safetensors"
    path.write_bytes(path.read_bytes()[:-4] + b"\0" * 4)
    with pytest.raises(CheckpointError, match="modified or is incomplete"):
        load_self_ensemble(path)
    save_checkpoint(_resnet20(0), tmp_path / "plain", {})
    with pytest.raises(CheckpointError, match="not a saved SelfEnsemble"):
        load_self_ensemble(tmp_path / "plain.safetensors")


def test_self_ensemble_on_a_timm_resnet_with_the_users_weights(tmp_path):
    import timm
    from safetensors.torch import save_file

    from defenses.self_ensemble import SelfEnsemble, load_self_ensemble, save_self_ensemble

    pretrained = timm.create_model("resnet18", num_classes=1000)
    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in pretrained.state_dict().items()}, str(weights))
    stack = MultiResolutionStack(resolutions=(32, 16))
    model = SelfEnsemble(timm_model="resnet18", timm_weights=str(weights), head_blocks=(3, 5), stack=stack).eval()
    assert model.arch == "self_ensemble_resnet18" and model.n_predictors == 3
    net = model.backbone.net
    assert net.conv1.in_channels == 6 and net.fc.out_features == 10
    # timm's adaptation of the first convolution: the kernel repeated per view, scaled by 3 / 6
    assert torch.allclose(net.conv1.weight, pretrained.conv1.weight.repeat(1, 2, 1, 1) / 2)
    assert torch.equal(net.layer3[0].conv1.weight, pretrained.layer3[0].conv1.weight)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)

    save_self_ensemble(model, tmp_path / "se", {})
    weights.unlink()  # a saved self-ensemble needs only its own file
    loaded, _ = load_self_ensemble(tmp_path / "se.safetensors")
    assert torch.equal(loaded.backbone.net.conv1.weight, net.conv1.weight)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        SelfEnsemble(timm_model="resnet18", timm_weights=str(weights))
    with pytest.raises(ValueError, match="not a ResNet-family"):
        SelfEnsemble(timm_model="vit_tiny_patch16_224")
    with pytest.raises(TypeError, match="own weights"):
        SelfEnsemble(timm_model="resnet18").init_backbone_from(_resnet20(0))


def test_self_ensemble_training_resumes_exactly(tmp_path, slice_path, monkeypatch):
    from defenses import self_ensemble
    from robustbench_ens.data import load_cifar10
    from robustbench_ens.zoo import TrainRecipe

    data = load_cifar10(slice_path)
    recipe = TrainRecipe(epochs=1, batch_size=16, n_train=32, lr=0.02)

    def fresh():
        torch.manual_seed(0)
        return self_ensemble.SelfEnsemble(depth=8, head_blocks=(0, 1), stack=MultiResolutionStack(resolutions=(32, 8)))

    straight = fresh()
    expected = self_ensemble.train_self_ensemble(straight, data, recipe, recipe, progress=False,
                                                 checkpoint_dir=tmp_path / "a")

    original, calls = self_ensemble.train_model, []

    def dies_at_the_second_head(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(self_ensemble, "train_model", dies_at_the_second_head)
    with pytest.raises(KeyboardInterrupt):
        self_ensemble.train_self_ensemble(fresh(), data, recipe, recipe, progress=False, checkpoint_dir=tmp_path / "b")
    monkeypatch.setattr(self_ensemble, "train_model", original)
    resumed = fresh()  # a new process: the backbone and the first head come from the checkpoint
    summary = self_ensemble.train_self_ensemble(resumed, data, recipe, recipe, progress=False,
                                                checkpoint_dir=tmp_path / "b")
    assert summary["heads"].keys() == expected["heads"].keys()
    assert summary["backbone"]["final_loss"] == expected["backbone"]["final_loss"]
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    with pytest.raises(ValueError, match="another model, recipe or seed"):
        self_ensemble.train_self_ensemble(fresh(), data, recipe, recipe, seed=1, progress=False,
                                          checkpoint_dir=tmp_path / "b")
