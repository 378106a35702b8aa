"""LGV surrogates: a collection along a constant-learning-rate SGD trajectory."""
import dataclasses

import pytest
import torch

from attacks import Ens
from robustbench_ens.data import load_cifar10
from robustbench_ens.zoo import LGV_RECIPE, collect_lgv, create_model


@pytest.fixture
def small_data(slice_path):
    data = load_cifar10(slice_path)
    return dataclasses.replace(data, x_train=data.x_train[:256], y_train=data.y_train[:256],
                               x_test=data.x_test[:64], y_test=data.y_test[:64])


def _recipe(**changes):
    return dataclasses.replace(LGV_RECIPE, **{"epochs": 2, "batch_size": 64, **changes})


def test_collects_samples_per_epoch_and_leaves_the_model(small_data):
    model = create_model("resnet2b", seed=0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    members = collect_lgv(model, small_data, _recipe(), samples_per_epoch=2, progress=False)
    assert len(members) == 4  # 2 epochs x 2 samples
    assert all(not m.training for m in members)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "the source model changed"
    first = [m.net.conv1.weight for m in members]
    assert all(not torch.equal(a, b) for a, b in zip(first, first[1:])), "members must differ"
    assert not torch.equal(first[0], model.net.conv1.weight)
    # an attack uses the collection as an ensemble
    x, y = small_data.test(8)
    assert Ens(members, steps=2)(x, y).shape == x.shape


def test_same_seed_same_collection(small_data):
    model = create_model("resnet2b", seed=0)
    a = collect_lgv(model, small_data, _recipe(epochs=1), samples_per_epoch=2, seed=3, progress=False)
    b = collect_lgv(model, small_data, _recipe(epochs=1), samples_per_epoch=2, seed=3, progress=False)
    assert all(torch.equal(p.net.linear2.weight, q.net.linear2.weight) for p, q in zip(a, b))


@pytest.mark.parametrize("kwargs,match", [
    ({"recipe": _recipe(schedule="cosine")}, "constant"),
    ({"samples_per_epoch": 0}, ">= 1"),
    ({"samples_per_epoch": 100}, "exceeds"),
])
def test_bad_arguments(kwargs, match, small_data):
    with pytest.raises(ValueError, match=match):
        collect_lgv(create_model("resnet2b"), small_data, **{"recipe": _recipe(), **kwargs}, progress=False)
