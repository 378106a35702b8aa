import os

import pytest

from robustbench_ens import atomic


def test_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "x.txt"
    atomic.write_text(target, "old")
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.txt"]
    assert target.stat().st_mode & 0o044, "a published file must be readable by others"


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    atomic.write_text(target, "old")
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        atomic.write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_a_set_of_files_is_written_only_where_there_is_room_for_all(tmp_path, monkeypatch):
    import collections
    import shutil

    folder = tmp_path / "lb"
    assert atomic.write_files(folder, {"a.csv": "old a", "b.png": b"old b"}) == [folder / "a.csv", folder / "b.png"]
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))  # 1 MiB free
    with pytest.raises(atomic.UnwritableFolderError, match="1.0 MiB free.*2 files; nothing was written"):
        atomic.write_files(folder, {"a.csv": "new a", "b.png": b"new b"})
    assert (folder / "a.csv").read_text() == "old a" and (folder / "b.png").read_bytes() == b"old b"


def test_writer_that_raises_leaves_nothing(tmp_path):
    def half_then_crash(path):
        path.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic.write_with(tmp_path / "y.bin", half_then_crash)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- checks before a run


def test_a_folder_under_a_plain_file_is_refused_and_named(tmp_path):
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(atomic.UnwritableFolderError) as error:
        atomic.check_writable(tmp_path / "file" / "run", "run folder (--out)")
    assert str(error.value) == (f"cannot write the run folder (--out) {tmp_path}/file/run: it cannot be created: "
                                f"{tmp_path}/file is not a folder; pass a folder you can write")
    with pytest.raises(atomic.UnwritableFolderError, match="file: it is not a folder"):
        atomic.check_writable(tmp_path / "file", "run folder (--out)")


def test_a_folder_that_can_be_made_passes_and_the_check_leaves_nothing(tmp_path):
    atomic.check_writable(tmp_path / "a" / "b" / "c", "run folder (--out)")
    atomic.check_writable(tmp_path, "run folder (--out)")
    assert list(tmp_path.iterdir()) == [], "the folders it made and its temporary file are removed"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kept").write_text("x")
    atomic.check_writable(tmp_path / "a" / "b", "run folder (--out)")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "kept"]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="no /proc here")
def test_a_folder_that_mkdir_refuses_is_refused_even_where_access_says_yes():
    """root may write /proc by os.access, but no folder can be made there."""
    with pytest.raises(atomic.UnwritableFolderError, match=r"^cannot write the run folder \(--out\) /proc/forbidden: "
                                                           r"it cannot be created \("):
        atomic.check_writable("/proc/forbidden", "run folder (--out)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only folder")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    try:
        with pytest.raises(atomic.UnwritableFolderError, match="read-only: it is not writable"):
            atomic.check_writable(folder, "model cache (--cache)")
        with pytest.raises(atomic.UnwritableFolderError, match="sub: it cannot be created"):
            atomic.check_writable(folder / "sub", "model cache (--cache)")
        with pytest.raises(atomic.UnwritableFolderError, match="its folder .*read-only is not writable"):
            atomic.check_writable_file(folder / "results.sqlite", "results store (in --out)")
    finally:
        folder.chmod(0o755)


def test_a_file_path_that_is_a_folder_or_lies_under_a_file_is_refused(tmp_path):
    (tmp_path / "results.sqlite").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(atomic.UnwritableFolderError) as error:
        atomic.check_writable_file(tmp_path / "results.sqlite", "results store (in --out)")
    assert str(error.value) == (f"cannot write the results store (in --out) {tmp_path}/results.sqlite: it is a folder; "
                                "pass a folder you can write")
    with pytest.raises(atomic.UnwritableFolderError, match="its folder .*/file/sub cannot be created: .*/file is not"):
        atomic.check_writable_file(tmp_path / "file" / "sub" / "results.sqlite", "results store (in --out)")


def test_a_writable_or_absent_file_passes_and_is_left_as_it_was(tmp_path):
    existing = tmp_path / "results.sqlite"
    existing.write_text("data")
    before = existing.stat()
    atomic.check_writable_file(existing, "results store (in --out)")
    atomic.check_writable_file(tmp_path / "new" / "per_example.csv.gz", "per-example file (in --leaderboard-dir)")
    assert existing.read_text() == "data" and existing.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"], "nothing created"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_a_read_only_file_is_refused(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_text("data")
    path.chmod(0o444)
    with pytest.raises(atomic.UnwritableFolderError, match="results.sqlite: it cannot be opened for writing"):
        atomic.check_writable_file(path, "results store (in --out)")
