"""Tests of robustbench_ens.zoo: architectures, shared checkpoints, save/load, training, resolution."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import robustbench_ens.zoo as zoo
from robustbench_ens.data import load_cifar10
from robustbench_ens.zoo import (CheckpointError, ModelSpec, Normalized, TrainRecipe, UnknownModelError,
                                 create_model, list_models, load_checkpoint, resolve_model, save_checkpoint,
                                 train_model)
from robustbench_ens.zoo.train import augment, evaluate_accuracy

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RBE_DATA") or REPO.parent / "shared" / "data" / "cifar10_slice.npz")
MODELS = Path(os.environ.get("RBE_MODELS") or REPO.parent / "shared" / "models")

# Accuracy (%) on all 846 test images of the slice, from the shared models' README.
README_ACCURACY = {
    "resnet20_a_standard": 91.73, "resnet32_a_standard": 93.03,
    "resnet44_a_standard": 93.74, "resnet56_a_standard": 93.26,
    "resnet20_b_baseline_m0": 93.50, "resnet20_b_baseline_m1": 92.55, "resnet20_b_baseline_m2": 93.26,
    "resnet20_b_dverge_s0_m0": 90.54, "resnet20_b_dverge_s0_m1": 90.78, "resnet20_b_dverge_s0_m2": 91.25,
    "resnet20_b_dverge_s1_m0": 90.43, "resnet20_b_dverge_s1_m1": 90.31, "resnet20_b_dverge_s1_m2": 90.66,
    "resnet20_b_dverge_s2_m0": 90.43, "resnet20_b_dverge_s2_m1": 90.66, "resnet20_b_dverge_s2_m2": 90.31,
    "resnet2b_at2": 68.56, "resnet4b_at2": 76.60,
}
EXPECTED_ARCH = {"resnet20_a_standard": "resnet20_a", "resnet32_a_standard": "resnet32_a",
                 "resnet44_a_standard": "resnet44_a", "resnet56_a_standard": "resnet56_a",
                 "resnet2b_at2": "resnet2b", "resnet4b_at2": "resnet4b"}
# Accuracy is checked on these (every option-A file, one member of two ensembles, both VNN files);
# the other members are checked for loading only, to keep the suite fast.
ACCURACY_CHECKED = ("resnet20_a_standard", "resnet32_a_standard", "resnet44_a_standard", "resnet56_a_standard",
                    "resnet20_b_baseline_m0", "resnet20_b_dverge_s0_m0", "resnet2b_at2", "resnet4b_at2")
# The README's numbers are on all 846 points, and we reproduce them to the image. On the first 200
# points alone sampling noise reaches 3.4 points (resnet4b_at2: 80.0 % vs 76.6 %), so the whole slice
# is used with a tolerance of a few images (cross-platform float differences can flip a borderline one).
TOLERANCE_PCT = 0.5

needs_data = pytest.mark.skipif(not DATA.is_file(), reason=f"no CIFAR-10 slice at {DATA} (set RBE_DATA)")
needs_models = pytest.mark.skipif(not MODELS.is_dir(), reason=f"no shared models at {MODELS} (set RBE_MODELS)")


@pytest.fixture(scope="module")
def data():
    if not DATA.is_file():
        pytest.skip(f"no CIFAR-10 slice at {DATA} (set RBE_DATA)")
    return load_cifar10(DATA)


@pytest.fixture(scope="module")
def small_data(data):
    """The slice cut to 256 train and 64 test points, so training and its evaluation are quick."""
    return type(data)(x_train=data.x_train[:256], y_train=data.y_train[:256], x_test=data.x_test[:64],
                      y_test=data.y_test[:64], source=data.source + "[:256]")


TINY = TrainRecipe(epochs=1, batch_size=32, lr=0.05, n_train=256)


# --- architectures -------------------------------------------------------------------------------

def test_registry_lists_the_families():
    names = list_models()
    for expected in ("resnet20_a", "resnet32_a", "resnet44_a", "resnet56_a", "resnet110_a",
                     "resnet20_b", "resnet110_b", "resnet2b", "resnet4b", "vgg11_bn", "vgg16_bn",
                     "mobilenetv2", "vit_tiny_p4"):
        assert expected in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", list_models())
def test_every_arch_maps_images_to_logits(name):
    model = create_model(name).eval()
    assert isinstance(model, Normalized) and model.arch == name
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    # normalisation lives in non-persistent buffers: never in the checkpointed state dict
    assert model.mean.shape == model.std.shape == (1, 3, 1, 1)
    assert not any(key in ("mean", "std") for key in model.state_dict())
    assert set(model.state_dict()) == {f"net.{key}" for key in model.net.state_dict()}


def test_normalized_forward_and_custom_stats():
    model = create_model("resnet2b", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model.net((x - 0.5) / 0.25))
    assert model.normalize_mean == (0.5, 0.5, 0.5)
    assert create_model("resnet20_b").normalize_std == (0.2023, 0.1994, 0.2010)  # the family default
    assert create_model("resnet4b").normalize_std == (0.2471, 0.2435, 0.2616)
    with pytest.raises(ValueError):
        create_model("resnet2b", std=(0.2, 0.0, 0.2))
    for bad in (x[:, :1], x[0]):  # a grey batch would broadcast against the RGB statistics
        with pytest.raises(ValueError, match=r"RGB images shaped \[N, 3, H, W\]"):
            model(bad)


def test_option_a_and_b_share_one_block_but_differ_in_shortcut_and_head():
    a, b = create_model("resnet20_a").net, create_model("resnet20_b").net
    assert type(a.layer2[0]) is type(b.layer2[0])
    a_keys, b_keys = set(a.state_dict()), set(b.state_dict())
    assert "linear.weight" in a_keys and "fc.weight" in b_keys
    assert not any("downsample" in key for key in a_keys)
    assert "layer2.0.downsample.0.weight" in b_keys and "layer2.0.downsample.1.running_var" in b_keys
    assert "layer1.0.downsample.0.weight" not in b_keys  # identity where the shape is unchanged
    assert sum(p.numel() for p in a.parameters()) == 269_722  # the paper's 0.27M
    x = torch.randn(2, 16, 32, 32)
    out = a.layer2[0].downsample(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and not out[:, :8].any() and not out[:, 24:].any()


def test_create_model_seed_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    one, two = create_model("resnet20_a", seed=3), create_model("resnet20_a", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(one.state_dict().values(), two.state_dict().values()))


def test_unknown_arch_suggests_the_closest():
    with pytest.raises(UnknownModelError) as info:
        create_model("resnet20a")
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert "'resnet20a'" in message and "did you mean resnet20_a" in message
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model("resnet20_a")(lambda num_classes=10: None)


# --- the shared pretrained files ---------------------------------------------------------------------

@needs_models
@pytest.mark.parametrize("stem", sorted(README_ACCURACY))
def test_shared_file_loads_strictly(stem):
    path = MODELS / f"{stem}.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    model, provenance = load_checkpoint(path)
    assert model.arch == EXPECTED_ARCH.get(stem, "resnet20_b")
    assert not model.training
    assert provenance["source"] == str(path) and len(provenance["sha256"]) == 64
    assert provenance["arch"] == model.arch
    if stem.startswith("resnet20_b"):
        assert model.normalize_std == (0.2023, 0.1994, 0.2010)
    if stem.endswith("_at2"):
        assert provenance["training"] == "adversarial, Linf 2/255"


@needs_models
@pytest.mark.parametrize("stem", ACCURACY_CHECKED)
def test_shared_file_accuracy_matches_readme(stem, data):
    path = MODELS / f"{stem}.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    model, _ = load_checkpoint(path)
    x, y = data.test()
    accuracy = 100 * evaluate_accuracy(model, x, y)
    assert abs(accuracy - README_ACCURACY[stem]) <= TOLERANCE_PCT, f"{stem}: {accuracy:.2f} % on {len(y)} points"


@needs_models
def test_shared_file_with_wrong_arch_is_refused():
    path = MODELS / "resnet20_a_standard.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    with pytest.raises(CheckpointError, match="not 'resnet20_b'"):
        load_checkpoint(path, arch="resnet20_b")
    model, _ = load_checkpoint(path, arch="resnet20-optionA")  # external names map to registry names
    assert model.arch == "resnet20_a"


# --- save / load ---------------------------------------------------------------------------------------

def _saved(tmp_path, name="resnet20_b"):
    model = create_model(name, seed=1).eval()
    with torch.no_grad():  # non-trivial BN statistics, so the round trip covers the buffers too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    provenance = {"note": "unit test", "recipe": TINY.to_dict(), "clean_acc": 0.5}
    return model, provenance, save_checkpoint(model, tmp_path / "member", provenance)


def test_save_load_round_trip(tmp_path):
    model, provenance, path = _saved(tmp_path)
    assert path == tmp_path / "member.safetensors" and (tmp_path / "member.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member.json", "member.safetensors"]  # no temp files
    loaded, record = load_checkpoint(path)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training and loaded.arch == model.arch
    assert loaded.normalize_mean == model.normalize_mean and loaded.normalize_std == model.normalize_std
    assert {k: record[k] for k in provenance} == provenance
    assert record == json.loads((tmp_path / "member.json").read_text())
    assert record["arch"] == "resnet20_b" and len(record["sha256"]) == 64
    from safetensors import safe_open
    with safe_open(str(path), "pt") as file:
        assert file.metadata() == {"arch": "resnet20_b", "normalize_mean": "0.4914,0.4822,0.4465",
                                   "normalize_std": "0.2023,0.1994,0.201"}


def test_round_trip_of_a_vit(tmp_path):
    model = create_model("vit_tiny_p4", seed=0).eval()
    path = save_checkpoint(model, tmp_path / "vit", {})
    loaded, _ = load_checkpoint(path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_tampered_file_is_refused(tmp_path):
    _, _, path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight: still a valid safetensors file
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [4, 200, 0.5])
def test_truncated_file_is_refused(tmp_path, keep):
    _, _, path = _saved(tmp_path)
    data = path.read_bytes()
    cut = data[:int(len(data) * keep) if isinstance(keep, float) else keep]
    path.write_bytes(cut)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    (tmp_path / "member.json").unlink()  # without the recorded hash the file is still refused
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing_or_extra_keys_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file
    _, _, path = _saved(tmp_path)
    (tmp_path / "member.json").unlink()
    metadata = {"arch": "resnet20-optionB", "normalize_mean": "0.5,0.5,0.5", "normalize_std": "0.2,0.2,0.2"}
    state = load_file(path)
    no_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file(no_counters, tmp_path / "ok.safetensors", metadata=metadata)
    assert load_checkpoint(tmp_path / "ok.safetensors")[0].normalize_mean == (0.5, 0.5, 0.5)
    save_file({k: v for k, v in state.items() if k != "fc.bias"}, tmp_path / "miss.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match="fc.bias"):
        load_checkpoint(tmp_path / "miss.safetensors")
    save_file({**state, "extra": torch.zeros(1)}, tmp_path / "extra.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match="extra"):
        load_checkpoint(tmp_path / "extra.safetensors")
    save_file(state, tmp_path / "nonorm.safetensors", metadata={"arch": "resnet20_b"})
    with pytest.raises(CheckpointError, match="normalize_mean"):
        load_checkpoint(tmp_path / "nonorm.safetensors")


# --- training ------------------------------------------------------------------------------------------

def test_recipe_validation():
    for bad in ({"epochs": 0}, {"schedule": "step"}, {"lr": 0.0}, {"lr": -1.0}, {"batch_size": 0},
                {"momentum": 0.0, "nesterov": True}, {"n_train": 0}):
        with pytest.raises(ValueError, match="bad training recipe"):
            TrainRecipe(**bad)
    assert TrainRecipe.from_dict(TrainRecipe(epochs=3).to_dict()) == TrainRecipe(epochs=3)
    with pytest.raises(ValueError, match="unknown"):
        TrainRecipe.from_dict({"epoch": 3})


def test_augment_crops_and_flips_without_changing_content_shape():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    out = augment(x, padding=4, flip=True, generator=g)
    assert out.shape == x.shape
    same = augment(x, padding=0, flip=False, generator=g)
    assert torch.equal(same, x)
    # each output is a shifted (possibly flipped) window of its zero-padded input
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)


def test_train_model_is_deterministic(small_data):
    results, states = [], []
    for _ in range(2):
        model = create_model("resnet20_a", seed=0)
        results.append(train_model(model, small_data, TINY, seed=7, progress=False))
        assert not model.training
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert 0.0 <= results[0]["clean_acc"] <= 1.0 and results[0]["clean_acc"] == results[1]["clean_acc"]
    assert results[0]["epochs"] == 1 and results[0]["train_time_s"] > 0


def test_training_seed_matters(small_data):
    states = []
    for seed in (7, 8):
        model = create_model("resnet2b", seed=0)  # same initial weights: only the data order/augmentation differ
        train_model(model, small_data, TINY, seed=seed, progress=False)
        states.append(model.state_dict())
    assert not all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_onecycle_schedule_runs(small_data):
    model = create_model("resnet2b", seed=0)
    result = train_model(model, small_data, TrainRecipe(epochs=2, batch_size=64, schedule="onecycle", n_train=128),
                         progress=False)
    assert 0.0 <= result["clean_acc"] <= 1.0


def test_training_into_a_log_file_prints_one_line_per_epoch(small_data, capsys):
    model = create_model("resnet2b", seed=0)
    train_model(model, small_data, TrainRecipe(epochs=2, batch_size=64, n_train=128))  # stdout is not a terminal
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[train")]
    assert [line.split("epoch ")[1].split(",")[0] for line in lines] == ["1/2", "2/2"]
    assert "loss" in lines[0] and "train accuracy" in lines[0]
    train_model(model, small_data, TrainRecipe(epochs=1, batch_size=64, n_train=128), progress=False)
    assert "[train" not in capsys.readouterr().out


# --- resolution ----------------------------------------------------------------------------------------

def test_resolve_trains_once_then_uses_the_cache(small_data, tmp_path, monkeypatch, capsys):
    spec = ModelSpec(name="m0", arch="resnet2b", recipe=TINY, seed=0)
    model, provenance = resolve_model(spec, small_data, models_dir=None, cache_dir=tmp_path, progress=False)
    assert provenance["origin"] == "trained" and "training" in capsys.readouterr().out
    for key in ("arch", "recipe", "seed", "data_sha256", "data_source", "epochs", "clean_acc", "trained_at",
                "torch", "sha256"):
        assert key in provenance
    assert provenance["data_sha256"] == small_data.sha256 and provenance["recipe"] == TINY.to_dict()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("m0-") and files[0].endswith(".json")

    def no_training(*args, **kwargs):
        raise AssertionError("resolve_model trained although the cache holds the model")

    monkeypatch.setattr("robustbench_ens.zoo.resolve.train_model", no_training)
    again, cached = resolve_model(spec, small_data, models_dir=None, cache_dir=tmp_path, progress=False)
    assert cached["origin"] == "cache" and "cached" in capsys.readouterr().out
    assert {k: v for k, v in cached.items() if k != "origin"} == {k: v for k, v in provenance.items()
                                                                   if k != "origin"}
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    # anything that changes the weights changes the key: a new seed is trained, not taken from the cache
    with pytest.raises(AssertionError, match="trained although"):
        resolve_model(ModelSpec(name="m0", arch="resnet2b", recipe=TINY, seed=1), small_data, None, tmp_path,
                      progress=False)


def test_resolve_loads_from_models_dir(small_data, tmp_path, monkeypatch):
    monkeypatch.setattr("robustbench_ens.zoo.resolve.train_model",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    models_dir = tmp_path / "models"
    pretrained = create_model("resnet4b", seed=5).eval()
    save_checkpoint(pretrained, models_dir / "r4b", {"source": "test"})
    spec = ModelSpec(name="r", arch="resnet4b", checkpoint="r4b")
    model, provenance = resolve_model(spec, small_data, models_dir, tmp_path / "cache", progress=False)
    assert provenance["origin"] == "models_dir" and provenance["source"] == "test"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), pretrained(x))
    with pytest.raises(CheckpointError, match="declares arch"):
        resolve_model(ModelSpec(name="r", arch="resnet2b", checkpoint="r4b"), small_data, models_dir,
                      tmp_path / "cache", progress=False)


@needs_models
def test_resolve_loads_a_shared_file(small_data, tmp_path):
    if not (MODELS / "resnet2b_at2.safetensors").is_file():
        pytest.skip("resnet2b_at2 absent")
    spec = ModelSpec(name="vnn2b", arch="resnet2b", checkpoint="resnet2b_at2")
    model, provenance = resolve_model(spec, small_data, MODELS, tmp_path, progress=False)
    assert provenance["origin"] == "models_dir" and provenance["training"] == "adversarial, Linf 2/255"
    assert not list(tmp_path.iterdir())


def test_model_spec_validation():
    with pytest.raises(ValueError):
        ModelSpec(name="../evil", arch="resnet20_a")
    with pytest.raises(ValueError):
        ModelSpec(name="a", arch="resnet20_a", checkpoint="../x")
    spec = ModelSpec(name="a", arch="resnet20_a", recipe={"epochs": 2}, mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    assert spec.recipe == TrainRecipe(epochs=2) and spec.mean == (0.5, 0.5, 0.5)
    assert hash(spec) == hash(ModelSpec(name="a", arch="resnet20_a", recipe=TrainRecipe(epochs=2),
                                        mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)))


class _Payload:
    """An object whose unpickling would run code: weights_only=True must refuse it."""

    def __reduce__(self):
        return (print, ("this ran while unpickling",))


def test_a_users_torch_file_loads_only_as_plain_tensors(tmp_path, capsys):
    from robustbench_ens.zoo import ModelSpec, resolve_model

    model, _, _ = _saved(tmp_path)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    torch.save({"state_dict": model.net.state_dict()}, models_dir / "mine.pt")
    spec = ModelSpec(name="mine", arch="resnet20_b", checkpoint="mine", recipe=TINY)
    loaded, provenance = resolve_model(spec, None, models_dir, tmp_path / "cache")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x)), "same weights, the architecture's own normalisation"
    assert provenance["origin"] == "models_dir" and provenance["path"].endswith("mine.pt")
    assert len(provenance["sha256"]) == 64

    torch.save({"weights": model.net.state_dict(), "hook": _Payload()}, models_dir / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(models_dir / "evil.pt", arch="resnet20_b")
    assert "this ran while unpickling" not in capsys.readouterr().out
    (models_dir / "cut.pt").write_bytes((models_dir / "mine.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(models_dir / "cut.pt", arch="resnet20_b")
    (models_dir / "mine.json").write_text('{"sha256": "' + "0" * 64 + '"}')
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(models_dir / "mine.pt", arch="resnet20_b")


# --- the second edition's plain CNNs, SRI ResNet and BatchNorm ViTs (their files are in MORE_FAMILIES below) ----

@pytest.mark.parametrize("arch", ["cnn-a-2c2f", "convsmall-eran", "convsmall-eran-sigmoid", "allconv7-biasfield"])
def test_small_cnns_are_plain_layer_sequences(arch):
    net = create_model(arch).net
    assert isinstance(net, torch.nn.Sequential)
    plain = (torch.nn.Conv2d, torch.nn.ReLU, torch.nn.Sigmoid, torch.nn.Flatten, torch.nn.Linear)
    assert all(type(layer) in plain for layer in net)


@needs_models
def test_a_raw_pixel_model_takes_its_normalisation_from_the_file():
    path = MODELS / "vgg_keras_standard.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    model, _ = load_checkpoint(path)
    assert model.normalize_mean == (0.0, 0.0, 0.0)
    assert model.normalize_std == (0.003921568627,) * 3  # the file's metadata, not the registry's exact 1/255
    assert create_model("vgg-keras-6c3f").normalize_std == (1 / 255,) * 3
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model.net(255 * x))


# --- more families: DenseNet-40, ShuffleNetV2, chenyaofo's option-B ResNets, the MLPerf Tiny ResNets --------------

# stem -> (registered arch, trainable parameters as the README counts them, correct predictions on the first 200
# test points of the slice). The README's accuracies are on all 10 000 test images, which scripts/check_zoo.py
# reproduces to within 0.05 points; the counts here were measured with these architectures, and no prediction among
# those points is a near tie (the smallest gap between the top two logits is 0.019, far above the ~1e-4 by which
# float32 differences between platforms move logits of size <= 50), so the counts hold exactly.
MORE_FAMILIES = {
    "densenet40_k12_fast_standard": ("densenet40-k12-fast", 1_002_586, 184),
    "shufflenetv2_x0_5_standard": ("shufflenetv2-x0.5-cifar", 352_042, 179),
    "resnet20_b_chenyaofo": ("resnet20_b", 272_474, 185),
    "resnet56_b_chenyaofo": ("resnet56_b", 855_770, 190),
    "resnet8_mlperf_standard": ("resnet8-mlperf", 78_186, 178),
    "resnet8w40_mlperf_standard": ("resnet8w40-mlperf-folded", 480_330, 180),
    "resnet14_mlperf_standard": ("resnet14-6blk-mlperf-folded", 750_858, 185),
    # plain CNNs, the SRI ResNet and the BatchNorm ViTs (small_cnns.py, resnet_sri.py, vit_bn.py)
    "vgg_keras_standard": ("vgg-keras-6c3f", 968_394, 173),
    "allconv7_biasfield_standard": ("allconv7-biasfield", 311_690, 171),
    "cnn_a_standard": ("cnn-a-2c2f", 214_918, 157), "cnn_a_adv2": ("cnn-a-2c2f", 214_918, 134),
    "cnn_a_adv4": ("cnn-a-2c2f", 214_918, 116), "cnn_a_mix2": ("cnn-a-2c2f", 214_918, 155),
    "cnn_a_certified_oval": ("cnn-a-2c2f", 214_918, 134), "cnn_a_certified_linf8": ("cnn-a-2c2f", 214_918, 69),
    "cnn_a_certified_l2_36": ("cnn-a-2c2f", 214_918, 118),
    "convsmall_pgd": ("convsmall-eran", 125_318, 130),
    "convsmall_sigmoid_robust": ("convsmall-eran-sigmoid", 125_318, 137),
    "resnet_sri_a_adv": ("resnet-sri-3b", 354_486, 161), "resnet_sri_b_adv": ("resnet-sri-3b", 354_486, 167),
    "vit_bn_p16_pgd2": ("vit-bn-d2-h3-p16", 75_706, 130), "vit_bn_p8_ibp1": ("vit-bn-d3-h3-p8", 67_594, 125),
}
FIRST_POINTS = 200


@needs_models
@pytest.mark.parametrize("stem", sorted(MORE_FAMILIES))
def test_more_families_load_strictly_and_score_as_measured(stem, data):
    from safetensors import safe_open

    from robustbench_ens.metrics import predict

    path = MODELS / f"{stem}.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    arch, parameters, correct = MORE_FAMILIES[stem]
    model, provenance = load_checkpoint(path)
    with safe_open(str(path), "pt") as file:
        keys, metadata = set(file.keys()), file.metadata()
    assert model.arch == arch and provenance["arch"] == arch
    assert set(model.net.state_dict()) == keys  # every key of the file, nothing else
    assert sum(p.numel() for p in model.net.parameters()) == parameters
    for stat in ("mean", "std"):  # the file's own normalisation, not the family default
        assert getattr(model, f"normalize_{stat}") == tuple(float(v) for v in metadata[f"normalize_{stat}"].split(","))
    x, y = data.test(FIRST_POINTS)
    assert int((predict(model, x, FIRST_POINTS, "cpu") == y).sum()) == correct


def test_tf_same_padding_matches_a_hand_padded_conv():
    import torch.nn.functional as F

    from robustbench_ens.zoo.tf_padding import SameConv2d, same_padding

    assert same_padding(32, 3, 2) == (0, 1) and same_padding(32, 1, 2) == (0, 0) and same_padding(32, 3) == (1, 1)
    assert same_padding(7, 3, 2) == (1, 1) and same_padding(8, 4) == (1, 2)
    conv = SameConv2d(2, 3, 3, stride=2)
    assert set(conv.state_dict()) == {"weight", "bias"}  # the layout of nn.Conv2d
    x = torch.randn(1, 2, 6, 7, generator=torch.Generator().manual_seed(0))
    # 6 rows -> 3 outputs: 1 padding row, at the bottom; 7 columns -> 4 outputs: 2 padding columns, one each side
    padded = torch.zeros(1, 2, 7, 9)
    padded[:, :, :6, 1:8] = x
    with torch.no_grad():
        out = conv(x)
        expected = F.conv2d(padded, conv.weight, conv.bias, stride=2)
        symmetric = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)  # PyTorch's padding: also 3x4 here
    assert out.shape == expected.shape == symmetric.shape == (1, 3, 3, 4)
    assert torch.allclose(out, expected, atol=1e-6) and not torch.allclose(out, symmetric, atol=1e-3)
