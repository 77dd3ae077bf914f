"""L2 of the plans a running planner published during a bag replay, against the bag's ground truth.

The closed-loop counterpart of ``occvla evaluate``: the same images reach the model through the
ROS nodes (transport, synchronisation, decoding, odometry) instead of the dataset loader. Each
ground-truth path with all 6 future waypoints (ST-P3's valid samples) is matched with the plan
whose stamp is nearest, within a tolerance (a nuScenes keyframe's stamp is its LIDAR_TOP time; the
plan carries its newest camera stamp, up to ~40 ms away). L2 at 1 / 2 / 3 s is ST-P3's: per sample
the mean over the steps up to the horizon, then the mean over samples. It does not depend on
whether both paths are in the ego or the LiDAR frame, but both must be in the same frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from occvla_ros.constants import NUM_WAYPOINTS
from occvla_ros.evaluation.planning import MEAN_UNTIL, reduce_per_horizon, table_from_per_step


@dataclass(frozen=True)
class StampedPath:
    stamp_ns: int
    frame_id: str
    points: np.ndarray  # [N, 2] metres


@dataclass(frozen=True)
class ReplayScore:
    plans: int  # plans received
    ground_truths: int  # ground-truth paths with all 6 waypoints
    matched: int  # of those, with a plan within the tolerance in the same frame
    wrong_frame: int  # nearest plan in another frame (not scored)
    l2: dict[str, float]  # "1s", "2s", "3s", "avg" in metres (NaN when nothing matched)

    def summary(self) -> str:
        values = " / ".join(f"{self.l2[c]:.3f}" for c in ("1s", "2s", "3s"))
        text = (
            f"scored {self.matched} of {self.ground_truths} ground-truth paths against "
            f"{self.plans} plans: L2 1s / 2s / 3s = {values} m, avg {self.l2['avg']:.3f} m"
        )
        if self.wrong_frame:
            text += f" ({self.wrong_frame} nearest plans were in another frame: not scored)"
        return text


def score_replay(
    plans: Sequence[StampedPath], ground_truths: Sequence[StampedPath], tolerance_ns: int
) -> ReplayScore:
    valid = [gt for gt in ground_truths if len(gt.points) == NUM_WAYPOINTS]
    stamps = np.array([plan.stamp_ns for plan in plans], dtype=np.int64)
    per_step, wrong_frame = [], 0
    for gt in valid:
        if not len(stamps):
            break
        nearest = int(np.argmin(np.abs(stamps - gt.stamp_ns)))
        plan = plans[nearest]
        if abs(plan.stamp_ns - gt.stamp_ns) > tolerance_ns:
            continue
        if plan.frame_id != gt.frame_id:
            wrong_frame += 1
            continue
        per_step.append(np.linalg.norm(plan.points - gt.points, axis=-1))
    values = np.array(per_step).reshape(-1, NUM_WAYPOINTS)
    return ReplayScore(
        plans=len(plans),
        ground_truths=len(valid),
        matched=len(per_step),
        wrong_frame=wrong_frame,
        l2=table_from_per_step(reduce_per_horizon(values, MEAN_UNTIL)),
    )
