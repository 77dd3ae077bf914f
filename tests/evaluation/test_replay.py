"""Scoring replayed plans against a bag's ground truth."""

from __future__ import annotations

import math

import numpy as np

from occvla_ros.evaluation.replay import StampedPath, score_replay

MS = 1_000_000
FUTURE = np.stack([np.arange(1, 7) * 2.0, np.zeros(6)], axis=1)  # 6 waypoints straight ahead


def test_nearest_plan_within_tolerance_in_the_same_frame_is_scored():
    ground_truths = [
        StampedPath(1000 * MS, "base_link", FUTURE),
        StampedPath(1500 * MS, "base_link", FUTURE),
        StampedPath(2000 * MS, "base_link", FUTURE[:4]),  # near the scene end: not a valid sample
        StampedPath(2500 * MS, "base_link", FUTURE),
        StampedPath(3000 * MS, "base_link", FUTURE),
    ]
    lateral = FUTURE + np.array([0.0, 1.0])  # 1 m to the left at every step
    late = FUTURE.copy()
    late[5, 0] += 3.0  # 3 m off at 3 s only
    plans = [
        StampedPath(1030 * MS, "base_link", lateral),  # 30 ms after its keyframe
        StampedPath(1520 * MS, "base_link", late),
        StampedPath(2600 * MS, "base_link", FUTURE),  # 100 ms away: beyond the tolerance
        StampedPath(3000 * MS, "odom", FUTURE),  # another frame
    ]
    score = score_replay(plans, ground_truths, tolerance_ns=50 * MS)
    assert (score.plans, score.ground_truths, score.matched, score.wrong_frame) == (4, 4, 2, 1)
    # ST-P3: per sample the mean over steps 1..2k, then over samples.
    assert math.isclose(score.l2["1s"], (1.0 + 0.0) / 2)
    assert math.isclose(score.l2["3s"], (1.0 + 3.0 / 6) / 2)
    assert "scored 2 of 4" in score.summary() and "another frame" in score.summary()


def test_nothing_to_match_gives_nan_not_zero():
    score = score_replay([], [StampedPath(0, "base_link", FUTURE)], tolerance_ns=50 * MS)
    assert score.matched == 0 and all(math.isnan(v) for v in score.l2.values())
