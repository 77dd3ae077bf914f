"""Training settings (optimisation, data, logging) kept apart from the model configuration.

A training YAML has two sections: ``model`` (a partial or full OccVLAConfig, over its preset)
and ``training`` (the fields of :class:`TrainingSettings`). The resolved pair, with the run's
stage and data arguments, is written into every run directory as ``config.yaml``.

Numbers are read in any notation: PyYAML follows YAML 1.1, where ``2e-4`` (no dot) is a
string; the loader here also resolves YAML 1.2 floats, so ``learning_rate: 2e-4`` is 0.0002.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from occvla_ros.errors import ConfigError
from occvla_ros.model.configuration import OccVLAConfig

PARALLEL_MODES = ("ddp", "fsdp")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as ``2e-4`` and ``1E5`` as numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; ConfigError naming the file when it is missing or bad."""
    if not path.is_file():
        raise ConfigError(f"training configuration {path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with 'model' and 'training' sections")
    return data


@dataclass
class TrainingSettings:
    # Optimisation: AdamW over the stage's trainable parameters, cosine decay after warm-up.
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 10
    max_steps: int = 1000  # optimizer steps
    grad_clip_norm: float = 1.0
    batch_size: int = 1  # per process and micro-batch
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    num_workers: int = 0
    seed: int = 0
    # Scale (CUDA): bf16 autocast, activation recomputation, and DDP or FSDP under torchrun.
    bf16: bool = True
    gradient_checkpointing: bool = False
    parallel: str = "ddp"
    # Input: a run stops after this many unusable samples in a row (missing or corrupt files).
    max_consecutive_bad_samples: int = 16
    # Logging, validation and checkpoints (every N optimizer steps; 0: never / only at the end).
    log_every: int = 10
    progress_bar: bool = True
    val_every: int = 0
    val_batches: int = 20
    checkpoint_every: int = 500
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        positive = (
            "max_steps",
            "batch_size",
            "grad_accum_steps",
            "log_every",
            "val_batches",
            "keep_checkpoints",
            "max_consecutive_bad_samples",
        )
        non_negative = ("warmup_steps", "checkpoint_every", "val_every", "num_workers", "seed")
        for name in (*positive, *non_negative):
            value = _integer(name, getattr(self, name))
            setattr(self, name, value)
            if value < (1 if name in positive else 0):
                bound = "a positive integer" if name in positive else ">= 0"
                raise ConfigError(f"TrainingSettings.{name} must be {bound}, got {value}")
        for name in ("learning_rate", "grad_clip_norm", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"TrainingSettings.{name} must be a number, got {value!r}")
            setattr(self, name, float(value))
        if not self.learning_rate > 0 or not self.grad_clip_norm > 0 or self.weight_decay < 0:
            raise ConfigError(
                "TrainingSettings: learning_rate and grad_clip_norm must be > 0 and "
                f"weight_decay >= 0, got {self.learning_rate}, {self.grad_clip_norm}, "
                f"{self.weight_decay}"
            )
        for name in ("bf16", "gradient_checkpointing", "progress_bar"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"TrainingSettings.{name} must be true or false, got {getattr(self, name)!r}"
                )
        if self.parallel not in PARALLEL_MODES:
            raise ConfigError(
                f"TrainingSettings.parallel must be one of {PARALLEL_MODES}, got {self.parallel!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _integer(name: str, value: Any) -> int:
    """An int, also from an integral float (``max_steps: 1e4``); ConfigError otherwise."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"TrainingSettings.{name} must be an integer, got {value!r}")
    return value


def load_settings(path: str | Path) -> tuple[OccVLAConfig, TrainingSettings]:
    path = Path(path)
    data = read_yaml(path)
    unknown = sorted(set(data) - {"model", "training", "run"})
    if unknown:
        raise ConfigError(f"{path}: unknown sections {unknown}; expected 'model' and 'training'")
    try:
        model = OccVLAConfig.from_dict(data.get("model") or {})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error
    training = data.get("training") or {}
    known = {f.name for f in dataclasses.fields(TrainingSettings)}
    if set(training) - known:
        raise ConfigError(f"{path}: unknown training keys {sorted(set(training) - known)}")
    try:
        return model, TrainingSettings(**training)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error


def resolved_settings(
    model: OccVLAConfig, training: TrainingSettings, run: dict[str, Any]
) -> dict[str, Any]:
    """What a run's ``config.yaml`` holds: model, training settings, the run's arguments."""
    return {"model": model.to_dict(), "training": training.to_dict(), "run": run}


def save_settings(path: Path, resolved: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(resolved, sort_keys=False))
