"""Labels derived from the ground-truth future: the meta-action and the driving command.

Both read the future ego trajectory of a keyframe: ``NUM_WAYPOINTS`` (x, y) waypoints 0.5 s apart
in the keyframe's ego frame (x forward, y left) and a validity mask. Near the end of a scene the
future is truncated: the valid waypoints are a prefix and every rule below reads only that prefix
(speeds are averaged over the valid duration, the end point is the last valid waypoint).

Meta-action = speed action + direction action (words of the default
:class:`~occvla_ros.meta_action.MetaActionVocabulary`).

Speed, from the speed of each future step (step length / 0.5 s, the first step starting at the
origin) and the current speed:

1. ``stop`` when the last valid step is slower than ``STOP_SPEED_MPS``: the ego stands still or
   comes to a halt within the horizon (a stop is the decision that matters, however fast the ego
   drives now).
2. ``accelerate`` / ``decelerate`` when the mean future speed (path length / valid duration)
   exceeds / falls below the current speed by more than ``max(SPEED_CHANGE_MIN_MPS,
   SPEED_CHANGE_FRACTION * current speed)``: 0.5 m/s up to 5 m/s, 10 % above. Over the full 3 s a
   constant acceleration ``a`` changes the mean speed by ``1.5 s * a``: a car pulling away from
   standstill at 0.33 m/s^2 accelerates, at 12 m/s it takes 0.8 m/s^2. A relative threshold
   because a speed change is felt relative to the speed; the floor keeps noise at a crawl out.
3. ``keep speed`` otherwise.

Direction, from the end heading (direction of the last valid step that is at least
``HEADING_MIN_STEP_M`` long, so a halt does not make the heading noisy) and the end point:

1. ``go straight`` when the ego moves less than ``MIN_TRAVEL_M`` in total: a standing car has no
   direction.
2. ``turn left`` / ``turn right`` when the end heading exceeds +/- ``TURN_HEADING_DEG`` (20 deg,
   the OmniDrive threshold).
3. ``change lane left`` / ``right`` when the end point lies more than ``LANE_CHANGE_OFFSET_M`` to
   the side of where a circular arc with the same end heading would end (``chord * sin(heading /
   2)``). Subtracting the arc keeps fast, gentle curves (45 m of road bending 15 deg moves the car
   ~5.9 m sideways) from reading as lane changes, which GPT-Driver's plain lateral-offset rule
   does. 1.75 m is half a 3.5 m lane: the car's centre has crossed into the next lane. A lane
   change still under way at the horizon (the car still angled) looks like an arc and is labelled
   by its heading; without a map the two cannot be told apart.
4. ``go straight`` otherwise.

Driving command (``turn left`` / ``turn right`` / ``go straight``): the +/- ``COMMAND_LATERAL_M``
(2 m) rule of UniAD/VAD on the lateral coordinate of the end point. It is FUTURE-DERIVED: it leaks
the ground-truth lateral intent, so a model given it as input is not comparable with one that is
not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from occvla_ros.constants import NUM_WAYPOINTS, WAYPOINT_DT_S
from occvla_ros.errors import DataError
from occvla_ros.meta_action import MetaAction

STOP_SPEED_MPS = 0.5
SPEED_CHANGE_MIN_MPS = 0.5
SPEED_CHANGE_FRACTION = 0.1
MIN_TRAVEL_M = 1.0
HEADING_MIN_STEP_M = 0.25
TURN_HEADING_DEG = 20.0
LANE_CHANGE_OFFSET_M = 1.75
COMMAND_LATERAL_M = 2.0

STOP, DECELERATE, KEEP_SPEED, ACCELERATE = "stop", "decelerate", "keep speed", "accelerate"
GO_STRAIGHT, TURN_LEFT, TURN_RIGHT = "go straight", "turn left", "turn right"
CHANGE_LANE_LEFT, CHANGE_LANE_RIGHT = "change lane left", "change lane right"


@dataclass(frozen=True)
class FutureMotion:
    """What the rules measure on a (possibly truncated) future; see the module docstring."""

    num_valid: int
    final_step_speed: float  # m/s
    mean_speed: float  # m/s, path length / valid duration
    travel: float  # m, path length
    end_heading_deg: float  # + left
    end_point: tuple[float, float]  # ego frame
    arc_residual: float  # m, lateral offset of the end point beyond a same-heading arc, + left


def _valid_prefix(future_xy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    future_xy = np.asarray(future_xy, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if future_xy.shape != (NUM_WAYPOINTS, 2) or mask.shape != (NUM_WAYPOINTS,):
        raise DataError(
            f"future trajectory must be [{NUM_WAYPOINTS}, 2] with a [{NUM_WAYPOINTS}] mask, got "
            f"{future_xy.shape} and {mask.shape}"
        )
    num_valid = int(mask.sum())
    if not mask[:num_valid].all():
        raise DataError(f"future mask must be a prefix of valid steps, got {mask.tolist()}")
    prefix = future_xy[:num_valid]
    if not np.isfinite(prefix).all():
        raise DataError(f"future trajectory has non-finite valid waypoints: {prefix.tolist()}")
    return prefix


def measure_future(future_xy: np.ndarray, mask: np.ndarray) -> FutureMotion:
    """Measure the valid prefix of a future trajectory [6, 2] (needs >= 1 valid waypoint)."""
    prefix = _valid_prefix(future_xy, mask)
    if len(prefix) == 0:
        raise DataError("cannot label a future with no valid waypoint")
    path = np.concatenate([np.zeros((1, 2)), prefix])  # [n + 1, 2], starts at the ego
    steps = np.diff(path, axis=0)  # [n, 2]
    step_lengths = np.linalg.norm(steps, axis=1)
    travel = float(step_lengths.sum())
    long_steps = np.flatnonzero(step_lengths >= HEADING_MIN_STEP_M)
    end_heading = 0.0
    if len(long_steps):
        dx, dy = steps[long_steps[-1]]
        end_heading = math.atan2(dy, dx)
    end_x, end_y = (float(v) for v in prefix[-1])
    chord = math.hypot(end_x, end_y)
    return FutureMotion(
        num_valid=len(prefix),
        final_step_speed=float(step_lengths[-1] / WAYPOINT_DT_S),
        mean_speed=travel / (len(prefix) * WAYPOINT_DT_S),
        travel=travel,
        end_heading_deg=math.degrees(end_heading),
        end_point=(end_x, end_y),
        arc_residual=end_y - chord * math.sin(end_heading / 2.0),
    )


def speed_change_threshold(current_speed: float) -> float:
    """Mean-speed change [m/s] beyond which the ego accelerates / decelerates."""
    return max(SPEED_CHANGE_MIN_MPS, SPEED_CHANGE_FRACTION * abs(current_speed))


def speed_action(motion: FutureMotion, current_speed: float) -> str:
    if not math.isfinite(current_speed):
        raise DataError(f"current speed must be finite, got {current_speed}")
    if motion.final_step_speed < STOP_SPEED_MPS:
        return STOP
    change = motion.mean_speed - current_speed
    threshold = speed_change_threshold(current_speed)
    if change > threshold:
        return ACCELERATE
    if change < -threshold:
        return DECELERATE
    return KEEP_SPEED


def direction_action(motion: FutureMotion) -> str:
    if motion.travel < MIN_TRAVEL_M:
        return GO_STRAIGHT
    if motion.end_heading_deg > TURN_HEADING_DEG:
        return TURN_LEFT
    if motion.end_heading_deg < -TURN_HEADING_DEG:
        return TURN_RIGHT
    if motion.arc_residual > LANE_CHANGE_OFFSET_M:
        return CHANGE_LANE_LEFT
    if motion.arc_residual < -LANE_CHANGE_OFFSET_M:
        return CHANGE_LANE_RIGHT
    return GO_STRAIGHT


def label_meta_action(future_xy: np.ndarray, mask: np.ndarray, current_speed: float) -> MetaAction:
    """Meta-action of a ground-truth future [6, 2] (ego frame) with mask [6]; see module rules.

    Raises :class:`DataError` when no waypoint is valid (the last keyframe of a scene).
    """
    motion = measure_future(future_xy, mask)
    return MetaAction(speed_action(motion, current_speed), direction_action(motion))


def driving_command(future_xy: np.ndarray, mask: np.ndarray) -> str:
    """FUTURE-DERIVED driving command by the +/-2 m rule on the last valid waypoint.

    ``turn left`` when its lateral coordinate is >= 2 m, ``turn right`` when <= -2 m, else ``go
    straight`` (also when no waypoint is valid).
    """
    prefix = _valid_prefix(future_xy, mask)
    if len(prefix) == 0:
        return GO_STRAIGHT
    lateral = float(prefix[-1, 1])
    if lateral >= COMMAND_LATERAL_M:
        return TURN_LEFT
    if lateral <= -COMMAND_LATERAL_M:
        return TURN_RIGHT
    return GO_STRAIGHT
