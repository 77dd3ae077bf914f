"""Ego state and past trajectory from a stream of odometry samples, as the data loader makes them.

The ego state (speed, longitudinal acceleration, yaw rate) is
:func:`occvla_ros.data.ego_state.ego_state_at` over the odometry received so far, evaluated at the
newest sample at or before the camera set: the definition the loader applies to the odometry
stream a bag carries, so the planner sees at run time the features it was trained on. The past
trajectory is the position of the samples 0.5 s, 1 s, ... before it in its ego frame, as the
loader's ``past_ego`` (the previous keyframes, 0.5 s apart).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from occvla_ros.constants import WAYPOINT_DT_S
from occvla_ros.data.ego_state import ego_state_at
from occvla_ros.data.nuscenes_loader import NUM_PAST
from occvla_ros.errors import DataError
from occvla_ros.geometry import quat_wxyz_to_yaw

# Odometry older than this behind the newest sample is dropped: enough for the acceleration
# window and four past keyframes 0.5 s apart, with 1 s to spare for a set that waits.
HISTORY_S = 3.0


@dataclass(frozen=True)
class OdometrySample:
    stamp_ns: int
    speed: float  # m/s along the body x axis
    yaw_rate: float  # rad/s
    position: tuple[float, float, float]  # in the odometry frame
    orientation_wxyz: tuple[float, float, float, float]
    frame_id: str


@dataclass(frozen=True)
class EgoState:
    speed: float
    acceleration: float
    yaw_rate: float
    odometry: OdometrySample  # the sample the state was taken from (pose for output frames)
    # Positions 0.5 s, 1 s, ... earlier in this sample's ego frame, oldest first, [P, 2]; a
    # False in past_mask [P] where no odometry is that old.
    past_trajectory: np.ndarray
    past_mask: np.ndarray

    def as_array(self) -> np.ndarray:
        return np.array([self.speed, self.acceleration, self.yaw_rate], dtype=np.float32)


def check_odometry(sample: OdometrySample) -> None:
    """DataError naming the field when a value is NaN or inf."""
    values = {
        "speed": sample.speed,
        "yaw_rate": sample.yaw_rate,
        **{f"position[{i}]": v for i, v in enumerate(sample.position)},
        **{f"orientation[{i}]": v for i, v in enumerate(sample.orientation_wxyz)},
    }
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise DataError(f"odometry at stamp {sample.stamp_ns} ns has non-finite {', '.join(bad)}")


class EgoStateEstimator:
    """Keeps recent odometry (``HISTORY_S``) and derives the ego state the loader would.

    ``tolerance_ns``: the largest age of the newest odometry sample at or before a camera set (and
    the largest distance of a past sample from its 0.5 s step). Stamps going backwards (bag loop)
    clear the history. A sample later than the set is never read.
    """

    def __init__(self, tolerance_ns: int, history: int = 2000) -> None:
        self.tolerance_ns = tolerance_ns
        self._samples: deque[OdometrySample] = deque(maxlen=history)

    def add(self, sample: OdometrySample) -> None:
        check_odometry(sample)
        if self._samples and sample.stamp_ns <= self._samples[-1].stamp_ns:
            self._samples.clear()
        self._samples.append(sample)
        oldest = sample.stamp_ns - round(HISTORY_S * 1e9)
        while self._samples[0].stamp_ns < oldest:
            self._samples.popleft()

    def newest_stamp_ns(self) -> int | None:
        """Stamp of the newest sample (None when there is none)."""
        samples = list(self._samples)
        return samples[-1].stamp_ns if samples else None

    def state_at(self, stamp_ns: int) -> EgoState | None:
        """Ego state at the newest sample at or before ``stamp_ns`` (None if none is within
        tolerance).

        Reads a snapshot, so another thread may ``add`` meanwhile.
        """
        samples = [s for s in list(self._samples) if s.stamp_ns <= stamp_ns]
        if not samples or stamp_ns - samples[-1].stamp_ns > self.tolerance_ns:
            return None
        newest = samples[-1]
        times = np.array([(s.stamp_ns - newest.stamp_ns) / 1e9 for s in samples])
        speed, acceleration, yaw_rate = ego_state_at(
            times,
            np.array([s.speed for s in samples]),
            np.array([s.yaw_rate for s in samples]),
            0.0,
        )
        past, mask = self._past(samples, times)
        return EgoState(speed, acceleration, yaw_rate, newest, past, mask)

    def _past(self, samples: list[OdometrySample], times: np.ndarray):
        """Positions [P, 2] of the samples nearest 0.5 s, 1 s, ... before the newest, in its ego
        frame (x forward, y left), oldest first, and which exist [P]."""
        newest = samples[-1]
        yaw = quat_wxyz_to_yaw(newest.orientation_wxyz)
        cos, sin = math.cos(yaw), math.sin(yaw)
        past, mask = np.zeros((NUM_PAST, 2)), np.zeros(NUM_PAST, bool)
        for step in range(1, NUM_PAST + 1):
            index = int(np.argmin(np.abs(times + step * WAYPOINT_DT_S)))
            if abs(times[index] + step * WAYPOINT_DT_S) * 1e9 > self.tolerance_ns:
                continue
            dx = samples[index].position[0] - newest.position[0]
            dy = samples[index].position[1] - newest.position[1]
            past[NUM_PAST - step] = (cos * dx + sin * dy, -sin * dx + cos * dy)
            mask[NUM_PAST - step] = True
        return past, mask
