"""Occ3D-nuScenes semantic occupancy metric: confusion matrix, per-class IoU, mIoU, geometry IoU."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from occvla_ros.constants import FREE_CLASS, NUM_OCC_CLASSES, OCC3D_CLASS_NAMES, OCC_EVAL_CLASSES
from occvla_ros.errors import ConfigError


@dataclass
class OccupancyResult:
    """IoUs as fractions; a class absent from both GT and prediction has IoU NaN (JSON null)."""

    per_class_iou: dict[str, float]
    miou: float
    geometry_iou: float
    voxel_count: int
    use_camera_mask: bool
    confusion: list[list[int]]  # [gt class][predicted class]

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["per_class_iou"] = {k: _json_float(v) for k, v in self.per_class_iou.items()}
        data["miou"], data["geometry_iou"] = _json_float(self.miou), _json_float(self.geometry_iou)
        return data


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU [C] = TP / (TP + FP + FN) of a confusion [C, C] (rows = GT); NaN on 0/0."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)


class OccupancyMetric:
    """Accumulator of the Occ3D protocol over voxel grids of class labels 0..17 (17 = free).

    Definition: an 18 x 18 confusion matrix (rows = GT class, columns = predicted class) summed
    over every voxel with ``mask_camera == 1`` (all voxels with ``use_camera_mask=False``).
    Per-class IoU = TP / (TP + FP + FN); mIoU = mean over classes 0..16 (free excluded). A class
    absent from both GT and prediction has IoU NaN and is left out of the mean (as ``np.nanmean`` in
    the Occ3D reference code). Geometry IoU treats every class but free as occupied: occupied TP /
    (TP + FP + FN).
    """

    def __init__(self, use_camera_mask: bool = True) -> None:
        self.use_camera_mask = use_camera_mask
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((NUM_OCC_CLASSES, NUM_OCC_CLASSES), dtype=np.int64)

    def update(
        self, prediction: np.ndarray, gt: np.ndarray, mask_camera: np.ndarray | None = None
    ) -> None:
        """Add labels [..., X, Y, Z] (any leading shape) and ``mask_camera`` of the same shape."""
        prediction, gt = np.asarray(prediction), np.asarray(gt)
        if prediction.shape != gt.shape:
            raise ConfigError(f"occupancy prediction {prediction.shape} != GT {gt.shape}")
        if self.use_camera_mask:
            if mask_camera is None:
                raise ConfigError("occupancy metric with the camera mask needs mask_camera")
            mask = np.asarray(mask_camera).astype(bool)
            if mask.shape != gt.shape:
                raise ConfigError(f"mask_camera {mask.shape} != GT {gt.shape}")
            prediction, gt = prediction[mask], gt[mask]
        prediction, gt = prediction.ravel().astype(np.int64), gt.ravel().astype(np.int64)
        for name, labels in (("prediction", prediction), ("GT", gt)):
            if labels.size and (labels.min() < 0 or labels.max() >= NUM_OCC_CLASSES):
                raise ConfigError(
                    f"occupancy {name} has labels outside 0..{NUM_OCC_CLASSES - 1}: "
                    f"[{labels.min()}, {labels.max()}]"
                )
        self.confusion += np.bincount(
            gt * NUM_OCC_CLASSES + prediction, minlength=NUM_OCC_CLASSES**2
        ).reshape(NUM_OCC_CLASSES, NUM_OCC_CLASSES)

    def merge(self, other: OccupancyMetric) -> None:
        self.confusion += other.confusion

    def compute(self) -> OccupancyResult:
        iou = iou_from_confusion(self.confusion)
        evaluated = iou[list(OCC_EVAL_CLASSES)]
        occupied = [c for c in range(NUM_OCC_CLASSES) if c != FREE_CLASS]
        binary = np.array(
            [
                [
                    self.confusion[np.ix_(occupied, occupied)].sum(),
                    self.confusion[occupied, FREE_CLASS].sum(),
                ],
                [
                    self.confusion[FREE_CLASS, occupied].sum(),
                    self.confusion[FREE_CLASS, FREE_CLASS],
                ],
            ]
        )
        return OccupancyResult(
            per_class_iou={OCC3D_CLASS_NAMES[c]: float(iou[c]) for c in range(NUM_OCC_CLASSES)},
            miou=float(np.nanmean(evaluated)) if np.isfinite(evaluated).any() else float("nan"),
            geometry_iou=float(iou_from_confusion(binary)[0]),
            voxel_count=int(self.confusion.sum()),
            use_camera_mask=self.use_camera_mask,
            confusion=self.confusion.tolist(),
        )
