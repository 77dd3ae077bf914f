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
def dataroot(synthetic_dataroot, tmp_path):
    """The synthetic dataset with its own copy of the tables (which the tests modify)."""
    root = tmp_path / "nuscenes"
    root.mkdir()
    for child in synthetic_dataroot.iterdir():
        if child.name == VERSION:
            shutil.copytree(child, root / VERSION)
        else:
            (root / child.name).symlink_to(child)
    return root


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
