"""Where evaluation gets its inputs: the data loader's keyframe index and the model checkpoint."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occvla_ros.errors import DataError


@dataclass(frozen=True)
class EgoMotion:
    """Ego-only inputs and targets of a split (keyframes with at least one future keyframe)."""

    tokens: tuple[str, ...]
    ego_state: np.ndarray  # [N, 3]
    past_trajectory: np.ndarray  # [N, P, 2] ego frame, oldest first, gaps filled
    trajectory: np.ndarray  # [N, 6, 2] ego frame
    trajectory_mask: np.ndarray  # bool [N, 6]
    commands: tuple[str, ...]  # the high-level driving command of each keyframe


def fill_past(past: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Past positions [..., P, 2] with entries before the scene start (mask False) replaced by
    the oldest known position, or by the current position (0, 0) when none is known."""
    past = np.asarray(past, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    count = past.shape[-2]
    # Past entries are oldest first, so the known ones are a suffix: index of the oldest known.
    oldest = np.where(mask.any(axis=-1), np.argmax(mask, axis=-1), count)  # [...]
    fill = np.take_along_axis(
        np.concatenate([past, np.zeros_like(past[..., :1, :])], axis=-2),
        oldest[..., None, None].repeat(2, axis=-1),
        axis=-2,
    )  # [..., 1, 2]
    return np.where(mask[..., None], past, fill)


def load_ego_motion(args: argparse.Namespace) -> EgoMotion:
    """The ego motion of ``args``' split from the data loader's cached keyframe index."""
    from occvla_ros.data.index import index_from_arguments

    records = [r for r in index_from_arguments(args).records if r.has_future]
    if not records:
        raise DataError(f"split {args.split!r} of {args.dataroot} has no keyframe with a future")
    return EgoMotion(
        tokens=tuple(r.token for r in records),
        ego_state=np.stack([r.ego_state for r in records]),
        past_trajectory=fill_past(
            np.stack([r.past_ego for r in records]), np.stack([r.past_mask for r in records])
        ),
        trajectory=np.stack([r.future_ego for r in records]),
        trajectory_mask=np.stack([r.future_mask for r in records]).astype(bool),
        commands=tuple(r.command for r in records),
    )


def load_model(checkpoint: Path, device: str):
    from occvla_ros.model.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint, device=device)


def model_uses_command(model) -> bool:
    """Whether the model's prompt or planning head reads the driving command."""
    return bool(model.uses_command)


def evaluation_loader(args: argparse.Namespace, model, stage: str = "evaluation"):
    """DataLoader over ``args``' split, first ``--max-samples`` keyframes only.

    ``stage`` "evaluation" gives every keyframe (+ occupancy with ``--with-occupancy``); "qa"
    gives one OmniDrive question/answer pair per keyframe that has them.
    """
    from torch.utils.data import DataLoader

    from occvla_ros.data.datasets import KeyframeDataset, collate_keyframes
    from occvla_ros.data.index import index_from_arguments

    records = index_from_arguments(args).records
    if args.max_samples:
        records = records[: args.max_samples]
    dataset = KeyframeDataset(
        records,
        stage,
        model.config.image_size,
        vocabulary=model.config.meta_actions,
        with_occupancy=args.with_occupancy and stage == "evaluation",
        qa_pairs="sample",
        skip_bad=True,
    )
    if len(dataset) == 0 and stage == "evaluation":
        raise DataError(f"split {args.split!r} of {args.dataroot} has no samples to evaluate")
    return DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_keyframes)
