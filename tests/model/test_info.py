"""`occvla model-info`: parameter counts from a preset, a model YAML or a training YAML."""

from __future__ import annotations

from occvla_ros import cli
from occvla_ros.model.configuration import OccVLAConfig
from tests.conftest import REPO_ROOT


def test_model_info_reads_the_model_section_of_a_training_yaml(capsys):
    assert cli.main(["model-info", "--config", str(REPO_ROOT / "training/configs/tiny.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "OccVLA preset 'tiny'" in printed and "trainable in stage planning" in printed


def test_model_and_training_yamls_give_the_same_configuration(tmp_path):
    (tmp_path / "model.yaml").write_text("preset: tiny\nvisual_feature_layer: 1\n")
    (tmp_path / "train.yaml").write_text(
        "model:\n  preset: tiny\n  visual_feature_layer: 1\ntraining:\n  learning_rate: 2e-4\n"
    )
    from_model = OccVLAConfig.load_yaml(tmp_path / "model.yaml")
    assert from_model == OccVLAConfig.load_yaml(tmp_path / "train.yaml")
    assert from_model.visual_feature_layer == 1 and from_model.preset == "tiny"
