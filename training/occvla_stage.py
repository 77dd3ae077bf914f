"""The three OccVLA stages: ``qa`` (stage 1), ``occupancy_language`` (2), ``planning`` (3).

The model computes each stage's loss itself (``OccVLA.forward(batch, stage)``); this module
adds what the trainer needs around it: building or loading the model, the keyframe datasets,
validation metrics (occvla_ros.evaluation accumulators) and the checkpoint directory format of
``occvla_ros.model.checkpoint`` (what the planner node and ``--init`` of the next stage read).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from occvla_ros.errors import CheckpointError, OccvlaError
from occvla_ros.model.configuration import OccVLAConfig
from occvla_ros.model.occvla import OccVLA
from training.stages import Stage, StageContext
from training.tokenizer_stage import add_decoder_arguments, choose_decoder, install_decoder

logger = logging.getLogger(__name__)


class OccVLAStage(Stage):
    """Shared by the three stages; a subclass says which metrics validation reports."""

    # Whether validation scores the meta-action candidates (predict) / decodes occupancy.
    predicts_meta_action = True
    predicts_occupancy = False

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        if context.init is not None:
            # The previous stage's model configuration is the one trained on; the YAML's model
            # section only names the preset it must have.
            context.config = _init_config(context.init, context.config.preset)
        # Which frozen occupancy decoder the run loads (recorded in the config), checked now.
        choose_decoder(context.config, context.args, context.name)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_decoder_arguments(parser)

    def build_model(self) -> nn.Module:
        context = self.context
        if context.init is None:
            model = OccVLA(context.config)
        else:
            from occvla_ros.model.checkpoint import load_checkpoint

            model = load_checkpoint(context.init, expected_preset=context.config.preset)
            logger.info("initialised from %s (its model configuration is used)", context.init)
        install_decoder(model, context.args)
        return model

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return model.trainable_parameters(self.context.name)

    def dataset(self, records: Sequence, role: str) -> Dataset:
        from occvla_ros.data.datasets import KeyframeDataset

        config = self.context.config
        dataset = KeyframeDataset(
            records,
            self.context.name,
            config.image_size,
            vocabulary=config.meta_actions,
            seed=self.context.settings.seed,
        )
        if len(dataset) == 0:
            raise OccvlaError(f"no {self.context.name} samples in the {role} split")
        return dataset

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        return model(batch, self.context.name)

    def validate(self, model: nn.Module, batches: Iterable[dict]) -> dict[str, float]:
        from occvla_ros.evaluation.meta_action import MetaActionMetric
        from occvla_ros.evaluation.occupancy import OccupancyMetric

        losses: dict[str, list[float]] = {}
        meta_action = MetaActionMetric(self.context.config.meta_actions)
        occupancy = OccupancyMetric()
        l2: list[np.ndarray] = []  # [B, T] per batch, NaN where the GT step is missing
        for batch in batches:
            _, logs = model(batch, self.context.name)
            for name, value in logs.items():
                losses.setdefault(name, []).append(value)
            if not self.predicts_meta_action:
                continue
            prediction = model.predict(
                batch["pixel_values"],
                batch["ego_state"],
                batch.get("command"),
                with_occupancy=self.predicts_occupancy,
                **{k: batch[k] for k in ("past_trajectory", "past_mask") if k in batch},
            )
            labelled = batch["meta_action"] >= 0
            meta_action.update(
                prediction.meta_action_indices[labelled].cpu().numpy(),
                batch["meta_action"][labelled].numpy(),
            )
            error = (prediction.waypoints.cpu() - batch["trajectory"]).norm(dim=-1)  # [B, T]
            l2.append(torch.where(batch["trajectory_mask"], error, torch.nan).numpy())
            if self.predicts_occupancy:
                occupancy.update(
                    prediction.occupancy.cpu().numpy(),
                    batch["occupancy"].numpy(),
                    batch["occupancy_mask"].numpy(),
                )
        metrics = {name: float(np.mean(values)) for name, values in losses.items()}
        if self.predicts_meta_action and l2:
            steps = np.concatenate(l2)
            # Mean over the valid waypoints, and at the last horizon (3 s) where it exists.
            metrics["planning_l2"] = float(np.nanmean(steps))
            metrics["planning_l2_3s"] = float(np.nanmean(steps[:, -1]))
            accuracy = meta_action.compute()["joint_accuracy"]
            if accuracy is not None:
                metrics["meta_action_accuracy"] = accuracy
        if self.predicts_occupancy:
            result = occupancy.compute()
            metrics["occupancy_miou"] = result.miou
            metrics["occupancy_iou"] = result.geometry_iou
        return metrics

    def save(self, model: nn.Module, state: dict[str, torch.Tensor], directory: Path) -> None:
        from occvla_ros.model.checkpoint import save_checkpoint

        save_checkpoint(model, directory, state_dict=state)

    def load(self, directory: Path) -> nn.Module:
        from occvla_ros.model.checkpoint import load_checkpoint

        model = load_checkpoint(directory, expected_preset=self.context.config.preset)
        if model.config.to_dict() != self.context.config.to_dict():
            raise CheckpointError(f"{directory} holds another model configuration than the run's")
        return model

    def enable_gradient_checkpointing(self, model: nn.Module) -> None:
        model.backbone.enable_gradient_checkpointing()

    def fsdp_units(self, model: nn.Module) -> list[nn.Module]:
        paligemma = model.backbone.paligemma.model
        return [
            *paligemma.vision_tower.encoder.layers,
            *paligemma.language_model.layers,
        ]


class QAStage(OccVLAStage):
    best_metric = "text"
    predicts_meta_action = False


class OccupancyLanguageStage(OccVLAStage):
    best_metric = "total"
    predicts_occupancy = True

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        if not context.config.with_occupancy:
            # Without the branch the model's forward reports only the text loss.
            self.best_metric = "text"
            self.predicts_occupancy = False


class PlanningStage(OccVLAStage):
    best_metric = "planning_l2"


def _init_config(init: Path, preset: str) -> OccVLAConfig:
    """The --init checkpoint's configuration (read before any weights), checked early."""
    from occvla_ros.model.checkpoint import CONFIG_FILE, load_checkpoint

    if not (init / CONFIG_FILE).is_file():
        load_checkpoint(init)  # raises the CheckpointError that names what is wrong
    try:
        config = OccVLAConfig.load_yaml(init / CONFIG_FILE)
    except OccvlaError as error:
        raise CheckpointError(f"--init {init}: {error}") from error
    if config.preset != preset:
        raise CheckpointError(f"--init {init} holds a {config.preset!r} model, expected {preset!r}")
    return config
