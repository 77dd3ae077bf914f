"""Meta-action accuracy (speed, direction, joint) with confusion matrices."""

from __future__ import annotations

import numpy as np

from occvla_ros.errors import ConfigError
from occvla_ros.meta_action import MetaActionVocabulary


class MetaActionMetric:
    """Accumulator of meta-action accuracy over class indices of a :class:`MetaActionVocabulary`.

    Definition: joint accuracy = fraction of samples whose predicted (speed, direction) pair equals
    the GT pair; speed / direction accuracy compare only that half. The confusion matrices count
    [GT index][predicted index] over the joint classes, the speeds and the directions.
    """

    def __init__(self, vocabulary: MetaActionVocabulary | None = None) -> None:
        self.vocabulary = vocabulary or MetaActionVocabulary()
        self.reset()

    def reset(self) -> None:
        size = len(self.vocabulary)
        self.confusion = np.zeros((size, size), dtype=np.int64)

    def update(self, predicted: np.ndarray, gt: np.ndarray) -> None:
        """Add index arrays [B] (``Prediction.meta_action_indices`` and the dataset's labels)."""
        predicted = np.asarray(predicted, dtype=np.int64).ravel()
        gt = np.asarray(gt, dtype=np.int64).ravel()
        size = len(self.vocabulary)
        if predicted.shape != gt.shape:
            raise ConfigError(f"{len(predicted)} predicted meta-actions for {len(gt)} labels")
        for name, labels in (("predicted", predicted), ("GT", gt)):
            if labels.size and (labels.min() < 0 or labels.max() >= size):
                raise ConfigError(f"{name} meta-action index outside 0..{size - 1}: {labels}")
        np.add.at(self.confusion, (gt, predicted), 1)

    def merge(self, other: MetaActionMetric) -> None:
        self.confusion += other.confusion

    def _factor_confusion(self, count: int, index_of) -> np.ndarray:
        size = len(self.vocabulary)
        projection = np.zeros((size, count), dtype=np.int64)  # joint class -> factor class
        projection[np.arange(size), [index_of(i) for i in range(size)]] = 1
        return projection.T @ self.confusion @ projection

    def compute(self) -> dict:
        total = int(self.confusion.sum())
        speed = self._factor_confusion(len(self.vocabulary.speeds), self.vocabulary.speed_index)
        direction = self._factor_confusion(
            len(self.vocabulary.directions), self.vocabulary.direction_index
        )

        def accuracy(matrix: np.ndarray) -> float | None:
            return float(np.trace(matrix) / total) if total else None

        return {
            "count": total,
            "joint_accuracy": accuracy(self.confusion),
            "speed_accuracy": accuracy(speed),
            "direction_accuracy": accuracy(direction),
            "labels": list(self.vocabulary.texts),
            "speed_labels": list(self.vocabulary.speeds),
            "direction_labels": list(self.vocabulary.directions),
            "confusion": self.confusion.tolist(),
            "speed_confusion": speed.tolist(),
            "direction_confusion": direction.tolist(),
        }
