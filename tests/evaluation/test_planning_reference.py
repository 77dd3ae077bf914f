"""The vectorised core against a literal, loop-by-loop transcription of the reference behaviour.

The loop version follows the published procedure step by step: footprint corners -> grid-index
space -> cells whose integer index lies inside (boundary included) -> per step: (OmniDrive) heading
from the previous waypoint, offsets about the grid centre multiplied as a row vector by the
rotation of -heading and rounded -> add waypoint / resolution -> (ST-P3) subtract from the grid
size -> truncate -> clip -> any occupied cell.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from occvla_ros.evaluation.planning import agent_occupancy, convention, step_metrics
from occvla_ros.evaluation.rasterize import FutureBoxes

T = 6


def literal_hits(conv, waypoints: np.ndarray, occupancy: np.ndarray) -> list[bool]:
    res, bound, size = conv.grid.resolution, conv.grid.bound, conv.grid.size
    first_centre = -bound + res / 2
    length, width, ahead = (
        conv.footprint.length,
        conv.footprint.width,
        conv.footprint.forward_offset,
    )
    forward_range = (
        (ahead - length / 2 - first_centre) / res,
        (ahead + length / 2 - first_centre) / res,
    )
    lateral_range = ((-width / 2 - first_centre) / res, (width / 2 - first_centre) / res)
    cells = []  # (forward index, lateral index)
    for f in range(math.floor(forward_range[0]) - 1, math.ceil(forward_range[1]) + 2):
        for s in range(math.floor(lateral_range[0]) - 1, math.ceil(lateral_range[1]) + 2):
            if (
                forward_range[0] <= f <= forward_range[1]
                and lateral_range[0] <= s <= lateral_range[1]
            ):
                cells.append((f, s))
    hits = []
    previous = (0.0, 0.0)
    for t in range(len(waypoints)):
        x, y = float(waypoints[t, 0]), float(waypoints[t, 1])
        dx, dy = x - previous[0], y - previous[1]
        previous = (x, y)
        heading = math.atan2(dy, dx) if math.hypot(dx, dy) >= 1.0 else 0.0
        centre = bound / res - 0.5
        hit = False
        for f, s in cells:
            if conv.frame == "ego":
                ox, oy = float(f), float(s)  # x is forward in the ego frame
            else:
                ox, oy = float(s), float(f)  # y is forward in the LiDAR frame
            if conv.footprint.rotate_with_heading:
                a = -heading
                vx, vy = ox - centre, oy - centre
                ox = round(vx * math.cos(a) + vy * math.sin(a) + centre)
                oy = round(-vx * math.sin(a) + vy * math.cos(a) + centre)
            column = int(x / res + ox)
            row = int(size - (y / res + oy)) if conv.grid.flip_rows else int(y / res + oy)
            row, column = min(max(row, 0), size - 1), min(max(column, 0), size - 1)
            hit = hit or bool(occupancy[t, row, column])
        hits.append(hit)
    return hits


@pytest.mark.parametrize("name", ["stp3", "uniad", "omnidrive"])
def test_vectorised_core_equals_the_literal_procedure(name):
    conv = convention(name)
    rng = np.random.default_rng(7)
    checked_collisions = 0
    for _ in range(12):
        count = 40
        boxes = FutureBoxes(
            step=rng.integers(0, T, count),
            center=rng.uniform(-12, 12, (count, 2)),
            size=np.stack([rng.uniform(0.5, 2.5, count), rng.uniform(0.5, 6, count)], -1),
            yaw=rng.uniform(-3, 3, count),
            category=np.array(["vehicle.car"] * count, dtype=object),
            tracked=np.ones(count, bool),
            visibility=np.full(count, 4),
            frame_exists=np.ones(T, bool),
        )
        occupancy = agent_occupancy(conv, boxes, T)
        gt = np.cumsum(rng.normal(0, 1.5, (T, 2)), axis=0)
        prediction = gt + rng.normal(0, 1.0, (T, 2))
        _, collision = step_metrics(
            conv, prediction, gt, np.ones(T, bool), occupancy, frame_exists=np.ones(T, bool)
        )
        expected = np.array(literal_hits(conv, prediction, occupancy)) & ~np.array(
            literal_hits(conv, gt, occupancy)
        )
        np.testing.assert_array_equal(collision, expected)
        checked_collisions += int(expected.sum())
    assert checked_collisions > 0  # the random scenes do exercise collisions
