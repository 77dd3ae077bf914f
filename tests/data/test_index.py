"""The keyframe index cache: miss, hit, invalidation, options, corrupt cache, `occvla index`."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from occvla_ros import cli
from occvla_ros.data.index import load_index
from occvla_ros.data.nuscenes_loader import LoaderOptions

VERSION = "v1.0-mini"


@pytest.fixture
def dataroot(writable_tables_dataroot):
    return writable_tables_dataroot


def test_cache_miss_then_hit_gives_equal_records(dataroot, tmp_path):
    cache = tmp_path / "cache"
    built = load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False)
    assert not built.from_cache
    assert sorted(p.name for p in built.directory.iterdir()) == [
        "arrays.npz", "meta.json", "records.json"
    ]  # fmt: skip
    cached = load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False)
    assert cached.from_cache and cached.fingerprint == built.fingerprint
    assert [r.token for r in cached.records] == [r.token for r in built.records]
    for a, b in zip(built.records, cached.records, strict=True):
        np.testing.assert_array_equal(a.future_ego, b.future_ego)
        assert a.meta_action == b.meta_action and a.qa == b.qa
    assert sum(cached.meta_action_histogram().values()) == len(cached)


def test_changed_table_invalidates_the_cache(dataroot, tmp_path):
    cache = tmp_path / "cache"
    first = load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False)
    table = dataroot / VERSION / "ego_pose.json"
    stat = table.stat()
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False)
    assert not second.from_cache and second.fingerprint != first.fingerprint
    assert load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False).from_cache


def test_options_and_splits_get_their_own_index(dataroot, tmp_path):
    cache = tmp_path / "cache"
    default = load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False)
    elsewhere = LoaderOptions(omnidrive_root=str(tmp_path / "no-omnidrive"))
    other = load_index(dataroot, VERSION, "mini_val", elsewhere, cache_dir=cache, progress=False)
    assert not other.from_cache and other.directory != default.directory
    assert all(r.qa == () for r in other.records) and all(r.qa for r in default.records)
    train = load_index(dataroot, VERSION, "mini_train", cache_dir=cache, progress=False)
    assert {r.scene_name for r in train.records} == {"scene-0061"}
    assert load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False).from_cache


def test_corrupt_or_partial_cache_is_rebuilt(dataroot, tmp_path):
    cache = tmp_path / "cache"
    built = load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False)
    (built.directory / "arrays.npz").write_bytes(b"not an npz")
    rebuilt = load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False)
    assert not rebuilt.from_cache and len(rebuilt) == len(built)
    (built.directory / "meta.json").unlink()  # an interrupted build
    assert not load_index(dataroot, VERSION, "mini_val", cache_dir=cache, progress=False).from_cache


def test_index_command_prints_a_summary(dataroot, tmp_path, capsys):
    argv = ["index", "--dataroot", str(dataroot), "--split", "mini_val",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "index built" in first and "keyframes: 16 in 1 scenes" in first
    assert "meta-actions:" in first and "<no future>" in first
    assert cli.main(argv) == 0
    assert "read from cache" in capsys.readouterr().out
    argv[2] = str(tmp_path / "nowhere")
    assert cli.main(argv) == 2  # a DataError naming the directory, not a traceback


def test_occ3d_labels_copied_into_existing_scene_folders_invalidate_the_cache(dataroot, tmp_path):
    """As ``tar x`` or ``rsync -a`` do it: the label file appears, every folder time is kept."""
    occupancy = tmp_path / "gts"
    shutil.copytree(dataroot / "gts", occupancy)
    options = LoaderOptions(occupancy_root=str(occupancy))
    cache = tmp_path / "cache"
    built = load_index(dataroot, VERSION, "mini_val", options, cache_dir=cache, progress=False)
    record = next(r for r in built.records if r.occupancy_path is not None)
    labels = occupancy / record.scene_name / record.token / "labels.npz"
    content = labels.read_bytes()
    folders = [labels.parent, labels.parent.parent, occupancy]
    times = [(f.stat().st_atime_ns, f.stat().st_mtime_ns) for f in folders]

    def restore_folder_times():
        for folder, (atime, mtime) in zip(folders, times, strict=True):
            os.utime(folder, ns=(atime, mtime))

    labels.unlink()
    restore_folder_times()
    without = load_index(dataroot, VERSION, "mini_val", options, cache_dir=cache, progress=False)
    assert not without.from_cache
    assert next(r for r in without.records if r.token == record.token).occupancy_path is None
    labels.write_bytes(content)
    restore_folder_times()
    again = load_index(dataroot, VERSION, "mini_val", options, cache_dir=cache, progress=False)
    assert not again.from_cache
    assert next(r for r in again.records if r.token == record.token).occupancy_path == str(labels)
    assert load_index(dataroot, VERSION, "mini_val", options, cache_dir=cache).from_cache


@pytest.mark.parametrize("flag", ["--occupancy-root", "--omnidrive-root"])
def test_a_label_root_that_does_not_exist_is_named(dataroot, tmp_path, caplog, flag):
    missing = tmp_path / "no-labels"
    argv = ["index", "--dataroot", str(dataroot), "--split", "mini_val", flag, str(missing),
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    with caplog.at_level("ERROR"):
        assert cli.main(argv) == 2
    assert f"{flag} {missing} does not exist" in caplog.text
