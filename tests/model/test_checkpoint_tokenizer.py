"""The tiny preset's BPE tokenizer travels with the checkpoint: loading reads it, no training."""

from __future__ import annotations

import pytest

import occvla_ros.model.occvla as occvla_module
from occvla_ros.model.checkpoint import load_checkpoint, save_checkpoint
from occvla_ros.model.configuration import OccVLAConfig
from occvla_ros.model.occvla import OccVLA
from occvla_ros.model.processing import train_tiny_tokenizer


def test_loading_reads_the_saved_tokenizer_and_trains_none(tmp_path, monkeypatch):
    config = OccVLAConfig.from_preset("tiny")
    # A smaller vocabulary than the preset's own: a re-trained tokenizer would not fit the weights.
    tokenizer = train_tiny_tokenizer(config.meta_actions, vocab_size=300)
    model = OccVLA(config, tokenizer)
    save_checkpoint(model, tmp_path / "checkpoint")

    def no_training(*args, **kwargs):
        raise AssertionError("the tokenizer was re-trained at load time")

    monkeypatch.setattr(occvla_module, "train_tiny_tokenizer", no_training)
    loaded = load_checkpoint(tmp_path / "checkpoint")
    assert len(loaded.tokenizer) == len(tokenizer) == 301
    text = "speed 8.0 m/s, acceleration 0.2 m/s^2. decelerate, turn left <image>"
    assert loaded.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    with pytest.raises(AssertionError, match="re-trained"):
        OccVLA(config)  # a fresh model does train one: the guard above is live
