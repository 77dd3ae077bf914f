"""Shared tiny-model fixtures for the model tests."""

from __future__ import annotations

import pytest
import torch

from occvla_ros.constants import NUM_CAMERAS, NUM_WAYPOINTS, OCC_GRID_SHAPE


def synthetic_batch(config, batch: int = 2, seed: int = 0) -> dict:
    """A random batch with every key of the datasets' keyframe samples (shapes as agreed)."""
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    actions = torch.randint(0, len(config.meta_actions), (batch,), generator=generator)
    return {
        "token": [f"sample-{i}" for i in range(batch)],
        "pixel_values": torch.randn(batch, NUM_CAMERAS, 3, size, size, generator=generator),
        "ego_state": torch.rand(batch, 3, generator=generator) * torch.tensor([10.0, 1.0, 0.1]),
        "command": ["go straight"] * batch,
        "meta_action": actions,
        "meta_action_text": [config.meta_actions.texts[int(i)] for i in actions],
        "trajectory": torch.randn(batch, NUM_WAYPOINTS, 2, generator=generator),
        "trajectory_mask": torch.ones(batch, NUM_WAYPOINTS, dtype=torch.bool),
        "past_trajectory": torch.randn(batch, 4, 2, generator=generator) - torch.tensor([4.0, 0.0]),
        "past_mask": torch.ones(batch, 4, dtype=torch.bool),
        "occupancy": torch.randint(0, 18, (batch, *OCC_GRID_SHAPE), generator=generator),
        "occupancy_mask": torch.rand(batch, *OCC_GRID_SHAPE, generator=generator) > 0.3,
        "question": ["what is in front of the ego car?"] * batch,
        "answer": ["a parked truck"] * batch,
    }


@pytest.fixture(scope="session")
def tiny_config():
    from occvla_ros.model.configuration import OccVLAConfig

    return OccVLAConfig.from_preset("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """One randomly initialised tiny OccVLA; tests that train must deep-copy it."""
    from occvla_ros.model.occvla import OccVLA

    torch.manual_seed(0)
    model = OccVLA(tiny_config)
    # LoRA's B matrices start at zero; give the adapters and camera embeddings values so the
    # tests exercise them (as after training).
    with torch.no_grad():
        for name, parameter in model.backbone.named_parameters():
            if "lora_B" in name or "camera_embeddings" in name:
                parameter.normal_(0.0, 0.02)
    return model.eval()
