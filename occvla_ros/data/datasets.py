"""torch Datasets over keyframe records for the three training stages and evaluation.

Every sample holds (see docs/data.md): ``token`` str, ``pixel_values`` float32 [6, 3, S, S],
``ego_state`` float32 [3] (causal), ``command`` str (from the route where the dataset annotates
it, else future-derived), ``meta_action`` int64 (index into the vocabulary, -1 when the keyframe
has no future), ``meta_action_text`` str, ``trajectory`` float32 [6, 2] (ego frame),
``trajectory_mask`` bool [6], ``past_trajectory`` [4, 2] (previous keyframes, ego frame, oldest
first, 0 where masked), ``past_mask`` bool [4] and ``situation`` str ("" where unknown). Per
stage:

- ``"qa"``: + ``question`` / ``answer`` str; one sample per (keyframe, OmniDrive QA pair), or one
  per keyframe with a pair drawn per epoch (``qa_pairs="sample"``);
- ``"occupancy_language"``: + ``occupancy`` int64 [200, 200, 16] (Occ3D classes) and
  ``occupancy_mask`` bool [200, 200, 16] (``mask_camera``); keyframes with Occ3D labels;
- ``"planning"``: the common keys; keyframes with at least one future keyframe;
- ``"evaluation"``: every keyframe, + ``scene_name``, ``trajectory_lidar`` [6, 2],
  ``lidar_to_ego`` [4, 4], and the occupancy keys when ``with_occupancy``.

Datasets hold only records (arrays and strings), so DataLoader workers can pickle them. A bad
file raises :class:`DataError` naming it; with ``skip_bad=True`` the sample is logged, counted and
dropped by :func:`collate_keyframes`, which reports ``num_skipped`` in the batch.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from occvla_ros.constants import NUM_OCC_CLASSES, OCC_GRID_SHAPE
from occvla_ros.data.images import load_pixel_values
from occvla_ros.data.records import KeyframeRecord
from occvla_ros.errors import ConfigError, DataError, MetaActionParseError
from occvla_ros.meta_action import MetaActionVocabulary

LOGGER = logging.getLogger(__name__)
STAGES = ("qa", "occupancy_language", "planning", "evaluation")
QA_PAIR_MODES = ("all", "sample")
NO_META_ACTION = -1


def load_occupancy(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Occ3D ``semantics`` int64 [200, 200, 16] and ``mask_camera`` bool from a labels.npz."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            semantics, mask = npz["semantics"], npz["mask_camera"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"cannot read Occ3D labels {path}: {error!r}") from error
    if semantics.shape != OCC_GRID_SHAPE or mask.shape != OCC_GRID_SHAPE:
        raise DataError(
            f"Occ3D labels {path}: semantics {semantics.shape} / mask_camera {mask.shape}, "
            f"expected {OCC_GRID_SHAPE}"
        )
    if semantics.size and int(semantics.max()) >= NUM_OCC_CLASSES:
        raise DataError(f"Occ3D labels {path}: class {int(semantics.max())} out of range")
    return semantics.astype(np.int64), mask.astype(bool)


class KeyframeDataset(Dataset):
    """Samples of one stage; see the module docstring for the keys.

    Args:
        records: keyframe records (e.g. ``load_index(...).records``).
        stage: one of ``STAGES``.
        image_size: S, the model's square input size (224 real, 112 tiny).
        vocabulary: meta-action vocabulary the indices refer to (default vocabulary if None).
        qa_pairs: ``"all"`` (one sample per QA pair) or ``"sample"`` (one per keyframe).
        with_occupancy: evaluation stage only: add the Occ3D keys.
        skip_bad: log, count and drop unreadable samples instead of raising.
        reduced_decode: decode JPEGs at reduced scale (see ``images``).
        seed: seed of the per-epoch QA pair draw.
    """

    def __init__(
        self,
        records: Sequence[KeyframeRecord],
        stage: str,
        image_size: int,
        *,
        vocabulary: MetaActionVocabulary | None = None,
        qa_pairs: str = "all",
        with_occupancy: bool = False,
        skip_bad: bool = False,
        reduced_decode: bool = True,
        seed: int = 0,
    ) -> None:
        if stage not in STAGES:
            raise ConfigError(f"unknown stage {stage!r}; choose one of {STAGES}")
        if qa_pairs not in QA_PAIR_MODES:
            raise ConfigError(f"qa_pairs must be one of {QA_PAIR_MODES}, got {qa_pairs!r}")
        if image_size < 1:
            raise ConfigError(f"image_size must be positive, got {image_size}")
        self.stage = stage
        self.image_size = image_size
        self.vocabulary = vocabulary or MetaActionVocabulary()
        self.qa_pairs = qa_pairs
        self.with_occupancy = stage == "occupancy_language" or with_occupancy
        self.skip_bad = skip_bad
        self.reduced_decode = reduced_decode
        self.seed = seed
        self.epoch = 0
        self.num_skipped = 0
        self.records = tuple(r for r in records if self._keeps(r))
        if len(self.records) < len(records):
            LOGGER.info(
                "%s dataset: %d of %d keyframes used (%s)",
                stage,
                len(self.records),
                len(records),
                self._requirement(),
            )
        self._meta_actions = [self._meta_action_index(r) for r in self.records]
        # (record index, QA pair index or -1)
        self._items = [
            (i, pair)
            for i, record in enumerate(self.records)
            for pair in (range(len(record.qa)) if stage == "qa" and qa_pairs == "all" else (-1,))
        ]

    def _requirement(self) -> str:
        return {
            "qa": "with OmniDrive QA",
            "occupancy_language": "with Occ3D labels and a future",
            "planning": "with a future keyframe",
            "evaluation": "with Occ3D labels" if self.with_occupancy else "all",
        }[self.stage]

    def _keeps(self, record: KeyframeRecord) -> bool:
        if self.stage == "qa":
            return bool(record.qa)
        if self.stage == "occupancy_language":
            return record.occupancy_path is not None and record.has_future
        if self.stage == "planning":
            return record.has_future
        return not self.with_occupancy or record.occupancy_path is not None

    def _meta_action_index(self, record: KeyframeRecord) -> int:
        if not record.meta_action:
            return NO_META_ACTION
        try:
            return self.vocabulary.index(self.vocabulary.parse(record.meta_action))
        except MetaActionParseError as error:
            raise ConfigError(
                f"keyframe {record.token}: label {record.meta_action!r} is not in the "
                f"meta-action vocabulary {self.vocabulary.to_dict()}"
            ) from error

    def set_epoch(self, epoch: int) -> None:
        """Choose which QA pair each keyframe shows this epoch (``qa_pairs="sample"``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        record_index, pair = self._items[index]
        record = self.records[record_index]
        try:
            return self._sample(record_index, pair)
        except DataError as error:
            if not self.skip_bad:
                raise
            self.num_skipped += 1
            LOGGER.warning("skipping keyframe %s: %s", record.token, error)
            return None

    def _sample(self, record_index: int, pair: int) -> dict[str, Any]:
        record = self.records[record_index]
        sample: dict[str, Any] = {
            "token": record.token,
            "pixel_values": load_pixel_values(
                record.image_paths, self.image_size, reduced_decode=self.reduced_decode
            ),  # [6, 3, S, S]
            "ego_state": torch.tensor(record.ego_state, dtype=torch.float32),
            "command": record.command,
            "meta_action": torch.tensor(self._meta_actions[record_index], dtype=torch.int64),
            "meta_action_text": record.meta_action,
            "trajectory": torch.tensor(record.future_ego, dtype=torch.float32),  # [6, 2]
            "trajectory_mask": torch.tensor(record.future_mask, dtype=torch.bool),
            "past_trajectory": torch.tensor(record.past_ego, dtype=torch.float32),  # [P, 2]
            "past_mask": torch.tensor(record.past_mask, dtype=torch.bool),  # [P]
            "situation": record.situation,
        }
        if self.stage == "qa":
            if pair < 0:
                rng = np.random.default_rng([self.seed, self.epoch, record_index])
                pair = int(rng.integers(len(record.qa)))
            sample["question"], sample["answer"] = record.qa[pair]
        if self.with_occupancy:
            semantics, mask = load_occupancy(record.occupancy_path)
            sample["occupancy"] = torch.from_numpy(semantics)  # [200, 200, 16]
            sample["occupancy_mask"] = torch.from_numpy(mask)
        if self.stage == "evaluation":
            sample["scene_name"] = record.scene_name
            sample["trajectory_lidar"] = torch.tensor(record.future_lidar, dtype=torch.float32)
            sample["lidar_to_ego"] = torch.tensor(record.lidar_to_ego, dtype=torch.float32)
        return sample


def collate_keyframes(samples: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Stack tensors, keep strings in lists; drop skipped (None) samples and count them.

    Returns None when every sample of the batch was skipped.
    """
    kept = [s for s in samples if s is not None]
    if not kept:
        LOGGER.warning("a whole batch of %d samples was skipped", len(samples))
        return None
    batch: dict[str, Any] = {}
    for key, value in kept[0].items():
        values = [s[key] for s in kept]
        batch[key] = torch.stack(values) if isinstance(value, torch.Tensor) else list(values)
    batch["num_skipped"] = len(samples) - len(kept)
    return batch
