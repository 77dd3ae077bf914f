"""What the synthetic world knows about a keyframe beyond its sensors: the route command, the
situation that decides its future, and the privileged world state the oracle baseline reads
(see :mod:`occvla_ros.data.world_annotations` for the definitions)."""

from __future__ import annotations

import numpy as np

from occvla_ros.data.labels import GO_STRAIGHT, TURN_LEFT, TURN_RIGHT
from occvla_ros.data.synth.world import (
    COMMAND_DISTANCE_M,
    EGO_FRONT_M,
    INNER_LANE_M,
    LANE_CHANGE_S,
    OBSTACLE_REACT_M,
    OUTER_LANE_M,
    STOP_SIGN_DWELL_S,
    World,
)
from occvla_ros.data.world_annotations import (
    CRUISE,
    FAR_M,
    LEAD_BRAKING,
    MAX_WAIT_S,
    OBSTACLE_LANE_CHANGE,
    STOP,
    TURN,
    KeyframeWorld,
)

HORIZON_S = 3.0
LEAD_RELEVANT_M = 40.0
_COMMANDS = {"left": TURN_LEFT, "right": TURN_RIGHT, "straight": GO_STRAIGHT}


def keyframe_world(world: World, t: float) -> KeyframeWorld:
    return KeyframeWorld(route_command(world, t), situation(world, t), world_state(world, t))


def _ego_s(world: World, t: float) -> float:
    return float(np.interp(t, world.times, world.ego.s))


def route_command(world: World, t: float) -> str:
    """The next intersection's turn from COMMAND_DISTANCE_M before its stop line (ego front)
    until the ego leaves it; "go straight" elsewhere."""
    ahead = world.route.intersection_ahead(_ego_s(world, t), COMMAND_DISTANCE_M + EGO_FRONT_M)
    return _COMMANDS[ahead.turn] if ahead is not None else GO_STRAIGHT


def situation(world: World, t: float) -> str:
    """The first that applies over [t, t + 3 s]: the ego stops or waits (red light, stop sign,
    yielding to a pedestrian); a braking lead within 40 m; a lane change for an obstacle; a turn
    (in or entering a turning intersection, or changing into its lane); else cruise."""
    end = t + HORIZON_S
    if any(start <= end and stop >= t for start, stop, _ in world.ego.holds):
        return STOP
    if world.lead_index is not None:
        lead = world.agents[world.lead_index]
        window = (world.times >= t) & (world.times <= end)
        gap = _lead_gap(world, t)
        if lead.braking is not None and lead.braking[window].any() and gap < LEAD_RELEVANT_M:
            return LEAD_BRAKING
    for obstacle in world.obstacles:
        start = obstacle.change_start
        if start is not None and start - 0.5 <= end and start + LANE_CHANGE_S >= t:
            return OBSTACLE_LANE_CHANGE
    s_now, s_end = _ego_s(world, t), _ego_s(world, end)
    for intersection in world.route.intersections:
        if intersection.turn != "straight" and (
            s_end >= intersection.s_stop_line - EGO_FRONT_M and s_now <= intersection.s_exit
        ):
            return TURN
    for start, _, _ in world.ego.lane_changes:
        if start <= end and start + LANE_CHANGE_S >= t and route_command(world, t) != GO_STRAIGHT:
            return TURN
    return CRUISE


def _lead_gap(world: World, t: float) -> float:
    """Ego front to the lead's tail along the road (FAR_M without a lead)."""
    if world.lead_index is None:
        return FAR_M
    lead = world.agents[world.lead_index]
    states = world.agent_states(t)
    x, y, yaw = world.ego_pose(t)
    dx = states["x"][world.lead_index] - x
    dy = states["y"][world.lead_index] - y
    along = np.cos(yaw) * dx + np.sin(yaw) * dy
    return float(min(FAR_M, along - lead.size[1] / 2 - EGO_FRONT_M))


def world_state(world: World, t: float) -> tuple[float, ...]:
    """The privileged features of world_annotations.STATE_FEATURES at time ``t``."""
    ego = world.ego
    s = _ego_s(world, t)
    front = s + EGO_FRONT_M
    lane_offset = float(np.interp(t, world.times, ego.d))
    lane = INNER_LANE_M if abs(lane_offset - INNER_LANE_M) < 1.75 else OUTER_LANE_M
    path = world.route.path
    heading_now = float(path.pose(np.array([s]))[1][0])
    changes = [
        float(path.pose(np.array([s + ahead]))[1][0]) - heading_now for ahead in (10, 20, 30, 40)
    ]

    # The next place to stop: a red light, a stop sign not yet served, a yield.
    stops = []  # (distance, wait, kind)
    for control in world.controls:
        distance = control.intersection.s_stop_line - front
        if distance < -1.0:
            continue
        if control.kind == "stop sign":
            served = [
                (start, stop)
                for start, stop, kind in ego.holds
                if kind == "stop sign"
                and start <= t
                and abs(_ego_s(world, start) + EGO_FRONT_M - control.intersection.s_stop_line) < 3.0
            ]
            if served and served[0][1] < t:
                continue
            waited = t - served[0][0] if served else 0.0
            stops.append((distance, max(0.0, STOP_SIGN_DWELL_S - waited), "stop sign"))
        elif control.red(t):
            stops.append((distance, control.green_at - t, "red light"))
    for start, stop, kind in ego.holds:
        if kind == "yield" and stop >= t:
            stops.append((_ego_s(world, start) - s, stop - max(t, start), "yield"))
    stop_distance, stop_wait, stop_kind = min(stops, default=(FAR_M, 0.0, ""))

    lead_gap, lead_speed, lead_accel, lead_braking = FAR_M, 0.0, 0.0, 0.0
    if world.lead_index is not None and world.agent_states(t)["active"][world.lead_index]:
        lead = world.agents[world.lead_index]
        lead_gap = _lead_gap(world, t)
        k = world._grid(t)[0]
        lead_speed = float(lead.speed[k])
        step = world.times[1] - world.times[0]
        lead_accel = float(lead.speed[min(k + 1, len(lead.speed) - 1)] - lead.speed[k]) / step
        lead_braking = float(lead.braking is not None and lead.braking[k])
        if lead_gap >= FAR_M:
            lead_gap, lead_speed, lead_accel = FAR_M, 0.0, 0.0

    obstacle_distance, obstacle_in_lane = FAR_M, 0.0
    needed = lane
    for obstacle in world.obstacles:
        if obstacle.s_end + 1.0 >= front - EGO_FRONT_M and obstacle.s_begin - front < FAR_M:
            obstacle_distance = min(FAR_M, max(0.0, obstacle.s_begin - front))
            obstacle_in_lane = float(abs(obstacle.lane - lane_offset) < 1.75)
            if (
                obstacle.s_begin - s <= OBSTACLE_REACT_M + 20.0
                and obstacle.change_start is not None
            ):
                needed = INNER_LANE_M + OUTER_LANE_M - obstacle.lane
    command = route_command(world, t)
    if command == TURN_LEFT:
        needed = INNER_LANE_M
    elif command == TURN_RIGHT:
        needed = OUTER_LANE_M
    return (
        lane_offset,
        needed - lane_offset,
        *changes,
        float(min(stop_distance, FAR_M)),
        float(min(stop_wait, MAX_WAIT_S)),
        float(stop_kind == "red light"),
        float(stop_kind == "stop sign"),
        lead_gap,
        lead_speed,
        lead_accel,
        lead_braking,
        float(obstacle_distance),
        obstacle_in_lane,
    )
