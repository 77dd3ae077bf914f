"""The meta-action and driving-command rules of occvla_ros.data.labels on hand-built futures."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from occvla_ros.data import labels
from occvla_ros.errors import DataError
from occvla_ros.meta_action import MetaAction, MetaActionVocabulary

FULL = np.ones(6, dtype=bool)


def path_from_steps(lengths, headings_deg) -> np.ndarray:
    """Waypoints [6, 2] reached by 6 straight steps of the given lengths [m] and headings [deg]."""
    headings = np.radians(np.asarray(headings_deg, dtype=np.float64))
    steps = np.asarray(lengths, dtype=np.float64)[:, None] * np.stack(
        [np.cos(headings), np.sin(headings)], axis=1
    )
    return np.cumsum(steps, axis=0)


def arc(speed: float, total_heading_deg: float) -> np.ndarray:
    """Constant-speed circular arc turning by ``total_heading_deg`` over 3 s."""
    times = 0.5 * np.arange(1, 7)
    heading = np.radians(total_heading_deg) * times / 3.0
    if total_heading_deg == 0:
        return np.stack([speed * times, np.zeros(6)], axis=1)
    radius = speed * 3.0 / np.radians(total_heading_deg)
    return np.stack([radius * np.sin(heading), radius * (1 - np.cos(heading))], axis=1)


def arc_ending_at(speed: float, end_heading_deg: float) -> np.ndarray:
    # The last step's chord points half a step behind the arc's final tangent.
    return arc(speed, end_heading_deg * 12.0 / 11.0)


# Step-length profiles [m per 0.5 s] and current speeds producing each speed action.
SPEED_PROFILES = {
    "keep speed": ([5.0] * 6, 10.0),
    "accelerate": ([3.5, 4.0, 4.5, 5.0, 5.5, 6.0], 6.0),
    "decelerate": ([4.5, 4.0, 3.5, 3.0, 2.5, 2.0], 10.0),
    "stop": ([3.0, 2.5, 2.0, 1.5, 1.0, 0.1], 6.0),
}
# Step headings [deg] producing each direction action with every profile above.
HEADING_PROFILES = {
    "go straight": [0, 0, 0, 0, 0, 0],
    "turn left": [5, 10, 15, 25, 30, 35],
    "turn right": [-5, -10, -15, -25, -30, -35],
    "change lane left": [20, 20, 15, 0, 0, 0],
    "change lane right": [-20, -20, -15, 0, 0, 0],
}


@pytest.mark.parametrize(
    ("speed", "direction"), list(itertools.product(SPEED_PROFILES, HEADING_PROFILES))
)
def test_every_meta_action_class(speed, direction):
    lengths, current_speed = SPEED_PROFILES[speed]
    future = path_from_steps(lengths, HEADING_PROFILES[direction])
    action = labels.label_meta_action(future, FULL, current_speed)
    assert action == MetaAction(speed, direction)
    assert MetaActionVocabulary().parse(action.text) == action


def test_labels_use_the_default_vocabulary_words():
    vocabulary = MetaActionVocabulary()
    assert set(vocabulary.speeds) == {
        labels.STOP,
        labels.DECELERATE,
        labels.KEEP_SPEED,
        labels.ACCELERATE,
    }
    assert set(vocabulary.directions) == {
        labels.GO_STRAIGHT, labels.TURN_LEFT, labels.TURN_RIGHT,
        labels.CHANGE_LANE_LEFT, labels.CHANGE_LANE_RIGHT,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("final_speed", "expected"),
    [(labels.STOP_SPEED_MPS - 0.01, "stop"), (labels.STOP_SPEED_MPS + 0.01, "keep speed")],
)
def test_stop_boundary_on_final_step_speed(final_speed, expected):
    future = arc(final_speed, 0.0)
    action = labels.label_meta_action(future, FULL, current_speed=final_speed)
    assert action.speed == expected


@pytest.mark.parametrize("current_speed", [2.0, 12.0])  # the 0.5 m/s floor / the 10 % regime
@pytest.mark.parametrize(
    ("sign", "margin", "expected"),
    [
        (1.0, 0.01, "accelerate"),
        (1.0, -0.01, "keep speed"),
        (-1.0, -0.01, "keep speed"),
        (-1.0, 0.01, "decelerate"),
    ],
)
def test_speed_change_boundaries(current_speed, sign, margin, expected):
    threshold = max(labels.SPEED_CHANGE_MIN_MPS, labels.SPEED_CHANGE_FRACTION * current_speed)
    assert labels.speed_change_threshold(current_speed) == pytest.approx(threshold)
    future_speed = current_speed + sign * (threshold + margin)
    action = labels.label_meta_action(arc(future_speed, 0.0), FULL, current_speed)
    assert action.speed == expected


def test_pulling_away_from_standstill_accelerates():
    # 0.4 m/s^2 from rest: mean speed over 3 s is 0.6 m/s, the last step ~1.1 m/s.
    times = 0.5 * np.arange(1, 7)
    future = np.stack([0.2 * times**2, np.zeros(6)], axis=1)
    assert labels.label_meta_action(future, FULL, 0.0) == MetaAction("accelerate", "go straight")


def test_braking_to_a_halt_from_speed_is_stop_not_decelerate():
    lengths = [4.0, 3.0, 2.0, 1.0, 0.0, 0.0]
    action = labels.label_meta_action(path_from_steps(lengths, [0] * 6), FULL, 9.0)
    assert action == MetaAction("stop", "go straight")


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize(
    ("end_heading", "turns"),
    [(labels.TURN_HEADING_DEG + 0.1, True), (labels.TURN_HEADING_DEG - 0.1, False)],
)
def test_turn_boundary_on_end_heading(sign, end_heading, turns):
    future = arc_ending_at(6.0, sign * end_heading)
    motion = labels.measure_future(future, FULL)
    assert motion.end_heading_deg == pytest.approx(sign * end_heading, abs=1e-6)
    expected = ("turn left" if sign > 0 else "turn right") if turns else "go straight"
    assert labels.label_meta_action(future, FULL, 6.0).direction == expected


def test_fast_gentle_curve_is_not_a_lane_change():
    future = arc(15.0, 15.0)  # 45 m of road bending 15 deg: ~5.9 m sideways at the end
    assert future[-1, 1] > 5.0
    assert labels.label_meta_action(future, FULL, 15.0) == MetaAction("keep speed", "go straight")


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize(
    ("offset", "changes"),
    [(labels.LANE_CHANGE_OFFSET_M + 0.01, True), (labels.LANE_CHANGE_OFFSET_M - 0.01, False)],
)
def test_lane_change_boundary_on_offset_beyond_the_arc(sign, offset, changes):
    # Shift sideways by `offset` over steps 2-4, then drive straight: end heading exactly 0.
    future = arc(6.0, 0.0)
    future[1:, 1] += sign * offset * np.array([1 / 3, 2 / 3, 1.0, 1.0, 1.0])
    motion = labels.measure_future(future, FULL)
    assert motion.end_heading_deg == 0.0
    assert motion.arc_residual == pytest.approx(sign * offset)
    expected = ("change lane left" if sign > 0 else "change lane right") if changes else None
    assert labels.label_meta_action(future, FULL, 6.0).direction == (expected or "go straight")


@pytest.mark.parametrize(
    ("travel", "expected"), [(labels.MIN_TRAVEL_M - 0.05, "go straight"), (1.2, "turn left")]
)
def test_direction_needs_minimum_travel(travel, expected):
    # Creeping forward along a left bend: only a car that moves has a direction.
    future = path_from_steps([travel / 3] * 3 + [0.0] * 3, [10, 30, 50, 50, 50, 50])
    assert labels.label_meta_action(future, FULL, 0.0).direction == expected


def test_halting_steps_do_not_set_the_end_heading():
    # A left turn whose last step is a 5 cm creep sideways: the heading is read on step 5.
    future = path_from_steps([4, 4, 4, 3, 2, 0.05], [5, 15, 25, 35, 45, -90])
    motion = labels.measure_future(future, FULL)
    assert motion.end_heading_deg == pytest.approx(45.0)
    assert labels.label_meta_action(future, FULL, 8.0) == MetaAction("stop", "turn left")


def test_truncated_future_reads_only_the_valid_prefix():
    future = arc(8.0, 60.0)
    mask = np.array([True, True, True, False, False, False])
    garbage = future.copy()
    garbage[3:] = np.nan
    motion = labels.measure_future(garbage, mask)
    assert motion.num_valid == 3
    assert motion.mean_speed == pytest.approx(np.linalg.norm(np.diff(
        np.vstack([[0, 0], future[:3]]), axis=0), axis=1).sum() / 1.5)  # fmt: skip
    assert motion.end_point == pytest.approx(tuple(future[2]))
    # 1.5 s of a 60 deg / 3 s arc: ~27.5 deg from the last chord.
    assert labels.label_meta_action(garbage, mask, 8.0) == MetaAction("keep speed", "turn left")


def test_mask_must_be_a_valid_prefix():
    future = arc(5.0, 0.0)
    with pytest.raises(DataError, match="prefix"):
        labels.label_meta_action(future, np.array([1, 0, 1, 0, 0, 0], bool), 5.0)
    with pytest.raises(DataError, match="no valid waypoint"):
        labels.label_meta_action(future, np.zeros(6, bool), 5.0)
    with pytest.raises(DataError, match=r"\[6, 2\]"):
        labels.label_meta_action(future[:4], FULL[:4], 5.0)
    bad = future.copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataError, match="non-finite"):
        labels.label_meta_action(bad, FULL, 5.0)
    with pytest.raises(DataError, match="current speed"):
        labels.label_meta_action(future, FULL, math.nan)


@pytest.mark.parametrize(
    ("lateral", "expected"),
    [
        (labels.COMMAND_LATERAL_M, "turn left"),
        (labels.COMMAND_LATERAL_M - 0.01, "go straight"),
        (-labels.COMMAND_LATERAL_M + 0.01, "go straight"),
        (-labels.COMMAND_LATERAL_M, "turn right"),
    ],
)
def test_driving_command_two_metre_rule(lateral, expected):
    future = arc(5.0, 0.0)
    future[-1, 1] = lateral
    assert labels.driving_command(future, FULL) == expected


def test_driving_command_uses_the_last_valid_point():
    future = arc(5.0, 0.0)
    future[1, 1] = -3.0  # the last valid point when only 2 steps exist
    future[-1, 1] = 3.0
    mask = np.array([True, True, False, False, False, False])
    assert labels.driving_command(future, mask) == "turn right"
    assert labels.driving_command(future, FULL) == "turn left"
    assert labels.driving_command(future, np.zeros(6, bool)) == "go straight"
