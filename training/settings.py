"""Training settings (optimisation, data, logging) kept apart from the model configuration.

A training YAML has two sections: ``model`` (a partial or full OccVLAConfig, over its preset)
and ``training`` (the fields of :class:`TrainingSettings`). The resolved pair is written into
every run directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from occvla_ros.errors import ConfigError
from occvla_ros.model.configuration import OccVLAConfig


@dataclass
class TrainingSettings:
    # Optimisation: AdamW over the stage's trainable parameters, cosine decay after warm-up.
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 10
    max_steps: int = 1000
    grad_clip_norm: float = 1.0
    batch_size: int = 1  # per process
    num_workers: int = 0
    seed: int = 0
    # Logging and checkpoints.
    log_every: int = 10
    checkpoint_every: int = 500  # 0: only at the end

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"TrainingSettings.{name} must be a positive integer, got {value}"
                )
        for name in ("warmup_steps", "checkpoint_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"TrainingSettings.{name} must be >= 0, got {getattr(self, name)}"
                )
        if not self.learning_rate > 0 or not self.grad_clip_norm > 0:
            raise ConfigError(
                f"learning_rate and grad_clip_norm must be > 0, got {self.learning_rate}, "
                f"{self.grad_clip_norm}"
            )


def load_settings(path: str | Path) -> tuple[OccVLAConfig, TrainingSettings]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training configuration {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    unknown = sorted(set(data) - {"model", "training"})
    if unknown:
        raise ConfigError(f"{path}: unknown sections {unknown}; expected 'model' and 'training'")
    model = OccVLAConfig.from_dict(data.get("model") or {})
    training = data.get("training") or {}
    known = {f.name for f in dataclasses.fields(TrainingSettings)}
    if set(training) - known:
        raise ConfigError(f"{path}: unknown training keys {sorted(set(training) - known)}")
    return model, TrainingSettings(**training)


def save_settings(path: Path, model: OccVLAConfig, training: TrainingSettings) -> None:
    resolved: dict[str, Any] = {"model": model.to_dict(), "training": dataclasses.asdict(training)}
    path.write_text(yaml.safe_dump(resolved, sort_keys=False))
