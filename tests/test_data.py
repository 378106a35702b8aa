import hashlib
import pickle

import numpy as np
import pytest
import torch

from conftest import SHARED
from robustbench_ens.data import CIFAR10, DataError, load_cifar10

FULL, SLICE = SHARED / "data" / "cifar10.npz", SHARED / "data" / "cifar10_slice.npz"
FULL_SHA256 = "a44cc18e4ad961b5158c7da062a6232fb65938b615bf013046199b823b75c43d"
SLICE_SHA256 = "4e048590c325ded6348cc1e5c96ee655ccdd0b664a7228c3b61c29e60fa80662"


def _write_batches(folder, n_train_per_batch=4, n_test=6):
    """A tiny fake cifar-10-batches-py/ in the official layout (rows of 3072 uint8, CHW order)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    expected = {}
    for name, n in [*((f"data_batch_{i}", n_train_per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f, protocol=2)
        expected[name] = (data, labels)
    return expected


def test_npz_slice_loads(slice_path):
    data = load_cifar10(slice_path)
    assert data.x_train.shape == (4660, 32, 32, 3) and data.x_test.shape == (846, 32, 32, 3)
    x, y = data.test(10)
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1
    # the first N test points, in order
    assert torch.equal(y, torch.from_numpy(data.y_test[:10]).long())
    assert torch.equal(x[3], torch.from_numpy(data.x_test[3]).permute(2, 0, 1).float() / 255)


def test_torchvision_folder_layout(tmp_path):
    expected = _write_batches(tmp_path / "cifar-10-batches-py")
    for path in (tmp_path, tmp_path / "cifar-10-batches-py"):  # the root or the folder itself
        data = load_cifar10(path, download=False)
        assert data.x_train.shape == (20, 32, 32, 3) and data.x_test.shape == (6, 32, 32, 3)
        test_data, test_labels = expected["test_batch"]
        assert data.y_test.tolist() == test_labels
        # rows are CHW-flattened: pixel (0, 0) of image 0 is data[0, 0], data[0, 1024], data[0, 2048]
        assert data.x_test[0, 0, 0].tolist() == [test_data[0, 0], test_data[0, 1024], test_data[0, 2048]]
        assert data.y_train[:4].tolist() == expected["data_batch_1"][1]


def test_env_var_selects_data(tmp_path, monkeypatch, slice_path):
    monkeypatch.setenv("RBE_DATA", str(slice_path))
    assert load_cifar10().x_test.shape[0] == 846


def test_batch_with_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(DataError, match="refusing"):
        load_cifar10(folder, download=False)


@pytest.mark.parametrize("problem", ["missing", "keys", "shape", "labels", "truncated", "objects"])
def test_bad_npz(tmp_path, problem):
    path = tmp_path / "d.npz"
    arrays = {"x_train": np.zeros((4, 32, 32, 3), np.uint8), "y_train": np.zeros(4, np.uint8),
              "x_test": np.zeros((2, 32, 32, 3), np.uint8), "y_test": np.zeros(2, np.uint8)}
    if problem == "keys":
        del arrays["y_test"]
    if problem == "shape":
        arrays["x_test"] = np.zeros((2, 28, 28), np.uint8)
    if problem == "labels":
        arrays["y_test"] = np.array([0, 12], np.uint8)
    if problem == "objects":
        arrays["y_test"] = np.array([0, None], dtype=object)
    if problem != "missing":
        np.savez(path, **arrays)
    if problem == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    message = {"truncated": "cannot read .* as an .npz", "objects": "Python objects"}.get(problem)
    with pytest.raises(DataError, match=message):
        load_cifar10(path)


def test_no_data_no_network_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match="--data"):
        load_cifar10(tmp_path / "empty")


def test_n_examples_beyond_test_set(slice_path):
    with pytest.raises(DataError, match="1..846"):
        load_cifar10(slice_path).test(10_000)


def test_a_plain_file_is_not_taken_for_a_folder(tmp_path):
    path = tmp_path / "cifar.tar"
    path.write_bytes(b"not a dataset")
    with pytest.raises(DataError, match="is a file, not an .npz nor a folder"):
        load_cifar10(path)


def test_the_data_files_own_sha256_is_recorded(tmp_path):
    expected = _write_batches(tmp_path / "cifar-10-batches-py")
    folder = load_cifar10(tmp_path, download=False)
    test_batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    assert folder.file_sha256 == hashlib.sha256(test_batch.read_bytes()).hexdigest()
    path = tmp_path / "d.npz"
    np.savez(path, x_train=folder.x_train, y_train=folder.y_train, x_test=folder.x_test, y_test=folder.y_test)
    npz = load_cifar10(path)
    assert npz.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert npz.sha256 == folder.sha256, "the arrays' hash does not depend on the file they came from"
    assert npz.y_test.tolist() == expected["test_batch"][1]


def test_indices_text():
    assert CIFAR10.indices_text(500) == "0-499 (the first 500 points of the test set, in the official order)"
    assert CIFAR10.indices_text(1) == "0 (the first point of the test set, in the official order)"


@pytest.fixture(scope="module")
def full_data():
    if not FULL.is_file():
        pytest.skip(f"no full CIFAR-10 file at {FULL}")
    return load_cifar10(FULL)


def test_the_shared_full_file_sha256(full_data):
    assert full_data.file_sha256 == FULL_SHA256


def test_the_shared_slice_sha256():
    if not SLICE.is_file():
        pytest.skip(f"no CIFAR-10 slice at {SLICE}")
    assert load_cifar10(SLICE).file_sha256 == SLICE_SHA256


def test_the_slice_holds_the_published_points_of_the_full_test_set(full_data):
    """The published leaderboard's points: the first 500 of the official test set, in the slice and the full file."""
    if not SLICE.is_file():
        pytest.skip(f"no CIFAR-10 slice at {SLICE}")
    part = load_cifar10(SLICE)
    assert len(full_data.y_test) == 10_000
    assert np.array_equal(part.x_test[:500], full_data.x_test[:500])
    assert np.array_equal(part.y_test[:500], full_data.y_test[:500])


def test_the_setting_table_shows_the_data_file_sha256_and_the_test_indices():
    from robustbench_ens.leaderboard import build, views
    from test_leaderboard import make_cells, make_setting

    setting = make_setting()
    setting["data"].update(file_sha256="ab" * 32, indices=CIFAR10.indices_text(100), n_examples=100)
    table = views.setting_table(setting, build(make_cells(), setting))
    items = table.text["Item"].tolist()
    shown = dict(zip(items, table.text["Value"]))
    assert shown["Data file sha256"] == "ab" * 32
    assert shown["Test indices"] == "0-99 (the first 100 points of the test set, in the official order)"
    assert items[items.index("Data source"):items.index("Threat model")] == [
        "Data source", "Data file sha256", "Data sha256", "Test points (first n)", "Test points in the cells",
        "Test indices"]
    assert not {"data.file_sha256", "data.indices"} & set(items), "each shown once"
