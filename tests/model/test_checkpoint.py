"""Checkpoints: exact round-trip, and a clear CheckpointError for every kind of bad directory."""

from __future__ import annotations

import json
import re
import stat

import pytest
import torch

from occvla_ros.errors import CheckpointError
from occvla_ros.model.checkpoint import load_checkpoint, save_checkpoint
from tests.model.conftest import synthetic_batch


@pytest.fixture(scope="module")
def saved(tiny_model, tmp_path_factory):
    return save_checkpoint(tiny_model, tmp_path_factory.mktemp("checkpoint") / "tiny")


def _copy(saved, tmp_path):
    import shutil

    return shutil.copytree(saved, tmp_path / "copy")


def test_round_trip_gives_identical_predictions(tiny_model, saved):
    assert not list(saved.rglob("*.pt")) and not list(saved.rglob("*.bin"))
    loaded = load_checkpoint(saved, expected_preset="tiny")
    batch = synthetic_batch(tiny_model.config, batch=2, seed=7)
    before = tiny_model.predict(batch["pixel_values"], batch["ego_state"], with_occupancy=True)
    after = loaded.predict(batch["pixel_values"], batch["ego_state"], with_occupancy=True)
    assert torch.equal(before.meta_action_scores, after.meta_action_scores)
    assert torch.equal(before.waypoints, after.waypoints)
    assert torch.equal(before.occupancy, after.occupancy)
    assert loaded.config == tiny_model.config
    assert loaded.tokenizer.get_vocab() == tiny_model.tokenizer.get_vocab()


def test_weights_are_as_readable_as_every_other_checkpoint_file(saved):
    # safetensors alone writes its file 0600: a planner running as another user could not read it.
    modes = {
        path.name: stat.S_IMODE(path.stat().st_mode) for path in saved.rglob("*") if path.is_file()
    }
    assert len(set(modes.values())) == 1, modes


def test_missing_directory_and_files(saved, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    copy = _copy(saved, tmp_path)
    (copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        load_checkpoint(copy)


def test_wrong_preset(saved):
    with pytest.raises(CheckpointError, match="holds a 'tiny' model, expected 'paligemma2"):
        load_checkpoint(saved, expected_preset="paligemma2-3b-224")


def test_corrupted_weights(saved, tmp_path):
    copy = _copy(saved, tmp_path)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(copy)


def test_shape_mismatch_and_extra_keys(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = _copy(saved, tmp_path)
    tensors = load_file(str(copy / "model.safetensors"))
    tensors["backbone.camera_embeddings"] = torch.zeros(5, 128)
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match="manifest"):
        load_checkpoint(copy)  # the manifest's shape hash catches it first
    manifest = json.loads((copy / "manifest.json").read_text())
    from occvla_ros.model.checkpoint import _shapes_hash

    manifest["shapes_sha256"] = _shapes_hash({k: list(v.shape) for k, v in tensors.items()})
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*camera_embeddings"):
        load_checkpoint(copy)
    tensors["backbone.camera_embeddings"] = torch.zeros(6, 128)
    tensors["planning_head.extra"] = torch.zeros(1)
    save_file(tensors, str(copy / "model.safetensors"))
    manifest["shapes_sha256"] = _shapes_hash({k: list(v.shape) for k, v in tensors.items()})
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        CheckpointError, match=re.escape("1 unexpected keys ['planning_head.extra']")
    ):
        load_checkpoint(copy)


def test_bad_manifest_and_config(saved, tmp_path):
    copy = _copy(saved, tmp_path)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest"):
        load_checkpoint(copy)
    copy2 = saved.parent / "bad-config"
    import shutil

    shutil.copytree(saved, copy2)
    (copy2 / "config.yaml").write_text("preset: tiny\nvisual_feature_layer: 40\n")
    with pytest.raises(CheckpointError, match="visual_feature_layer"):
        load_checkpoint(copy2)


def test_real_preset_without_weights_directory_is_a_checkpoint_error(tmp_path):
    from occvla_ros.model.configuration import BackboneConfig, OccVLAConfig
    from occvla_ros.model.occvla import OccVLA

    with pytest.raises(CheckpointError, match="weights_dir"):
        OccVLA(OccVLAConfig.from_preset("paligemma2-3b-224"))
    config = OccVLAConfig(backbone=BackboneConfig(weights_dir=str(tmp_path)))
    (tmp_path / "tokenizer.json").write_text("{}")
    from occvla_ros.model.backbone import load_paligemma

    with pytest.raises(CheckpointError, match=re.escape("lacks ['config.json', '*.safetensors']")):
        load_paligemma(config.backbone.weights_dir)
