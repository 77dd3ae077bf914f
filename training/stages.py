"""What a training stage is: a small object the trainer drives (see /docs/training.md).

A stage builds its model, names the parameters the optimiser updates, turns keyframe records
into a dataset, computes the loss of a batch, computes validation metrics, and saves / loads
its model directory. Everything else (run directory, optimiser, schedule, precision,
parallelism, checkpoints, resume, logging, signals) is the trainer's (``training.loop``).

New stages are registered in :data:`STAGES` as ``"module:Class"`` and loaded lazily.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from occvla_ros.errors import ConfigError
from occvla_ros.model.configuration import OccVLAConfig
from training.settings import TrainingSettings

STAGES: dict[str, str] = {
    "qa": "training.occvla_stage:QAStage",
    "occupancy_language": "training.occvla_stage:OccupancyLanguageStage",
    "planning": "training.occvla_stage:PlanningStage",
    "tokenizer": "training.tokenizer_stage:TokenizerStage",
}


@dataclass
class StageContext:
    name: str  # the --stage value
    config: OccVLAConfig  # the YAML's model section
    settings: TrainingSettings
    init: Path | None  # --init: the previous stage's model directory
    args: argparse.Namespace  # every command-line flag, the stage's own included
    device: torch.device


class Stage:
    """Base class; see /work/coord/TRAINING-API.md and docs/training.md for the contract."""

    # Key of validate()'s dict that picks best/ (None: no best/), and which way is better.
    best_metric: str | None = None
    best_mode: str = "min"

    def __init__(self, context: StageContext) -> None:
        self.context = context

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Stage-specific flags; all stages share one parser, so name them after the stage."""

    def build_model(self) -> nn.Module:
        """A fresh model or the one of ``context.init``; CPU, float32."""
        raise NotImplementedError

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        raise NotImplementedError

    def dataset(self, records: Sequence, role: str) -> Dataset:
        """``role`` "train" or "val"; a sample that cannot be read raises DataError."""
        raise NotImplementedError

    def collate(self, samples: list[dict]) -> dict:
        from occvla_ros.data.datasets import collate_keyframes

        return collate_keyframes(samples)

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss, logs); ``model`` may be DDP/FSDP-wrapped: forward through ``model(...)``."""
        raise NotImplementedError

    def validate(self, model: nn.Module, batches: Iterable[dict]) -> dict[str, float]:
        """Metrics over ``batches`` (eval mode, no_grad, the unwrapped model, every rank)."""
        raise NotImplementedError

    def save(self, model: nn.Module, state: dict[str, torch.Tensor], directory: Path) -> None:
        """Write the model directory from ``state`` (full state dict on the CPU); rank 0."""
        raise NotImplementedError

    def load(self, directory: Path) -> nn.Module:
        """Rebuild what :meth:`save` wrote (resume); CPU, float32."""
        raise NotImplementedError

    def enable_gradient_checkpointing(self, model: nn.Module) -> None:
        raise ConfigError(f"stage {self.context.name} does not support gradient checkpointing")

    def fsdp_units(self, model: nn.Module) -> list[nn.Module]:
        """Submodules ``fully_shard`` wraps on their own before the root."""
        return []


def stage_class(name: str) -> type[Stage]:
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; choose one of {sorted(STAGES)}")
    module, _, attribute = STAGES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
