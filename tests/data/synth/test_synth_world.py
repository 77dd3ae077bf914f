"""The world's visible causes: what changes the ego's future is in its cameras (or its command).

Scenes are worlds of seed 0 (20 s) picked for what they contain; each test first checks that the
scene still holds it, so a change of the generator fails loudly instead of testing nothing.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from occvla_ros.data.labels import TURN_LEFT, TURN_RIGHT
from occvla_ros.data.synth import situation
from occvla_ros.data.synth.generate import _ego_to_global
from occvla_ros.data.synth.render import SceneRenderer
from occvla_ros.data.synth.rig import build_rig
from occvla_ros.data.synth.roads import INNER_LANE_M, OUTER_LANE_M
from occvla_ros.data.synth.world import (
    COMMAND_DISTANCE_M,
    EGO_CRUISE_MPS,
    EGO_FRONT_M,
    build_world,
)

RED_LIGHT_SCENE = 14  # waits at a red light before turning left
OBSTACLE_SCENES = (4, 8, 13)  # an obstacle blocks the ego's lane
TURN_SCENES = (6, 7, 10, 14)  # right, right, left, left


def world(index: int):
    return build_world(0, index, 20.0)


def red_pixels(image: np.ndarray) -> np.ndarray:
    """Saturated red (faces are shaded by their angle to the sun, so relative to the others)."""
    blue, green, red = (image[..., c].astype(int) for c in range(3))
    return (red > 80) & (red > 2 * green) & (red > 2 * blue)


def green_pixels(image: np.ndarray) -> np.ndarray:
    blue, green, red = (image[..., c].astype(int) for c in range(3))
    return (green > 60) & (green > 1.5 * red) & (green > 1.5 * blue)


def test_a_red_light_is_in_the_front_camera_and_the_ego_stops_before_its_line():
    scene = world(RED_LIGHT_SCENE)
    [(start, end, _)] = [h for h in scene.ego.holds if h[2] == "red light"]
    s_waiting = float(np.interp(start, scene.times, scene.ego.s)) + EGO_FRONT_M
    [light] = [
        c
        for c in scene.controls
        if c.kind == "light" and abs(c.intersection.s_stop_line - s_waiting) < 1.0
    ]
    line = light.intersection.s_stop_line
    times = scene.times
    # Waiting: standing, the front behind the line, until the light turns green.
    waiting = (times >= start) & (times <= end)
    assert end == pytest.approx(light.green_at, abs=0.06)
    assert (scene.ego.speed[waiting] < 0.1).all()
    red = times < light.green_at
    assert (scene.ego.s[red] + EGO_FRONT_M <= line + 0.2).all()
    assert scene.ego.s[-1] + EGO_FRONT_M > line + 5.0  # and goes on once it is green
    # The lamp is red in CAM_FRONT while the ego waits; the same instant with the light green
    # shows green there instead, and no other camera changes.
    t = (start + end) / 2
    rig = build_rig(384, 216, 90)
    pose = _ego_to_global(scene, t)
    as_red = SceneRenderer(scene, rig.cameras).render(t, pose)
    green_light = dataclasses.replace(light, green_at=0.0)
    scene.controls = [green_light if c is light else c for c in scene.controls]
    as_green = SceneRenderer(scene, rig.cameras).render(t, pose)
    lamp = red_pixels(as_red["CAM_FRONT"]) & ~red_pixels(as_green["CAM_FRONT"])
    assert lamp.sum() >= 20
    assert green_pixels(as_green["CAM_FRONT"])[lamp].mean() > 0.8
    for camera in ("CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"):
        np.testing.assert_array_equal(as_red[camera], as_green[camera])


def test_an_obstacle_in_the_lane_makes_the_ego_change_lanes_before_it():
    for index in OBSTACLE_SCENES:
        scene = world(index)
        [obstacle] = scene.obstacles
        assert obstacle.change_start is not None
        k = round(obstacle.change_start / (scene.times[1] - scene.times[0]))
        assert scene.ego.d[k] == pytest.approx(obstacle.lane)  # in the blocked lane until then
        # The change starts when the obstacle is about 50 m ahead: in view, not a coin flip.
        assert obstacle.s_begin - scene.ego.s[k] == pytest.approx(50.0, abs=1.0)
        beside = (scene.ego.s + EGO_FRONT_M >= obstacle.s_begin) & (scene.ego.s <= obstacle.s_end)
        assert beside.any()
        assert (np.abs(scene.ego.d[beside] - obstacle.lane) > 3.0).all()
        # The obstacle is a tracked object standing in that lane.
        blockers = [a for a in scene.agents if a.role in ("obstacle", "trafficcone")]
        assert blockers and all((a.speed == 0).all() for a in blockers)


def test_the_command_names_the_route_turn_before_it_and_the_ego_takes_it():
    for index in TURN_SCENES:
        scene = world(index)
        turning = [i for i in scene.route.intersections if i.turn != "straight"]
        intersection = next(i for i in turning if i.s_stop_line < scene.ego.s[-1])
        expected = TURN_LEFT if intersection.turn == "left" else TURN_RIGHT
        for t in np.arange(0.0, 20.0, 0.5):
            s = float(np.interp(t, scene.times, scene.ego.s))
            ahead = intersection.s_stop_line - (s + EGO_FRONT_M)
            command = situation.route_command(scene, t)
            if -EGO_FRONT_M < ahead <= COMMAND_DISTANCE_M and s < intersection.s_exit:
                assert command == expected, (index, t)
            elif ahead > COMMAND_DISTANCE_M + 1.0:
                assert command != expected or any(
                    i is not intersection and i.s_stop_line - s < COMMAND_DISTANCE_M + EGO_FRONT_M
                    for i in turning
                )
        # At the stop line the ego is in the lane the turn needs; through it, it turns that way.
        at_line = int(np.searchsorted(scene.ego.s, intersection.s_stop_line - EGO_FRONT_M))
        needed = INNER_LANE_M if intersection.turn == "left" else OUTER_LANE_M
        assert scene.ego.d[at_line] == pytest.approx(needed)
        out = np.searchsorted(scene.ego.s, intersection.s_exit)
        if out < len(scene.times):
            turned = scene.ego.yaw[out] - scene.ego.yaw[at_line]
            assert math.copysign(1.0, turned) == (1.0 if intersection.turn == "left" else -1.0)
            assert abs(turned) == pytest.approx(math.pi / 2, abs=0.2)


def test_no_hidden_speed_choice_the_ego_never_exceeds_its_one_cruise_speed():
    for index in range(8):
        scene = world(index)
        assert scene.ego.speed.max() <= EGO_CRUISE_MPS + 0.05
        # Every lane change has a cause: a commanded turn or an obstacle.
        causes = len([o for o in scene.obstacles if o.change_start is not None])
        causes += len([i for i in scene.route.intersections if i.turn != "straight"])
        assert len(scene.ego.lane_changes) <= causes
