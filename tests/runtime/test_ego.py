"""The runtime ego state from odometry: causal, and the loader's definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from occvla_ros.runtime.ego import EgoStateEstimator, OdometrySample

STEP_NS = 1_000_000_000 // 12  # 12 Hz odometry, as the bags' CAM_FRONT poses
YAW = 0.7


def sample(k: int, speed: float, x: float) -> OdometrySample:
    """Driving along heading YAW, ``x`` metres from the origin."""
    return OdometrySample(
        stamp_ns=k * STEP_NS,
        speed=speed,
        yaw_rate=0.05,
        position=(x * math.cos(YAW), x * math.sin(YAW), 0.0),
        orientation_wxyz=(math.cos(YAW / 2), 0.0, 0.0, math.sin(YAW / 2)),
        frame_id="odom",
    )


def ramp(count: int) -> list[OdometrySample]:
    """Speed 2 m/s + 1 m/s^2 * t."""
    samples = []
    for k in range(count):
        t = k * STEP_NS / 1e9
        samples.append(sample(k, 2.0 + t, 2.0 * t + 0.5 * t * t))
    return samples


def test_state_reads_only_odometry_at_or_before_the_set():
    estimator = EgoStateEstimator(tolerance_ns=50_000_000)
    stream = ramp(60)
    for s in stream[:37]:
        estimator.add(s)
    at = stream[36].stamp_ns
    before = estimator.state_at(at + 1000)
    assert before.odometry is stream[36]
    # Over the 0.5 s window (6 samples at 12 Hz) the ramp's slope; the newest sample's twist.
    assert before.speed == pytest.approx(2.0 + 3.0)
    assert before.acceleration == pytest.approx(1.0)
    assert before.yaw_rate == pytest.approx(0.05)
    for s in stream[37:42]:  # later odometry arrives: the state of that set does not change
        estimator.add(s)
    after = estimator.state_at(at + 1000)
    assert after.odometry is stream[36]
    np.testing.assert_array_equal(after.as_array(), before.as_array())
    np.testing.assert_array_equal(after.past_trajectory, before.past_trajectory)


def test_no_state_without_odometry_at_or_before_the_set_within_tolerance():
    estimator = EgoStateEstimator(tolerance_ns=50_000_000)
    stream = ramp(10)
    for s in stream:
        estimator.add(s)
    assert estimator.state_at(stream[0].stamp_ns - 1) is None  # only later odometry
    assert estimator.state_at(stream[-1].stamp_ns + 60_000_000) is None  # too old


def test_past_trajectory_is_the_positions_half_a_second_apart_in_the_ego_frame():
    estimator = EgoStateEstimator(tolerance_ns=20_000_000)
    stream = ramp(30)  # 2.4 s: 0.5, 1.0, 1.5, 2.0 s of history
    for s in stream:
        estimator.add(s)
    state = estimator.state_at(stream[-1].stamp_ns)
    t = 29 / 12
    travelled = [2.0 * u + 0.5 * u * u for u in (t - 2.0, t - 1.5, t - 1.0, t - 0.5)]
    now = 2.0 * t + 0.5 * t * t
    np.testing.assert_allclose(state.past_trajectory[:, 0], np.array(travelled) - now, atol=1e-9)
    np.testing.assert_allclose(state.past_trajectory[:, 1], 0.0, atol=1e-9)
    assert state.past_mask.all()
    young = EgoStateEstimator(tolerance_ns=20_000_000)
    for s in stream[:8]:  # 0.58 s of history: only the step 0.5 s back exists
        young.add(s)
    assert young.state_at(stream[7].stamp_ns).past_mask.tolist() == [False, False, False, True]
