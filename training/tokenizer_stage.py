"""Stage ``tokenizer``: train the scene tokenizer (OccWorld's VQ-VAE) on Occ3D labels.

OccWorld's recipe: the labels [200, 200, 16] are encoded to a 50 x 50 latent grid, snapped to a
codebook, decoded back, and trained with 10 x cross-entropy + 1 x Lovasz-softmax + 1 x VQ loss
(``occvla_ros.model.vqvae.reconstruction_loss``) over every voxel. The architecture is the
preset's ``model.occupancy.vqvae`` (OccWorld's 512 x 128 codebook for the real preset, the
tiny preset's smaller one), so the checkpoint fits stage 2 of the same preset, which decodes
through it frozen: ``--stage occupancy_language --scene-tokenizer RUN/checkpoint``.

Validation reports the reconstruction's Occ3D mIoU and geometry IoU (over ``mask_camera``
voxels, occvla_ros.evaluation.occupancy), the same over every voxel, the loss terms, and how
many codes the val scenes use. The model directory holds ``scene_tokenizer.safetensors`` and
``scene_tokenizer.yaml`` (see docs/occupancy-branch.md).

This module also holds stage 2's choice of decoder (:func:`add_decoder_arguments`,
:func:`choose_decoder`, :func:`install_decoder`): a trained one, or an explicit
``--allow-random-decoder``.
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

from occvla_ros.errors import CheckpointError, ConfigError, OccvlaError
from occvla_ros.model.occupancy import OCCWORLD, SCENE_TOKENIZER
from occvla_ros.model.vqvae import (
    OccupancyVQVAE,
    VQVAEConfig,
    balanced_class_weights,
    load_scene_tokenizer,
    read_scene_tokenizer_config,
    reconstruction_loss,
    save_scene_tokenizer,
)
from training.stages import Stage

logger = logging.getLogger(__name__)

# Keyframes read to count the training split's class frequencies (evenly spaced): enough for
# stable frequencies, bounded so a 28k-keyframe Occ3D split does not read every file first.
_CLASS_COUNT_KEYFRAMES = 256


class OccupancyLabels(Dataset):
    """Occ3D labels of the keyframes that have them: ``token`` str, ``occupancy`` int64
    [200, 200, 16], ``occupancy_mask`` bool [200, 200, 16] (``mask_camera``). No images."""

    def __init__(self, records: Sequence) -> None:
        self.records = [record for record in records if record.occupancy_path is not None]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        from occvla_ros.data.datasets import load_occupancy

        record = self.records[index]
        semantics, mask = load_occupancy(record.occupancy_path)  # DataError names a bad file
        return {
            "token": record.token,
            "occupancy": torch.from_numpy(semantics),
            "occupancy_mask": torch.from_numpy(mask),
        }


class TokenizerStage(Stage):
    best_metric = "miou"
    best_mode = "max"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--tokenizer-dead-code-window",
            type=int,
            default=20,
            metavar="STEPS",
            help="stage tokenizer: every STEPS training steps, move the codes no latent chose "
            "onto latents of the batch (0: never; default 20)",
        )
        parser.add_argument(
            "--tokenizer-class-weights",
            choices=("none", "balanced"),
            default="none",
            help="stage tokenizer: cross-entropy weights per class; balanced: 1 / ln(1.02 + "
            "frequency) over the training split's voxels (default none, as OccWorld)",
        )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.class_weights: torch.Tensor | None = None  # set from the training split

    @property
    def vqvae_config(self) -> VQVAEConfig:
        return self.context.config.occupancy.vqvae

    def build_model(self) -> nn.Module:
        """A fresh tokenizer of the preset's configuration, or ``--init``'s (go on training)."""
        if self.context.init is None:
            return self._with_restarts(OccupancyVQVAE(self.vqvae_config))
        return self.load(self.context.init)

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(model.parameters())

    def dataset(self, records: Sequence, role: str) -> Dataset:
        dataset = OccupancyLabels(records)
        if len(dataset) == 0:
            raise OccvlaError(
                f"no keyframe of the {role} split has Occ3D labels (gts/<scene>/<token>/"
                "labels.npz): the tokenizer stage trains on them"
            )
        weighting = getattr(self.context.args, "tokenizer_class_weights", "none")
        if role == "train" and weighting == "balanced":
            self.class_weights = balanced_class_weights(self._class_counts(dataset))
            logger.info(
                "class weights: %s", ", ".join(f"{w:.2f}" for w in self.class_weights.tolist())
            )
        return dataset

    def _class_counts(self, dataset: OccupancyLabels) -> torch.Tensor:
        """Voxel counts per class [num_classes] over evenly spaced training keyframes."""
        counts = torch.zeros(self.vqvae_config.num_classes, dtype=torch.long)
        picks = np.linspace(0, len(dataset) - 1, min(len(dataset), _CLASS_COUNT_KEYFRAMES))
        for index in sorted({int(i) for i in picks}):
            try:
                occupancy = dataset[index]["occupancy"]
            except OccvlaError as error:  # the training loop counts it when it meets it
                logger.warning("class counts skip a keyframe: %s", error)
                continue
            counts += torch.bincount(occupancy.reshape(-1), minlength=counts.numel())
        return counts

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        occupancy = batch["occupancy"].to(self.context.device)
        return reconstruction_loss(model(occupancy), occupancy, class_weights=self._weights())

    def _weights(self) -> torch.Tensor | None:
        if self.class_weights is None:
            return None
        return self.class_weights.to(self.context.device)

    def validate(self, model: nn.Module, batches: Iterable[dict]) -> dict[str, float]:
        from occvla_ros.evaluation.occupancy import OccupancyMetric

        visible, everywhere = OccupancyMetric(), OccupancyMetric(use_camera_mask=False)
        terms: dict[str, list[float]] = {}
        used = torch.zeros(self.vqvae_config.codebook_size, dtype=torch.bool)
        for batch in batches:
            occupancy = batch["occupancy"].to(self.context.device)
            output = model(occupancy)
            _, batch_terms = reconstruction_loss(output, occupancy, class_weights=self._weights())
            for name, value in batch_terms.items():
                terms.setdefault(name, []).append(value)
            used[output.indices.unique().cpu()] = True
            prediction = output.logits.argmax(dim=-1).cpu().numpy()
            labels = batch["occupancy"].numpy()
            visible.update(prediction, labels, batch["occupancy_mask"].numpy())
            everywhere.update(prediction, labels)
        camera, full = visible.compute(), everywhere.compute()
        return {
            **{name: float(np.mean(values)) for name, values in terms.items()},
            "miou": camera.miou,
            "iou": camera.geometry_iou,
            "miou_all_voxels": full.miou,
            "iou_all_voxels": full.geometry_iou,
            "codes_used": float(used.sum()),
            # Per class (camera mask); a class absent from labels and prediction has no IoU.
            **{
                f"class_iou_{name}": value
                for name, value in camera.per_class_iou.items()
                if not np.isnan(value)
            },
        }

    def save(self, model: nn.Module, state: dict[str, torch.Tensor], directory: Path) -> None:
        weights = None if self.class_weights is None else self.class_weights.tolist()
        metadata = {"preset": self.context.config.preset, "class_weights": weights}
        save_scene_tokenizer(directory, self.vqvae_config, state, metadata)

    def load(self, directory: Path) -> nn.Module:
        """The tokenizer in ``directory``; it must have this preset's configuration."""
        return self._with_restarts(
            load_scene_tokenizer(directory, OccupancyVQVAE(self.vqvae_config))
        )

    def _with_restarts(self, model: OccupancyVQVAE) -> OccupancyVQVAE:
        window = getattr(self.context.args, "tokenizer_dead_code_window", 0)
        if window < 0:
            raise ConfigError(f"--tokenizer-dead-code-window must be >= 0, got {window}")
        model.vqvae.dead_code_window = window
        return model


# ---------------------------------------------------------------- stage 2's frozen decoder


def add_decoder_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the occupancy branch's frozen decoder comes from (stage occupancy_language)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--scene-tokenizer",
        type=Path,
        metavar="RUN/checkpoint",
        help="a scene tokenizer trained with --stage tokenizer (same preset) as the frozen "
        "occupancy decoder",
    )
    source.add_argument(
        "--occworld-vqvae",
        type=Path,
        help="OccWorld tokenizer weights for the frozen occupancy decoder (real preset)",
    )
    parser.add_argument(
        "--allow-random-decoder",
        action="store_true",
        help="run stage occupancy_language with a randomly initialised frozen decoder (code "
        "path checks only: it cannot express real scenes)",
    )


# The flag (argparse destination) that names each kind of trained decoder.
_DECODER_FLAGS = {SCENE_TOKENIZER: "scene_tokenizer", OCCWORLD: "occworld_vqvae"}


def _requested_decoder(args: argparse.Namespace) -> tuple[str, Path] | None:
    for kind, name in _DECODER_FLAGS.items():
        path = getattr(args, name, None)
        if path is not None:
            return kind, path
    return None


def choose_decoder(config, args: argparse.Namespace, stage: str) -> None:
    """At start-up, before any work: record the decoder the run will load in ``config`` (an
    OccVLAConfig: the run's config.yaml then says it), or refuse a random one.

    Stage occupancy_language needs a trained decoder: ``--scene-tokenizer``, ``--occworld-vqvae``,
    or an ``--init`` checkpoint that already records one; otherwise ConfigError unless
    ``--allow-random-decoder``. A scene tokenizer's configuration is checked here, so a
    mismatch fails before the data or the model is touched. Other stages only check that a
    given source can be used.
    """
    requested = _requested_decoder(args)
    occupancy = config.occupancy if config.with_occupancy else None
    if requested is not None:
        kind, path = requested
        flag = "--" + _DECODER_FLAGS[kind].replace("_", "-")
        if occupancy is None:
            raise ConfigError(f"{flag} given but the model has no occupancy branch")
        if kind == SCENE_TOKENIZER:
            if read_scene_tokenizer_config(path) != occupancy.vqvae:
                raise CheckpointError(
                    f"{flag} {path} was trained for another tokenizer configuration than this "
                    f"{config.preset} model's (train it with this preset's YAML)"
                )
        elif not Path(path).is_file():
            raise CheckpointError(f"{flag} {path}: no such file")
        occupancy.decoder_weights = f"{kind}:{Path(path).absolute()}"
    elif (
        occupancy is not None and occupancy.decoder_weights and getattr(args, "init", None) is None
    ):
        # Only loading records it; a YAML value would claim weights nothing loaded.
        raise ConfigError(
            f"model.occupancy.decoder_weights is {occupancy.decoder_weights!r} in the YAML, but "
            "nothing loads it: it is recorded by --scene-tokenizer / --occworld-vqvae"
        )
    if stage != "occupancy_language" or occupancy is None:
        return
    if occupancy.decoder_weights is None and not getattr(args, "allow_random_decoder", False):
        raise ConfigError(
            "stage occupancy_language needs a trained occupancy decoder: the branch's loss is "
            "decoded through the frozen VQ-VAE, and a random one cannot express real scenes, "
            "so it would supervise next to nothing. Train one with `--stage tokenizer` and pass "
            "--scene-tokenizer RUN/checkpoint (or --occworld-vqvae FILE for the real preset), "
            "or pass --allow-random-decoder to run anyway"
        )
    if occupancy.decoder_weights is None:
        logger.warning("stage occupancy_language with a RANDOM frozen decoder (as asked)")


def install_decoder(model, args: argparse.Namespace) -> None:
    """Load the decoder :func:`choose_decoder` recorded from the flags into ``model`` (OccVLA)."""
    requested = _requested_decoder(args)
    if requested is not None:
        model.occupancy.load_decoder(*requested)
