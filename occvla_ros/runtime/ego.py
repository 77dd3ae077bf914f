"""Ego state (speed, longitudinal acceleration, yaw rate) from a stream of odometry samples."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from occvla_ros.errors import DataError


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
    """Keeps recent odometry; acceleration is the speed difference over the last samples.

    ``tolerance_ns``: the largest stamp difference between a camera set and the odometry sample
    used for it. Stamps going backwards (bag loop) clear the history.
    """

    def __init__(self, tolerance_ns: int, history: int = 50) -> None:
        self.tolerance_ns = tolerance_ns
        self._samples: deque[OdometrySample] = deque(maxlen=history)

    def add(self, sample: OdometrySample) -> None:
        check_odometry(sample)
        if self._samples and sample.stamp_ns <= self._samples[-1].stamp_ns:
            self._samples.clear()
        self._samples.append(sample)

    def newest_stamp_ns(self) -> int | None:
        """Stamp of the newest sample (None when there is none)."""
        samples = list(self._samples)
        return samples[-1].stamp_ns if samples else None

    def state_at(self, stamp_ns: int) -> EgoState | None:
        """Ego state at the sample nearest ``stamp_ns`` (None if none is within tolerance).

        Reads a snapshot, so another thread may ``add`` meanwhile.
        """
        samples = list(self._samples)
        if not samples:
            return None
        index = min(range(len(samples)), key=lambda i: abs(samples[i].stamp_ns - stamp_ns))
        sample = samples[index]
        if abs(sample.stamp_ns - stamp_ns) > self.tolerance_ns:
            return None
        acceleration = 0.0
        if index > 0:
            previous = samples[index - 1]
            dt = (sample.stamp_ns - previous.stamp_ns) * 1e-9
            acceleration = (sample.speed - previous.speed) / dt
        return EgoState(sample.speed, acceleration, sample.yaw_rate, sample)
