"""OccVLA configuration: presets, YAML round-trip, validation, parameter counts."""

from __future__ import annotations

import re

import pytest

from occvla_ros.errors import ConfigError
from occvla_ros.model.configuration import OccVLAConfig

# PaliGemma2-3B-pt-224 (ml-stack.md): SigLIP So400m/14 + projector + Gemma2-2B, tied LM head.
PALIGEMMA2_3B_PARAMETERS = 3_032_094_960


@pytest.mark.parametrize("preset", ["tiny", "paligemma2-3b-224"])
def test_yaml_round_trip_gives_an_equal_config(tmp_path, preset):
    config = OccVLAConfig.from_preset(preset)
    config.save_yaml(tmp_path / "config.yaml")
    assert OccVLAConfig.load_yaml(tmp_path / "config.yaml") == config


def test_a_partial_yaml_overrides_its_preset(tmp_path):
    (tmp_path / "partial.yaml").write_text("preset: tiny\nlora:\n  rank: 4\n")
    config = OccVLAConfig.load_yaml(tmp_path / "partial.yaml")
    assert config.lora.rank == 4
    assert config.backbone == OccVLAConfig.from_preset("tiny").backbone


def test_defaults_do_not_feed_the_future_derived_command():
    assert OccVLAConfig.from_preset("paligemma2-3b-224").prompt.use_command is False
    assert OccVLAConfig.from_preset("tiny").prompt.use_command is False


def test_invalid_values_are_named_in_the_error(tmp_path):
    with pytest.raises(ConfigError, match="visual_feature_layer=9"):
        OccVLAConfig.from_dict({"preset": "tiny", "visual_feature_layer": 9})
    with pytest.raises(
        ConfigError, match=re.escape("OccVLAConfig.occupancy: unknown keys ['layers']")
    ):
        OccVLAConfig.from_dict({"occupancy": {"layers": 2}})
    with pytest.raises(ConfigError, match=re.escape("unknown keys ['lora_rank']")):
        OccVLAConfig.from_dict({"lora_rank": 4})
    with pytest.raises(ConfigError, match="rank must be a positive integer, got 0"):
        OccVLAConfig.from_dict({"lora": {"rank": 0}})
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        OccVLAConfig.from_preset("huge")
    (tmp_path / "bad.yaml").write_text("backbone: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        OccVLAConfig.load_yaml(tmp_path / "bad.yaml")


def test_real_preset_on_meta_device_has_exactly_the_paligemma2_3b_backbone():
    from occvla_ros.model.info import parameter_counts

    counts = parameter_counts(OccVLAConfig.from_preset("paligemma2-3b-224"))
    assert counts["backbone (PaliGemma2, frozen base)"] == PALIGEMMA2_3B_PARAMETERS
    parts = ("  vision tower (SigLIP)", "  projector", "  language model (Gemma2, tied LM head)")
    assert sum(counts[p] for p in parts) == PALIGEMMA2_3B_PARAMETERS
    assert counts["trainable in stage planning"] == counts["planning head"]
    assert 0 < counts["LoRA adapters"] < PALIGEMMA2_3B_PARAMETERS // 100
