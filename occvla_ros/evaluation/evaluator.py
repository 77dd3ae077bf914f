"""Scores several planners (the model and the ego-only baselines) on the same samples at once.

Each sample's agent occupancy is rasterised once per convention and every planner's waypoints are
scored against it, so the model and its baselines always share samples, GT and obstacles. Samples
may carry a situation label (cruise, stop, lead braking, ...): the ST-P3 table is then also
reported per situation. A method may have its own meta-action accuracy (e.g. the model with its
cameras blanked).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from occvla_ros.errors import ConfigError
from occvla_ros.evaluation.figures import BevSample
from occvla_ros.evaluation.meta_action import MetaActionMetric
from occvla_ros.evaluation.occupancy import OccupancyMetric
from occvla_ros.evaluation.planning import PRESETS, UNIAD_PRESETS, PlanningMetric, convention
from occvla_ros.evaluation.rasterize import EGO_FRAME
from occvla_ros.evaluation.samples import SampleContext, ego_to_lidar
from occvla_ros.meta_action import MetaActionVocabulary

MODEL = "model"
MODEL_NO_CAMERAS = "model_no_cameras"  # the model with all six camera images blanked
UNLABELLED = "unlabelled"
SITUATION_CONVENTION = "stp3"


@dataclass
class _Kept:
    """A sample kept for the figures."""

    l2: float
    order: int
    sample: BevSample

    def __lt__(self, other: _Kept) -> bool:
        return (self.l2, self.order) < (other.l2, other.order)


class Evaluator:
    """Accumulates planning (per method x convention), meta-action and occupancy metrics."""

    def __init__(
        self,
        methods: Sequence[str],
        *,
        conventions: Sequence[str] = tuple(PRESETS),
        vocabulary: MetaActionVocabulary | None = None,
        with_occupancy: bool = False,
        figure_samples: int = 6,
        uniad_sample_set: str | None = None,
    ) -> None:
        if not methods:
            raise ConfigError("evaluator needs at least one method")
        uniad_overrides = {"sample_set": uniad_sample_set} if uniad_sample_set else {}
        self.methods = tuple(methods)
        self.conventions = [
            convention(name, **(uniad_overrides if name in UNIAD_PRESETS else {}))
            for name in conventions
        ]
        self.planning = {
            method: {c.name: PlanningMetric(c) for c in self.conventions} for method in self.methods
        }
        self.meta_action = MetaActionMetric(vocabulary)
        self.method_meta_actions: dict[str, MetaActionMetric] = {}  # other methods' accuracy
        self.situations: list[str] = []  # per sample, in the order added
        self.occupancy = OccupancyMetric() if with_occupancy else None
        self.figure_samples = figure_samples
        self.first: list[BevSample] = []
        self.worst: list[_Kept] = []  # min-heap of the largest model L2
        self.count = 0

    def add_sample(
        self,
        context: SampleContext,
        gt: np.ndarray,
        gt_mask: np.ndarray,
        predictions: dict[str, np.ndarray],
        *,
        occupancy_gt: np.ndarray | None = None,
        occupancy_mask: np.ndarray | None = None,
        occupancy_prediction: np.ndarray | None = None,
        situation: str = UNLABELLED,
    ) -> None:
        """Score one sample; gt [6, 2], predictions {method: [6, 2]} in the ego frame."""
        missing = set(self.methods) - set(predictions)
        if missing:
            raise ConfigError(f"no predictions for {sorted(missing)} of sample {context.token}")
        gt_mask = np.asarray(gt_mask, dtype=bool)
        gt = np.where(gt_mask[:, None], np.asarray(gt, dtype=np.float64), 0.0)
        stacked = np.stack([np.asarray(predictions[m], dtype=np.float64) for m in self.methods])
        broken = [m for m, w in zip(self.methods, stacked, strict=True) if not np.isfinite(w).all()]
        if broken:
            raise ConfigError(f"non-finite waypoints from {broken} for sample {context.token}")
        per_step: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        for conv in self.conventions:
            if conv.per_step_identity not in per_step:  # UniAD's two strategies share them
                if conv.frame == EGO_FRAME:
                    frame_predictions, frame_gt, boxes = stacked, gt, context.boxes_ego
                else:
                    frame_predictions = ego_to_lidar(stacked, context.lidar_from_ego)
                    frame_gt = ego_to_lidar(gt, context.lidar_from_ego)
                    boxes = context.boxes_lidar
                first_method = self.planning[self.methods[0]][conv.name]
                per_step[conv.per_step_identity] = first_method.sample_steps(
                    frame_predictions, frame_gt, gt_mask, boxes
                )
            l2, collision = per_step[conv.per_step_identity]
            for index, method in enumerate(self.methods):
                self.planning[method][conv.name].add_steps(
                    l2[index : index + 1],
                    collision[index : index + 1],
                    np.array([gt_mask.all()]),
                    [context.token],
                )
        if self.occupancy is not None and occupancy_prediction is not None:
            self.occupancy.update(occupancy_prediction, occupancy_gt, occupancy_mask)
        self._keep_for_figures(context, gt, gt_mask, predictions, occupancy_gt)
        self.situations.append(situation)
        self.count += 1

    def add_meta_actions(self, predicted: np.ndarray, gt: np.ndarray, method: str = MODEL) -> None:
        """Meta-action indices [B] of ``method`` (the model's own by default) and the labels."""
        if method == MODEL:
            self.meta_action.update(predicted, gt)
            return
        if method not in self.method_meta_actions:
            self.method_meta_actions[method] = MetaActionMetric(self.meta_action.vocabulary)
        self.method_meta_actions[method].update(predicted, gt)

    def situation_results(self) -> dict[str, dict]:
        """Per situation: sample count and each method's ST-P3 L2 / collision table.

        Empty when no sample carries a situation label.
        """
        if all(s == UNLABELLED for s in self.situations) or SITUATION_CONVENTION not in {
            c.name for c in self.conventions
        }:
            return {}
        labels = np.array(self.situations)
        results: dict[str, dict] = {}
        for situation in sorted(set(self.situations)):
            rows = labels == situation
            per_method = {}
            for method in self.methods:
                metric = self.planning[method][SITUATION_CONVENTION]
                l2, collision, valid = metric.steps()
                subset = PlanningMetric(metric.convention)
                subset.add_steps(l2[rows], collision[rows], valid[rows])
                per_method[method] = subset.compute().to_dict()["table"]
            results[situation] = {"samples": int(rows.sum()), "planning": per_method}
        return results

    def _keep_for_figures(self, context, gt, gt_mask, predictions, occupancy_gt) -> None:
        reference = MODEL if MODEL in predictions else self.methods[0]
        errors = np.linalg.norm(predictions[reference] - gt, axis=-1)[gt_mask]
        l2 = float(errors.mean()) if errors.size else 0.0  # no future: nothing to get wrong
        sample = BevSample(
            token=context.token,
            gt=gt,
            gt_mask=gt_mask,
            predictions={m: np.asarray(predictions[m]) for m in self.methods},
            l2=l2,
            occupancy=None if occupancy_gt is None else np.asarray(occupancy_gt),
            boxes=context.boxes_ego,
        )
        if len(self.first) < self.figure_samples:
            self.first.append(sample)
        entry = _Kept(l2, self.count, sample)
        if len(self.worst) < self.figure_samples:
            heapq.heappush(self.worst, entry)
        elif entry.l2 > self.worst[0].l2:
            heapq.heapreplace(self.worst, entry)

    def worst_samples(self) -> list[BevSample]:
        return [kept.sample for kept in sorted(self.worst, reverse=True)]

    def results(self) -> dict:
        return {
            "sample_count": self.count,
            "planning": {
                method: {name: metric.compute().to_dict() for name, metric in by_conv.items()}
                for method, by_conv in self.planning.items()
            },
            "worst_l2": [{"token": s.token, "l2_mean": s.l2} for s in self.worst_samples()],
            "meta_action": self.meta_action.compute() if self.meta_action.confusion.sum() else None,
            "method_meta_actions": {
                method: metric.compute() for method, metric in self.method_meta_actions.items()
            },
            "situations": self.situation_results(),
            "occupancy": self.occupancy.compute().to_dict()
            if self.occupancy is not None and self.occupancy.confusion.sum()
            else None,
        }
