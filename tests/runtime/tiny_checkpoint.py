"""A randomly initialised tiny OccVLA checkpoint, saved with the model's own save_checkpoint."""

from __future__ import annotations

from pathlib import Path


def save_tiny_checkpoint(directory: Path) -> Path:
    import torch

    from occvla_ros.model.checkpoint import save_checkpoint
    from occvla_ros.model.configuration import OccVLAConfig
    from occvla_ros.model.occvla import OccVLA

    torch.manual_seed(0)
    save_checkpoint(OccVLA(OccVLAConfig.from_preset("tiny")), directory)
    return directory
