"""Tests of models users already have (robustbench_ens.zoo.external): RobustBench's and timm's, named by a suite.

No network: the RobustBench model is a checkpoint placed in its model folder (the zoo entry
``Standard`` is pointed at a tiny WideResNet of RobustBench's own), and timm's downloads are
replaced by failures or by a model built without pretrained weights. The RobustBench tests
are skipped where the optional ``robustbench`` package cannot be imported.
"""
from __future__ import annotations

import hashlib
import sys
import tomllib
import urllib.error
from types import SimpleNamespace

import pytest
import timm
import torch
import torch.nn.functional as F

from robustbench_ens.runner import _origin_text
from robustbench_ens.suite import SuiteError, parse_suite
from robustbench_ens.workspace import resolve_models
from robustbench_ens.zoo import CheckpointError, Normalized, UnknownModelError, external

IMAGES = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
TIMM_NAME = "test_resnet"  # a 0.4M-parameter timm test network, pretrained input size 160x160


def suite_with(models: str):
    """A suite whose one defense is each model of ``models`` (TOML [models.*] tables), parsed."""
    names = [line[len("[models."):-1] for line in models.splitlines() if line.startswith("[models.")]
    defenses = "".join(f'[[defenses]]\nname = "D-{n}"\nmembers = ["{n}"]\n' for n in names)
    return parse_suite(tomllib.loads(f'name = "external"\n{models}\n{defenses}'), "external.toml")


def resolve(suite, models_dir, cache_dir):
    config = SimpleNamespace(models_dir=models_dir, cache_dir=cache_dir, progress=False)
    return resolve_models(suite, None, config, "cpu")


# --- RobustBench -----------------------------------------------------------------------------------

@pytest.fixture
def robustbench(monkeypatch):
    """The robustbench package, its CIFAR-10 Linf ``Standard`` entry building a tiny WideResNet (WRN-10-1)."""
    try:
        library = external.import_robustbench("the tests")
    except CheckpointError as error:
        pytest.skip(str(error))
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    enums = library.model_zoo.enums
    entry = library.model_zoo.model_dicts[enums.BenchmarkDataset.cifar_10][enums.ThreatModel.Linf]["Standard"]
    monkeypatch.setitem(entry, "model", lambda: WideResNet(depth=10, widen_factor=1))
    return library


def tiny_checkpoint(folder):
    """A WRN-10-1 saved as RobustBench keeps ``Standard``: ``<folder>/cifar10/Linf/Standard.pt``; the network too."""
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    torch.manual_seed(0)
    net = WideResNet(depth=10, widen_factor=1).eval()
    path = folder / "cifar10" / "Linf" / "Standard.pt"
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return path, net


def test_robustbench_checkpoint_loads_through_a_suite(robustbench, tmp_path):
    path, net = tiny_checkpoint(tmp_path / "models" / "robustbench")
    suite = suite_with('[models.rb]\narch = "robustbench:Standard"\nsource = "a tiny stand-in"\n')
    assert suite.models["rb"].threat_model == "Linf"
    models, provenance = resolve(suite, tmp_path / "models", tmp_path / "cache")
    model = models["rb"]
    assert isinstance(model, Normalized) and model.arch == "robustbench:Standard" and not model.training
    with torch.no_grad():
        logits = model(IMAGES)
        assert logits.shape == (2, 10)
        assert torch.equal(logits, net(IMAGES))  # RobustBench models take [0, 1] images as they are
    record = provenance["rb"]
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record["origin"], record["path"], record["threat_model"]) == ("robustbench", str(path), "Linf")
    assert _origin_text(record) == "RobustBench's CIFAR-10 Linf model Standard (Standard.pt), a tiny stand-in"
    assert not (tmp_path / "cache").exists()  # --models has a robustbench/ folder, so the cache is not used


def test_robustbench_folder_is_the_models_subfolder_else_the_cache(tmp_path):
    models, cache = tmp_path / "models", tmp_path / "cache"
    assert external.robustbench_folder(None, cache) == cache / "robustbench"
    assert external.robustbench_folder(models, cache) == cache / "robustbench"
    (models / "robustbench").mkdir(parents=True)
    assert external.robustbench_folder(models, cache) == models / "robustbench"


def test_robustbench_download_failure_is_one_clear_line(robustbench, tmp_path, monkeypatch):
    def offline(gdrive_id, path):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", offline)
    suite = suite_with('[models.rb]\narch = "robustbench:Standard"\n')
    path = tmp_path / "cache" / "robustbench" / "cifar10" / "Linf" / "Standard.pt"
    with pytest.raises(CheckpointError) as caught:
        resolve(suite, None, tmp_path / "cache")
    assert str(caught.value) == ("model 'rb' (robustbench:Standard): the download failed (URLError: <urlopen error "
                                 f"no network>): put the checkpoint at {path} or check the network")


def test_robustbench_unknown_name_suggests_the_closest(robustbench, tmp_path):
    with pytest.raises(UnknownModelError, match=r"no CIFAR-10 Linf model 'Standart'; did you mean Standard"):
        resolve(suite_with('[models.rb]\narch = "robustbench:Standart"\n'), None, tmp_path)


def test_robustbench_model_of_several_checkpoints_is_refused(robustbench, tmp_path):
    with pytest.raises(CheckpointError, match="keeps this model as several checkpoints or loads it through timm"):
        resolve(suite_with('[models.rb]\narch = "robustbench:Chen2020Adversarial"\n'), None, tmp_path)


def test_robustbench_not_installed_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "robustbench", None)  # makes `import robustbench` fail
    monkeypatch.setitem(sys.modules, "robustbench.utils", None)
    with pytest.raises(CheckpointError, match=r"needs the robustbench package.*pip install -e \"\.\[robustbench\]\""):
        external.import_robustbench("model 'rb' (robustbench:Standard)")


# --- timm --------------------------------------------------------------------------------------------

def test_timm_model_maps_images_to_logits_with_its_cfg_normalisation():
    net = timm.create_model(TIMM_NAME, pretrained=False, num_classes=10).eval()
    model = external.timm_normalized(net, f"timm:{TIMM_NAME}").eval()
    assert model.normalize_mean == net.pretrained_cfg["mean"] and model.normalize_std == net.pretrained_cfg["std"]
    mean, std = (torch.tensor(net.pretrained_cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        expected = net(F.interpolate((IMAGES - mean) / std, size=(160, 160), mode="bilinear", align_corners=False))
        logits = model(IMAGES)
    assert logits.shape == (2, 10)
    torch.testing.assert_close(logits, expected)


def fake_hub(classes: int):
    """A stand-in for timm.create_model(..., pretrained=True): the network without weights, its cfg's head of
    ``classes`` classes."""
    real = timm.create_model

    def create_model(name, pretrained, num_classes):
        net = real(name, pretrained=False, num_classes=num_classes)
        net.pretrained_cfg = {**net.pretrained_cfg, "num_classes": classes}
        return net

    return create_model


def test_timm_model_loads_through_a_suite(tmp_path, monkeypatch):
    monkeypatch.setattr(timm, "create_model", fake_hub(10))
    models, provenance = resolve(suite_with(f'[models.tm]\narch = "timm:{TIMM_NAME}"\n'), None, tmp_path)
    model, record = models["tm"], provenance["tm"]
    assert isinstance(model, Normalized) and model.arch == f"timm:{TIMM_NAME}"
    with torch.no_grad():
        assert model(IMAGES).shape == (2, 10)
    assert record["sha256"] == external.state_sha256(model.net[1])
    assert (record["origin"], record["input_size"]) == ("timm", [160, 160])


def test_timm_offline_download_is_one_clear_line(tmp_path, monkeypatch):
    def offline(name, pretrained, num_classes):
        raise OSError("We couldn't connect to the Hub\nand could not find the file in the cache.")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(CheckpointError) as caught:
        resolve(suite_with(f'[models.tm]\narch = "timm:{TIMM_NAME}"\n'), None, tmp_path)
    assert str(caught.value) == (f"model 'tm' (timm:{TIMM_NAME}): the download failed (OSError: We couldn't connect "
                                 "to the Hub): put the weights in the Hugging Face cache ($HF_HOME, default "
                                 "~/.cache/huggingface) or check the network")


def test_timm_head_of_other_classes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(timm, "create_model", fake_hub(1000))
    with pytest.raises(CheckpointError, match="pretrained head has 1000 classes, not CIFAR-10's 10"):
        resolve(suite_with(f'[models.tm]\narch = "timm:{TIMM_NAME}"\n'), None, tmp_path)


def test_timm_unknown_name_suggests_the_closest(tmp_path):
    with pytest.raises(UnknownModelError, match=r"timm has no model 'test_resnett'; did you mean test_resnet"):
        resolve(suite_with('[models.tm]\narch = "timm:test_resnett"\n'), None, tmp_path)


# --- the suite's keys -----------------------------------------------------------------------------

@pytest.mark.parametrize("model, message", [
    ('arch = "robustbench:Standard"\nthreat_model = "L3"', "threat_model must be one of Linf, L2, corruptions"),
    ('arch = "timm:resnet18"\nthreat_model = "L2"', "threat_model belongs to a RobustBench model"),
    ('arch = "resnet20_a"\nthreat_model = "Linf"', "threat_model belongs to a RobustBench model"),
    ('arch = "robustbench:Standard"\ncheckpoint = "x"', "drop checkpoint, require_checkpoint and train"),
    ('arch = "timm:resnet18"\ntrain = { epochs = 1 }', "drop checkpoint, require_checkpoint and train"),
    ('arch = "timm:"', "names no model; write timm:<model name>"),
])
def test_suite_checks_external_model_keys(model, message):
    with pytest.raises(SuiteError, match=message):
        suite_with(f"[models.m]\n{model}\n")


def test_suite_reads_threat_model_and_refuses_derived_external_models():
    suite = suite_with('[models.m]\narch = "robustbench:Standard"\nthreat_model = "L2"\n')
    assert (suite.models["m"].arch, suite.models["m"].threat_model) == ("robustbench:Standard", "L2")
    with pytest.raises(SuiteError, match="derived model 'l' needs 'from' = plain models"):
        suite_with('[models.m]\narch = "timm:resnet18"\n[models.l]\nmethod = "lgv"\nfrom = ["m"]\n')


def test_the_weights_licence_comes_from_the_file_else_the_suite_else_says_not_stated(tmp_path):
    from safetensors.torch import save_file

    from robustbench_ens.zoo import create_model
    state = {k: v.contiguous() for k, v in create_model("resnet20_a").net.state_dict().items()}
    meta = {"arch": "resnet20-optionA", "normalize_mean": "0.5,0.5,0.5", "normalize_std": "0.25,0.25,0.25"}
    (tmp_path / "models").mkdir()
    save_file(state, str(tmp_path / "models" / "with.safetensors"), metadata={**meta, "license": "MIT"})
    save_file(state, str(tmp_path / "models" / "without.safetensors"), metadata=meta)
    entries = "".join(f'[models.{name}]\narch = "resnet20_a"\ncheckpoint = "{file}"\nsource = "a test file"\n{extra}'
                      for name, file, extra in [("a", "with", ""), ("b", "without", 'licence = "BSD-2-Clause"\n'),
                                                ("c", "without", ""), ("d", "with", 'licence = "GPL-3.0"\n')])
    suite = suite_with(entries)
    assert suite.models["b"].licence == "BSD-2-Clause" and suite.models["a"].licence == ""
    _, provenance = resolve(suite, tmp_path / "models", tmp_path / "cache")
    assert _origin_text(provenance["a"]) == "pretrained file with.safetensors, a test file (licence: MIT)"
    assert _origin_text(provenance["b"]).endswith("(licence: BSD-2-Clause)")
    assert _origin_text(provenance["c"]).endswith("(licence: not stated)")
    assert _origin_text(provenance["d"]).endswith("(licence: MIT)"), "the file's own licence comes first"
