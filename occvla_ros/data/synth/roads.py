"""Road geometry: centre-line paths, the scene's route with curves and intersections, ribbons.

Traffic drives on the right. A road is a ribbon around a centre line: two lanes each way
(3.5 m, centres at +-1.75 and +-5.25 m), a 2.5 m parking lane each side, a 3 m sidewalk beyond.
Lateral offsets ``d`` are to the left of the path's heading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

PATH_STEP_M = 0.5
LANE_WIDTH_M = 3.5
INNER_LANE_M = -1.75  # the ego direction's lane next to the centre line (left turns from here)
OUTER_LANE_M = -5.25  # the ego direction's kerb-side lane (right turns from here)
EDGE_LINE_M = 7.0
PARKING_LANE_M = 8.25
ROAD_HALF_WIDTH_M = 9.5
SIDEWALK_WIDTH_M = 3.0
TURN_RADIUS_M = 15.0  # centre-line radius through an intersection
BRANCH_LENGTH_M = 90.0
# Half size of the box an intersection occupies around its centre (road + sidewalk).
INTERSECTION_HALF_M = ROAD_HALF_WIDTH_M + SIDEWALK_WIDTH_M


class Path:
    """A centre line sampled every PATH_STEP_M metres; poses beyond its ends go straight on."""

    def __init__(self, xy: np.ndarray, heading: np.ndarray) -> None:
        self.xy = np.asarray(xy, dtype=np.float64)  # [N, 2]
        self.heading = np.unwrap(np.asarray(heading, dtype=np.float64))  # [N]
        self.length = PATH_STEP_M * (len(self.xy) - 1)
        self.curvature = np.gradient(self.heading, PATH_STEP_M)  # [N]

    @classmethod
    def from_segments(
        cls, start: np.ndarray, heading: float, segments: list[tuple[float, float]]
    ) -> Path:
        """Integrate (length, curvature) segments from ``start`` with initial ``heading``."""
        curvatures = [
            np.full(max(1, round(length / PATH_STEP_M)), kappa) for length, kappa in segments
        ]
        kappa = np.concatenate(curvatures)
        headings = heading + np.concatenate([[0.0], np.cumsum(kappa * PATH_STEP_M)])
        mid = 0.5 * (headings[1:] + headings[:-1])
        steps = PATH_STEP_M * np.stack([np.cos(mid), np.sin(mid)], axis=-1)
        xy = np.asarray(start, dtype=np.float64) + np.concatenate(
            [[[0.0, 0.0]], np.cumsum(steps, 0)]
        )
        return cls(xy, headings)

    @classmethod
    def straight(cls, start: np.ndarray, heading: float, length: float) -> Path:
        return cls.from_segments(start, heading, [(length, 0.0)])

    def pose(self, s: np.ndarray | float, d: np.ndarray | float = 0.0):
        """(xy [..., 2], heading [...], curvature [...]) at arc length ``s``, offset ``d`` left."""
        s = np.asarray(s, dtype=np.float64)
        position = np.clip(s / PATH_STEP_M, 0.0, len(self.xy) - 1.0)
        low = np.minimum(np.floor(position).astype(np.int64), len(self.xy) - 2)
        frac = (position - low)[..., None]
        xy = self.xy[low] * (1 - frac) + self.xy[low + 1] * frac
        heading = self.heading[low] * (1 - frac[..., 0]) + self.heading[low + 1] * frac[..., 0]
        overshoot = s - np.clip(s, 0.0, self.length)  # straight extrapolation beyond the ends
        direction = np.stack([np.cos(heading), np.sin(heading)], axis=-1)
        normal = np.stack([-np.sin(heading), np.cos(heading)], axis=-1)
        xy = xy + direction * overshoot[..., None] + normal * np.asarray(d)[..., None]
        curvature = np.where(overshoot == 0.0, np.interp(s, self._s, self.curvature), 0.0)
        return xy, heading, curvature

    @property
    def _s(self) -> np.ndarray:
        return PATH_STEP_M * np.arange(len(self.xy))


@dataclass
class Ribbon:
    """A road along ``path``; lane markings are left out on the ``marking_gaps`` s-intervals."""

    path: Path
    marking_gaps: list[tuple[float, float]] = field(default_factory=list)
    stop_lines: list[float] = field(default_factory=list)  # s of stop lines (ego direction)


@dataclass(frozen=True)
class Intersection:
    centre: np.ndarray  # [2] global
    approach_heading: float
    turn: str  # "left" | "right" | "straight"
    s_stop_line: float  # route s of the stop line before the intersection
    s_exit: float  # route s where the route leaves the intersection
    crossing: Path  # straight path through the centre, perpendicular to the approach


@dataclass
class Route:
    ribbon: Ribbon
    intersections: list[Intersection]
    branches: list[Ribbon]

    @property
    def path(self) -> Path:
        return self.ribbon.path

    def intersection_ahead(self, s: float, within_m: float) -> Intersection | None:
        for intersection in self.intersections:
            if intersection.s_exit > s and intersection.s_stop_line - s < within_m:
                return intersection
        return None

    def in_intersection_zone(self, s: np.ndarray, before_m: float, after_m: float) -> np.ndarray:
        inside = np.zeros(np.shape(s), dtype=bool)
        for intersection in self.intersections:
            inside |= (s > intersection.s_stop_line - before_m) & (
                s < intersection.s_exit + after_m
            )
        return inside


def build_route(rng: np.random.Generator, min_length: float, first_gap: float) -> Route:
    """A random route: straights, gentle curves, intersections (left, right or straight on)."""
    segments: list[tuple[float, float]] = [(first_gap, 0.0)]
    planned: list[tuple[float, str]] = []  # (s where the intersection's turn starts, turn)
    length = first_gap
    net_heading = 0.0
    while length < min_length:
        kind = rng.choice(["straight", "curve", "intersection"], p=[0.15, 0.3, 0.55])
        if kind == "straight":
            piece = [(float(rng.uniform(30.0, 80.0)), 0.0)]
        elif kind == "curve":
            sign = _turn_sign(rng, net_heading)
            angle = math.radians(rng.uniform(15.0, 40.0))
            radius = float(rng.uniform(70.0, 160.0))
            piece = [(radius * angle, sign / radius), (20.0, 0.0)]
            net_heading += sign * angle
        else:
            turn = str(rng.choice(["left", "right", "straight"], p=[0.4, 0.4, 0.2]))
            if turn != "straight" and abs(net_heading + _SIGN[turn] * math.pi / 2) > 1.8:
                turn = "straight"
            segments.append((25.0, 0.0))  # an approach long enough for markings and a stop
            length += 25.0
            planned.append((length, turn))
            if turn == "straight":
                piece = [(2 * TURN_RADIUS_M, 0.0)]
            else:
                piece = [(TURN_RADIUS_M * math.pi / 2, _SIGN[turn] / TURN_RADIUS_M)]
                net_heading += _SIGN[turn] * math.pi / 2
            piece.append((25.0, 0.0))
        segments.extend(piece)
        length += sum(p[0] for p in piece)
    path = Path.from_segments(np.zeros(2), float(rng.uniform(-math.pi, math.pi)), segments)
    ribbon = Ribbon(path)
    intersections, branches = [], []
    for s_turn, turn in planned:
        intersection, new_branches = _intersection(path, s_turn, turn)
        intersections.append(intersection)
        branches.extend(new_branches)
        ribbon.marking_gaps.append((intersection.s_stop_line, intersection.s_exit))
        ribbon.stop_lines.append(intersection.s_stop_line)
    return Route(ribbon, intersections, branches)


_SIGN = {"left": 1.0, "right": -1.0, "straight": 0.0}


def _turn_sign(rng: np.random.Generator, net_heading: float) -> float:
    """Random curve direction, biased back towards the route's initial heading."""
    if abs(net_heading) > 1.0:
        return -math.copysign(1.0, net_heading)
    return float(rng.choice([-1.0, 1.0]))


def _intersection(path: Path, s_turn: float, turn: str) -> tuple[Intersection, list[Ribbon]]:
    (start,), (heading,), _ = path.pose(np.array([s_turn]))
    forward = np.array([math.cos(heading), math.sin(heading)])
    left = np.array([-forward[1], forward[0]])
    centre = start + TURN_RADIUS_M * forward
    cross_start = centre - BRANCH_LENGTH_M * left
    crossing = Path.straight(cross_start, heading + math.pi / 2, 2 * BRANCH_LENGTH_M)
    gap = TURN_RADIUS_M + INTERSECTION_HALF_M
    if turn == "straight":
        s_exit = s_turn + 2 * TURN_RADIUS_M
        middle = (BRANCH_LENGTH_M - INTERSECTION_HALF_M, BRANCH_LENGTH_M + INTERSECTION_HALF_M)
        branches = [Ribbon(crossing, [middle])]
    else:
        s_exit = s_turn + TURN_RADIUS_M * math.pi / 2
        exit_direction = left if turn == "left" else -left
        turn_end = centre + TURN_RADIUS_M * exit_direction
        exit_heading = math.atan2(exit_direction[1], exit_direction[0])
        length = TURN_RADIUS_M + BRANCH_LENGTH_M
        branches = [
            # The approach road goes on straight past the turn ...
            Ribbon(Path.straight(start, heading, length), [(0.0, gap)]),
            # ... and the crossing road goes on to the side the route does not take.
            Ribbon(Path.straight(turn_end, exit_heading + math.pi, length), [(0.0, gap)]),
        ]
    intersection = Intersection(
        centre=centre,
        approach_heading=heading,
        turn=turn,
        s_stop_line=s_turn - 0.5,
        s_exit=s_exit,
        crossing=crossing,
    )
    return intersection, branches
