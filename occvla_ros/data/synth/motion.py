"""Longitudinal driving: the Intelligent Driver Model with a jerk limit, stop lines, a leader.

Agents move along a path coordinate ``s``; IDM gives smooth, collision-free speed profiles that
accelerate to a cruise speed, slow for curves, follow a leader and stop at stop lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ACCEL = 1.6  # m/s^2
COMFORT_DECEL = 2.2  # m/s^2
MAX_DECEL = 6.0  # m/s^2
MAX_JERK = 4.0  # m/s^3
HEADWAY_S = 1.4
MIN_GAP_M = 2.5
LATERAL_ACCEL = 2.2  # m/s^2 allowed in curves


@dataclass
class StopRule:
    """Stop with the front at ``s_line`` for ``dwell_s`` seconds, then go on; a red light
    (``green_at`` set) holds the car until that time instead and is gone from then on."""

    s_line: float
    dwell_s: float
    brake_decel: float = 1.3  # m/s^2: braking starts when this much deceleration is needed
    green_at: float | None = None  # s: when a red light turns green


@dataclass
class Leader:
    s: np.ndarray  # [T] centre of the leader on the same path
    half_length: float


@dataclass
class Drive:
    s: np.ndarray  # [T]
    speed: np.ndarray  # [T]
    accel: np.ndarray  # [T]
    holds: list[tuple[float, float, int]]  # (start time, end time, stop rule index)


def curve_speed_limit(curvature: np.ndarray) -> np.ndarray:
    return np.minimum(np.sqrt(LATERAL_ACCEL / np.maximum(np.abs(curvature), 1e-4)), 25.0)


def drive(
    times: np.ndarray,
    *,
    s_start: float,
    speed_start: float,
    cruise: np.ndarray,
    limit_s: np.ndarray,
    limit_speed: np.ndarray,
    front_overhang: float,
    stops: list[StopRule],
    leader: Leader | None = None,
) -> Drive:
    """Integrate IDM over ``times`` (uniform step).

    ``cruise`` [T] is the desired speed; ``limit_speed`` [K] at ``limit_s`` [K] the speed allowed
    by path curvature (looked ahead at comfortable deceleration).
    """
    dt = float(times[1] - times[0])
    count = len(times)
    s, v, a = np.zeros(count), np.zeros(count), np.zeros(count)
    s[0], v[0] = s_start, speed_start
    hold_started: dict[int, float] = {}
    released: set[int] = set()
    holds: list[tuple[float, float, int]] = []
    accel = 0.0
    for k in range(count - 1):
        position, speed = s[k], v[k]
        ahead = (limit_s >= position) & (limit_s <= position + 3.0 * speed + 40.0)
        desired = cruise[k]
        if ahead.any():
            reachable = np.sqrt(
                limit_speed[ahead] ** 2 + 2 * COMFORT_DECEL * (limit_s[ahead] - position)
            )
            desired = min(desired, float(reachable.min()))
        desired = max(desired, 0.1)
        # Obstacles: the leader's tail and every stop line not yet released.
        gaps: list[tuple[float, float]] = []  # (gap to the obstacle [m], its speed [m/s])
        if leader is not None:
            leader_gap = leader.s[k] - leader.half_length - position - front_overhang
            gaps.append((leader_gap, _leader_speed(leader, k, dt)))
        # Stop targets: distances [m] to where the front must come to rest.
        targets: list[tuple[float, float]] = []  # (distance, braking deceleration)
        for index, rule in enumerate(stops):
            if index in released:
                continue
            to_line = rule.s_line - position - front_overhang
            if to_line < -1.0:
                released.add(index)  # passed it (started beyond it)
                continue
            green = rule.green_at is not None and times[k] >= rule.green_at
            if green and index not in hold_started:
                released.add(index)
                continue
            if speed < 0.05 and to_line < 1.0:
                started = hold_started.setdefault(index, float(times[k]))
                if green or (rule.green_at is None and times[k] - started >= rule.dwell_s):
                    released.add(index)
                    holds.append((started, float(times[k]), index))
                    continue
            targets.append((to_line, rule.brake_decel))
        idm = MAX_ACCEL * (1.0 - (speed / desired) ** 4)
        for gap, obstacle_speed in gaps:
            if obstacle_speed < 0.3:  # a standing leader is a stop target MIN_GAP_M behind it
                targets.append((gap - MIN_GAP_M, COMFORT_DECEL))
                continue
            closing = speed - obstacle_speed
            wanted = MIN_GAP_M + max(
                0.0,
                speed * HEADWAY_S + speed * closing / (2 * np.sqrt(MAX_ACCEL * COMFORT_DECEL)),
            )
            idm -= MAX_ACCEL * (wanted / max(gap, 0.1)) ** 2
        for distance, brake_decel in targets:
            idm = min(idm, _stopping_accel(speed, distance, brake_decel))
        target = float(np.clip(idm, -MAX_DECEL, MAX_ACCEL))
        if target > accel - 2.5:  # jerk-limited unless an emergency stop is needed
            target = float(np.clip(target, accel - MAX_JERK * dt, accel + MAX_JERK * dt))
        accel = target
        new_speed = max(0.0, speed + accel * dt)
        if new_speed == 0.0:
            accel = max(accel, -speed / dt)
        s[k + 1] = position + 0.5 * (speed + new_speed) * dt
        v[k + 1], a[k] = new_speed, accel
    a[-1] = a[-2]
    for index, started in hold_started.items():
        if index not in released:
            holds.append((started, float(times[-1]), index))
    return Drive(s, v, a, holds)


def _stopping_accel(speed: float, distance: float, brake_decel: float) -> float:
    """Acceleration that brings the car to rest ``distance`` metres ahead: IDM's own approach
    to a standing obstacle creeps for seconds, a real driver brakes at a steady rate.

    Braking starts once the constant deceleration needed reaches ``brake_decel``; a car
    standing short of the target creeps up to it.
    """
    if distance <= 0.2:
        return -MAX_DECEL if speed > 0.0 else 0.0
    needed = speed * speed / (2.0 * distance)
    if needed >= brake_decel:
        return -needed
    if speed < 1.0 and distance > 1.0:
        return MAX_ACCEL  # creep forward
    return float("inf")


def _leader_speed(leader: Leader, k: int, dt: float) -> float:
    if k + 1 < len(leader.s):
        return float(leader.s[k + 1] - leader.s[k]) / dt
    return 0.0


def smooth_targets(targets: np.ndarray, dt: float, rate: float) -> np.ndarray:
    """``targets`` followed at no more than ``rate`` m/s^2, so IDM accelerates smoothly."""
    smooth = np.empty_like(targets)
    smooth[0] = targets[0]
    for k in range(1, len(targets)):
        smooth[k] = smooth[k - 1] + np.clip(targets[k] - smooth[k - 1], -rate * dt, rate * dt)
    return smooth
