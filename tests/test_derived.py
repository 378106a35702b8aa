"""Derived models: the method registry and the cache of resolve_derived (made once, hash-checked, rebuilt)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from robustbench_ens.zoo import Method, create_model, get_method, list_methods, register_method, resolve_derived
from robustbench_ens.zoo.derived import MANIFEST, derived_cache_key

BUILDS: list[int] = []


def _settings(params: dict, train: dict) -> dict:
    if train:
        raise ValueError("the scaling method takes no train table")
    return {"scale": float(params.get("scale", 2.0))}


def _build(bases, data, settings, *, seed, device, progress, work_dir):
    """Each base with its weights scaled; remembers that it ran."""
    BUILDS.append(len(bases))
    models = []
    for base in bases:
        model = create_model(base.arch)
        with torch.no_grad():
            for mine, theirs in zip(model.parameters(), base.parameters()):
                mine.copy_(theirs * settings["scale"])
        models.append(model.eval())
    work_dir.mkdir(parents=True)  # a method's own resumable state, removed once the models are saved
    return models, {"scaled": True}


register_method("scaled_for_test", Method(settings=_settings, build=_build, bases=(1, 2),
                                          describe=lambda manifest: f"scaled by {manifest['settings']['scale']}"))
DATA = SimpleNamespace(sha256="d" * 64)


def _resolve(tmp_path, bases, **kwargs):
    return resolve_derived("scaled", "scaled_for_test", bases, [f"{i}" * 64 for i in range(len(bases))], DATA,
                           tmp_path, **kwargs)


def test_a_derived_model_is_made_once_then_read_from_the_cache(tmp_path, capsys):
    BUILDS.clear()
    bases = [create_model("resnet2b", seed=s).eval() for s in range(2)]
    models, provenance = _resolve(tmp_path, bases, params={"scale": 3.0})
    assert BUILDS == [2] and provenance["origin"] == "trained" and provenance["scaled"] is True
    folder = tmp_path / f"scaled-{provenance['cache_key']}"
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "member_000.json", "member_000.safetensors",
                                                        "member_001.json", "member_001.safetensors"]
    assert all(torch.allclose(p, 3 * q) for p, q in zip(models[1].parameters(), bases[1].parameters()))

    again, cached = _resolve(tmp_path, bases, params={"scale": 3.0})
    assert BUILDS == [2] and cached["origin"] == "cache" and cached["sha256"] == provenance["sha256"]
    for a, b in zip(models, again):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert "loaded 2 cached scaled_for_test model(s)" in capsys.readouterr().out
    from robustbench_ens.zoo.derived import describe
    minutes = cached["build_time_s"] / 60
    data = f"on the training split of the data with sha256 {cached['data_sha256'][:12]}"
    assert describe(cached) == f"scaled by 3.0 (cache; {data}; made in {minutes:.1f} min on cpu)"
    assert describe({k: v for k, v in cached.items() if k not in ("build_time_s", "data_sha256")}) == \
        "scaled by 3.0 (cache)"

    _resolve(tmp_path, bases, params={"scale": 4.0})  # other settings: another key, built again
    assert BUILDS == [2, 2] and len(list(tmp_path.glob("scaled-*"))) == 2


def test_the_key_covers_bases_settings_seed_and_data():
    key = derived_cache_key("m", ["a"], {"x": 1}, 0, "d")
    assert len({key, derived_cache_key("m2", ["a"], {"x": 1}, 0, "d"), derived_cache_key("m", ["b"], {"x": 1}, 0, "d"),
                derived_cache_key("m", ["a"], {"x": 2}, 0, "d"), derived_cache_key("m", ["a"], {"x": 1}, 1, "d"),
                derived_cache_key("m", ["a"], {"x": 1}, 0, "e")}) == 6


def test_an_incomplete_or_tampered_build_is_made_again(tmp_path, capsys):
    BUILDS.clear()
    bases = [create_model("resnet2b", seed=0).eval()]
    _, provenance = _resolve(tmp_path, bases)
    folder = tmp_path / f"scaled-{provenance['cache_key']}"
    (folder / MANIFEST).unlink()  # as if killed before the manifest was written
    _resolve(tmp_path, bases)
    assert BUILDS == [1, 1]

    weights = folder / "member_000.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    models, again = _resolve(tmp_path, bases)
    assert BUILDS == [1, 1, 1] and again["origin"] == "trained"
    assert "unusable" in capsys.readouterr().out
    assert json.loads((folder / MANIFEST).read_text())["sha256"] == again["sha256"]


def test_unknown_methods_and_wrong_base_counts_are_refused(tmp_path):
    assert {"lgv", "finetune", "scaled_for_test"} <= set(list_methods())
    with pytest.raises(ValueError, match="did you mean lgv"):
        get_method("lvg")
    with pytest.raises(ValueError, match="1 to 2 base"):
        _resolve(tmp_path, [create_model("resnet2b")] * 3)
    with pytest.raises(ValueError, match="exactly 1 base"):
        get_method("lgv").check_bases(0)
    with pytest.raises(ValueError, match="at least 2 base"):
        Method(settings=_settings, build=_build, describe=str, bases=(2, None)).check_bases(1)
