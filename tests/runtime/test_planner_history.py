"""Planner.plan takes the past trajectory the node computes from odometry (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from occvla_ros.errors import DataError
from occvla_ros.runtime.planner import CameraFrame, Planner

PAST = [[-8.0, 0.0], [-6.0, 0.0], [-4.0, 0.2], [-2.0, 0.4]]


@pytest.fixture(scope="module")
def planner(tiny_checkpoint):
    planner = Planner(tiny_checkpoint, device="cpu", warmup=False)
    yield planner
    planner.close()


def _frames(seed: int = 0) -> list[CameraFrame]:
    rng = np.random.default_rng(seed)
    return [CameraFrame(rng.integers(0, 255, (64, 96, 3), np.uint8), "rgb8") for _ in range(6)]


def test_the_past_trajectory_moves_the_plan_and_a_missing_one_means_no_history(planner):
    frames, ego = _frames(), (4.0, 0.0, 0.0)
    with_past = planner.plan(frames, ego, past_trajectory=PAST, past_mask=[True] * 4)
    without = planner.plan(frames, ego)
    all_masked = planner.plan(frames, ego, past_trajectory=PAST, past_mask=[False] * 4)
    assert not np.allclose(with_past.waypoints, without.waypoints)
    np.testing.assert_allclose(all_masked.waypoints, without.waypoints, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("past", "mask"),
    [(PAST[:2], None), (PAST, [True, True]), ([[float("nan"), 0.0], *PAST[1:]], None)],
)
def test_a_bad_past_trajectory_is_a_data_error(planner, past, mask):
    with pytest.raises(DataError, match="past trajectory"):
        planner.plan(_frames(), (4.0, 0.0, 0.0), past_trajectory=past, past_mask=mask)
