"""The causal ego state: what a car knows of its own motion at time t, from signals up to t.

One definition, shared by the data loader (training), the bag converter (the odometry it
publishes) and the ROS runtime (``occvla_ros.runtime.ego``, live odometry), so a deployed planner
sees the features it was trained on:

- an odometry stream: samples (time, speed along the heading, yaw rate, pose). Where no measured
  twist exists (nuScenes without the CAN bus expansion) a sample's twist is the backward difference
  of its pose and the previous sample's pose (:func:`twist_from_poses`); the first sample of a
  stream has no predecessor, so its twist is unknown (NaN) and it is not part of the stream (the
  bag converter publishes no odometry for it);
- the ego state at t (:func:`ego_state_at`): speed and yaw rate of the newest sample at or before
  t; longitudinal acceleration = (that speed - the speed of the newest sample at or before
  t - ``ACCEL_WINDOW_S``) / the time between the two samples (the oldest sample stands in while the
  stream is younger than the window; 0 with a single sample).

Nothing after t is read: the ego state never leaks the future the planner is asked to predict.
"""

from __future__ import annotations

import numpy as np

ACCEL_WINDOW_S = 0.5


def twist_from_poses(times: np.ndarray, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (speed [W], yaw rate [W]) of a pose stream, each from it and its predecessor
    (NaN for the first sample).

    ``times`` [W] seconds (increasing), ``poses`` [W, 3] global (x, y, yaw). Speed is the
    displacement since the previous sample projected on the sample's own heading, so it is signed
    (negative when reversing).
    """
    times = np.asarray(times, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    speed, yaw_rate = np.full(len(times), np.nan), np.full(len(times), np.nan)
    if len(times) > 1:
        dt = np.diff(times)
        step = np.diff(poses[:, :2], axis=0)  # [W - 1, 2]
        heading = np.stack([np.cos(poses[1:, 2]), np.sin(poses[1:, 2])], axis=1)
        speed[1:] = np.einsum("ij,ij->i", step, heading) / dt
        turn = np.diff(poses[:, 2])
        yaw_rate[1:] = np.arctan2(np.sin(turn), np.cos(turn)) / dt
    return speed, yaw_rate


def ego_state_at(
    times: np.ndarray, speed: np.ndarray, yaw_rate: np.ndarray, t: float
) -> np.ndarray | None:
    """(speed, longitudinal acceleration, yaw rate) at ``t`` from the samples at or before it.

    ``times`` [W] seconds, increasing; ``speed`` / ``yaw_rate`` [W]; samples with an unknown
    (NaN) twist are left out. None when no known sample is at or before ``t``.
    """
    known = np.isfinite(speed) & np.isfinite(yaw_rate)
    times = np.asarray(times, dtype=np.float64)[known]
    speed, yaw_rate = np.asarray(speed)[known], np.asarray(yaw_rate)[known]
    newest = int(np.searchsorted(times, t, side="right")) - 1
    if newest < 0:
        return None
    earlier = max(0, int(np.searchsorted(times, t - ACCEL_WINDOW_S, side="right")) - 1)
    acceleration = 0.0
    if earlier < newest:
        acceleration = (speed[newest] - speed[earlier]) / (times[newest] - times[earlier])
    return np.array([speed[newest], acceleration, yaw_rate[newest]], dtype=np.float64)
