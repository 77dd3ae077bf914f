"""Stage tokenizer: a real training run, and stage 2 decoding through its result, frozen."""

from __future__ import annotations

import json
import logging
from argparse import Namespace
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from occvla_ros.errors import ConfigError
from occvla_ros.model.checkpoint import load_checkpoint
from occvla_ros.model.configuration import OccVLAConfig
from occvla_ros.model.vqvae import (
    SCENE_TOKENIZER_CONFIG,
    SCENE_TOKENIZER_WEIGHTS,
    OccupancyVQVAE,
    VQVAEConfig,
    read_scene_tokenizer_config,
    save_scene_tokenizer,
)
from tests.conftest import REPO_ROOT
from tests.training.test_train import arguments
from training.tokenizer_stage import choose_decoder
from training.train import main

TINY = REPO_ROOT / "training" / "configs" / "tiny.yaml"


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.slow
def test_tokenizer_trains_then_stage2_decodes_through_it_frozen(synthetic_dataroot, tmp_path):
    config = tmp_path / "tokenizer.yaml"
    config.write_text(
        "model: {preset: tiny}\n"
        "training: {learning_rate: 2e-3, warmup_steps: 1, grad_clip_norm: 35, val_every: 2,"
        " val_batches: 1, progress_bar: false}\n"
    )
    tokenizer_run = tmp_path / "tokenizer"
    command = arguments(synthetic_dataroot, tokenizer_run, "tokenizer", config=config)
    assert main([*command, "--val-split", "mini_val", "--tokenizer-class-weights", "balanced"]) == 0
    lines = [
        json.loads(line) for line in (tokenizer_run / "metrics.jsonl").read_text().splitlines()
    ]
    train = [line for line in lines if "val" not in line]
    assert [line["step"] for line in train] == [1, 2]
    assert all(line["vq_ce"] > 0 and line["vq_lovasz"] > 0 for line in train)
    (validation,) = [line["val"] for line in lines if "val" in line]
    assert 0 <= validation["miou"] <= 1 and 0 <= validation["iou"] <= 1
    assert 1 <= validation["codes_used"] <= 64
    per_class = {name: value for name, value in validation.items() if name.startswith("class_iou_")}
    assert "class_iou_free" in per_class and all(0 <= value <= 1 for value in per_class.values())
    checkpoint = tokenizer_run / "checkpoint"
    assert read_scene_tokenizer_config(checkpoint) == VQVAEConfig.tiny()
    # The balanced weights came from the training split: free (17), the commonest, is lightest.
    metadata = yaml.safe_load((checkpoint / SCENE_TOKENIZER_CONFIG).read_text())["metadata"]
    class_weights = metadata["class_weights"]
    assert len(class_weights) == 18 and min(class_weights) == class_weights[17]
    trained = load_file(str(checkpoint / SCENE_TOKENIZER_WEIGHTS))
    torch.manual_seed(0)  # the run's seed: its initial weights
    initial = OccupancyVQVAE(VQVAEConfig.tiny()).state_dict()
    assert not torch.equal(trained["decoder.conv_out.weight"], initial["decoder.conv_out.weight"])

    stage2 = tmp_path / "stage2"
    command = arguments(synthetic_dataroot, stage2, "occupancy_language", steps=1, config=TINY)
    assert main([*command, "--scene-tokenizer", str(checkpoint)]) == 0
    model = load_checkpoint(stage2 / "checkpoint")
    assert model.config.occupancy.decoder_weights == f"scene_tokenizer:{checkpoint}"
    decoder = model.occupancy.vqvae.state_dict()
    assert decoder.keys() == trained.keys()
    unchanged = [name for name, tensor in trained.items() if torch.equal(decoder[name], tensor)]
    assert unchanged == list(trained), sorted(set(trained) - set(unchanged))[:5]
    # The occupancy loss ran through it (the branch trained; the decoder stayed as it was).
    (step,) = [json.loads(line) for line in (stage2 / "metrics.jsonl").read_text().splitlines()]
    assert step["occ_ce"] > 0


def test_stage2_refuses_a_random_decoder_before_any_work(synthetic_dataroot, tmp_path, caplog):
    command = arguments(synthetic_dataroot, tmp_path / "run", "occupancy_language", config=TINY)
    assert main(command) == 2
    (error,) = _errors(caplog)
    assert "needs a trained occupancy decoder" in error and "--allow-random-decoder" in error
    assert "\n" not in error
    assert not (tmp_path / "run").exists()


def test_stage2_refuses_a_tokenizer_of_another_preset(synthetic_dataroot, tmp_path, caplog):
    other = VQVAEConfig(**{**VQVAEConfig.tiny().__dict__, "codebook_size": 32})
    save_scene_tokenizer(tmp_path / "other", other, OccupancyVQVAE(other).state_dict())
    command = arguments(synthetic_dataroot, tmp_path / "run", "occupancy_language", config=TINY)
    assert main([*command, "--scene-tokenizer", str(tmp_path / "other")]) == 2
    assert "another tokenizer configuration" in _errors(caplog)[-1]
    assert main([*command, "--scene-tokenizer", str(tmp_path / "absent")]) == 2
    assert "scene_tokenizer.yaml is missing" in _errors(caplog)[-1]
    assert not (tmp_path / "run").exists()


def test_stage2_refuses_a_decoder_claimed_in_the_yaml(synthetic_dataroot, tmp_path, caplog):
    config = tmp_path / "claim.yaml"
    config.write_text(
        "model: {preset: tiny, occupancy: {decoder_weights: 'scene_tokenizer:/elsewhere'}}\n"
    )
    command = arguments(synthetic_dataroot, tmp_path / "run", "occupancy_language", config=config)
    assert main(command) == 2
    assert "nothing loads it" in _errors(caplog)[-1]


def test_which_runs_need_a_decoder_flag():
    init = Namespace(init=Path("runs/qa/checkpoint"))
    config = OccVLAConfig.from_dict({"preset": "tiny"})
    config.occupancy.decoder_weights = "scene_tokenizer:/runs/tok/checkpoint"
    choose_decoder(config, init, "occupancy_language")  # the --init checkpoint records one
    config.occupancy.decoder_weights = None
    with pytest.raises(ConfigError, match="needs a trained occupancy decoder"):
        choose_decoder(config, init, "occupancy_language")
    choose_decoder(config, Namespace(init=None, allow_random_decoder=True), "occupancy_language")
    choose_decoder(config, Namespace(init=None), "planning")  # stage 3 does not decode occupancy
    assert config.occupancy.decoder_weights is None
