"""The procedural world of one scene: roads, static scenery, traffic, pedestrians and the ego.

Everything is built from one seeded random generator, before any sensor is simulated, so every
sensor (cameras, LIDAR_TOP, occupancy, annotations, QA) observes exactly the same world. Motion is
precomputed on a 20 Hz grid (``SIM_DT_S``) and interpolated at sensor timestamps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from occvla_ros.constants import OCC_CLASS_ID
from occvla_ros.data.synth import motion
from occvla_ros.data.synth.roads import (
    INNER_LANE_M,
    OUTER_LANE_M,
    PARKING_LANE_M,
    ROAD_HALF_WIDTH_M,
    SIDEWALK_WIDTH_M,
    TURN_RADIUS_M,
    Intersection,
    Path,
    Ribbon,
    Route,
    build_route,
)

SIM_DT_S = 0.05
FUTURE_MARGIN_S = 4.0  # the world runs on past the scene so the 3 s planning future exists
LANE_CHANGE_S = 3.0
EGO_FRONT_M = 3.6  # ego origin (rear axle) to front bumper
EGO_CRUISE_MPS = 11.0  # one speed limit everywhere: the ego's speed is never a hidden choice
# The route command names the next intersection's turn from this far before its stop line; a
# lane change the turn needs starts then.
COMMAND_DISTANCE_M = 50.0
OBSTACLE_REACT_M = 50.0  # the ego starts changing lanes this far before a blocking obstacle
STOP_SIGN_DWELL_S = 2.0
RED = (40, 40, 235)  # BGR
GREEN = (90, 215, 60)
RASTER_RESOLUTION_M = 0.25
SIDEWALK_CENTRE_M = ROAD_HALF_WIDTH_M + SIDEWALK_WIDTH_M / 2

# Ground colours (BGR) and the Occ3D class each ground layer carries.
TERRAIN_COLOR = (70, 125, 105)
SIDEWALK_COLOR = (160, 160, 165)
ROAD_COLOR = (82, 80, 80)
WHITE_PAINT = (225, 228, 228)
YELLOW_PAINT = (40, 185, 225)


@dataclass
class BoxSet:
    """Oriented boxes: centre [M, 3], half extents along their own x (length), y, z [M, 3]."""

    centers: np.ndarray
    half: np.ndarray
    yaw: np.ndarray  # [M]
    colors: np.ndarray  # [M, 3] BGR
    occ: np.ndarray  # [M] Occ3D class
    owner: np.ndarray  # [M] agent index, -1 for static scenery

    @classmethod
    def empty(cls) -> BoxSet:
        return cls(
            np.zeros((0, 3)),
            np.zeros((0, 3)),
            np.zeros(0),
            np.zeros((0, 3)),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )

    @classmethod
    def concat(cls, sets: list[BoxSet]) -> BoxSet:
        return cls(*(np.concatenate([getattr(s, f) for s in sets]) for f in _BOX_FIELDS))

    def __len__(self) -> int:
        return len(self.yaw)

    def select(self, mask: np.ndarray) -> BoxSet:
        return BoxSet(*(getattr(self, f)[mask] for f in _BOX_FIELDS))

    def rotations(self) -> np.ndarray:
        """Box-to-frame rotations [M, 3, 3] (yaw about z)."""
        cos, sin = np.cos(self.yaw), np.sin(self.yaw)
        rotation = np.zeros((len(self), 3, 3))
        rotation[:, 0, 0], rotation[:, 0, 1] = cos, -sin
        rotation[:, 1, 0], rotation[:, 1, 1] = sin, cos
        rotation[:, 2, 2] = 1.0
        return rotation

    def corners(self) -> np.ndarray:
        """[M, 8, 3]; corner 4*ix + 2*iy + iz is at sign (ix, iy, iz) in {-1, +1}."""
        local = self.half[:, None, :] * _CORNER_SIGNS[None]  # [M, 8, 3]
        return np.einsum("mij,mkj->mki", self.rotations(), local) + self.centers[:, None, :]

    def transformed(self, transform: np.ndarray) -> BoxSet:
        """The boxes in another frame related by a rotation about z (``transform`` 4x4)."""
        centers = self.centers @ transform[:3, :3].T + transform[:3, 3]
        yaw = self.yaw + math.atan2(transform[1, 0], transform[0, 0])
        return BoxSet(centers, self.half, yaw, self.colors, self.occ, self.owner)


_BOX_FIELDS = ("centers", "half", "yaw", "colors", "occ", "owner")
_CORNER_SIGNS = np.array(
    [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
)


@dataclass(frozen=True)
class Part:
    """A box of an agent's body, in the agent frame (origin on the ground under its centre)."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    color: tuple[float, float, float]
    lit_color: tuple[float, float, float] | None = None  # a brake light's colour while braking


@dataclass
class Agent:
    """A tracked object: one nuScenes instance. Arrays are on the world's time grid."""

    category: str  # nuScenes category name
    occ_class: int
    size: tuple[float, float, float]  # nuScenes (width, length, height)
    parts: list[Part]
    role: str  # lead | oncoming | cross | parked | obstacle | pedestrian | cone | barrier
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray
    active: np.ndarray  # bool: present in the world at that time
    braking: np.ndarray | None = None  # bool [T]: brake lights on

    @property
    def is_vehicle(self) -> bool:
        return self.category.startswith("vehicle.")


@dataclass
class GroundStrip:
    """A flat band of the ground between two edge polylines [N, 2], drawn in ``layer`` order."""

    layer: int
    color: tuple[int, int, int]
    left: np.ndarray
    right: np.ndarray


@dataclass
class EgoMotion:
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray  # along the path [m/s]
    accel: np.ndarray
    s: np.ndarray  # route arc length
    d: np.ndarray  # lateral offset from the route centre line
    lane_changes: list[tuple[float, float, float]]  # (start time, from d, to d)
    holds: list[tuple[float, float, str]]  # (start, end, "red light" | "stop sign" | "yield")


@dataclass(frozen=True)
class TrafficControl:
    """What governs the ego's approach to an intersection: a traffic light, red until
    ``green_at`` (None: green throughout), or a stop sign."""

    kind: str  # "light" | "stop sign"
    intersection: Intersection
    green_at: float | None = None

    def red(self, t: float) -> bool:
        return self.kind == "light" and self.green_at is not None and t < self.green_at


@dataclass(frozen=True)
class Obstacle:
    """Something standing in one of the ego direction's lanes between route positions
    ``s_begin`` and ``s_end``; ``change_start`` is when the ego starts changing lanes for it
    (None when it is in the other lane)."""

    s_begin: float
    s_end: float
    lane: float
    change_start: float | None


@dataclass
class World:
    times: np.ndarray  # [T] simulation grid
    route: Route
    ego: EgoMotion
    agents: list[Agent]
    static_boxes: BoxSet
    strips: list[GroundStrip]
    dashes: dict[tuple[int, int, int], np.ndarray]  # colour -> quads [K, 4, 2]
    raster: np.ndarray  # [H, W] uint8 Occ3D ground classes
    raster_origin: np.ndarray  # [2] global xy of raster pixel (0, 0)
    lead_index: int | None
    controls: list[TrafficControl]
    obstacles: list[Obstacle]

    def _grid(self, t: float) -> tuple[int, float]:
        position = min(max(t / SIM_DT_S, 0.0), len(self.times) - 1.000001)
        low = int(position)
        return low, position - low

    def ego_pose(self, t: float) -> tuple[float, float, float]:
        """Global (x, y, yaw) of the ego at time ``t`` seconds after the scene start."""
        k, w = self._grid(t)
        ego = self.ego
        return tuple(float(a[k] * (1 - w) + a[k + 1] * w) for a in (ego.x, ego.y, ego.yaw))

    def ego_speed(self, t: float) -> float:
        k, w = self._grid(t)
        return float(self.ego.speed[k] * (1 - w) + self.ego.speed[k + 1] * w)

    def agent_states(self, t: float) -> dict[str, np.ndarray]:
        """x, y, yaw, speed [A] and active [A] of every agent at time ``t``."""
        k, w = self._grid(t)
        states = {
            name: np.array(
                [getattr(a, name)[k] * (1 - w) + getattr(a, name)[k + 1] * w for a in self.agents]
            )
            for name in ("x", "y", "yaw", "speed")
        }
        states["active"] = np.array([bool(a.active[k]) for a in self.agents], dtype=bool)
        return states

    def agent_boxes(self, t: float) -> BoxSet:
        """The body parts of every active agent at time ``t`` (global frame)."""
        states = self.agent_states(t)
        sets = []
        for index, agent in enumerate(self.agents):
            if not states["active"][index]:
                continue
            cos, sin = math.cos(states["yaw"][index]), math.sin(states["yaw"][index])
            local = np.array([p.center for p in agent.parts])
            centers = np.stack(
                [
                    states["x"][index] + cos * local[:, 0] - sin * local[:, 1],
                    states["y"][index] + sin * local[:, 0] + cos * local[:, 1],
                    local[:, 2],
                ],
                axis=-1,
            )
            count = len(agent.parts)
            lit = agent.braking is not None and bool(agent.braking[self._grid(t)[0]])
            colors = [p.lit_color if lit and p.lit_color else p.color for p in agent.parts]
            sets.append(
                BoxSet(
                    centers,
                    np.array([p.half for p in agent.parts]),
                    np.full(count, states["yaw"][index]),
                    np.array(colors, dtype=np.float64),
                    np.full(count, agent.occ_class),
                    np.full(count, index),
                )
            )
        sets.append(self.signal_lamps(t))
        return BoxSet.concat(sets)

    def signal_lamps(self, t: float) -> BoxSet:
        """The traffic lights' lamp heads, red or green at time ``t`` (scenery: owner -1)."""
        lights = [c for c in self.controls if c.kind == "light"]
        if not lights:
            return BoxSet.empty()
        centers = np.array([_lamp_centre(c.intersection) for c in lights])
        return BoxSet(
            centers,
            np.tile(LAMP_HALF_M, (len(lights), 1)),
            np.array([c.intersection.approach_heading for c in lights]),
            np.array([RED if c.red(t) else GREEN for c in lights], dtype=np.float64),
            np.full(len(lights), OCC_CLASS_ID["manmade"]),
            np.full(len(lights), -1),
        )

    def ground_class(self, xy: np.ndarray) -> np.ndarray:
        """Occ3D ground class at global points [..., 2] (terrain outside the raster)."""
        pixel = np.floor((xy - self.raster_origin) / RASTER_RESOLUTION_M).astype(np.int64)
        height, width = self.raster.shape
        inside = (pixel[..., 0] >= 0) & (pixel[..., 0] < width)
        inside &= (pixel[..., 1] >= 0) & (pixel[..., 1] < height)
        classes = np.full(xy.shape[:-1], OCC_CLASS_ID["terrain"], dtype=np.uint8)
        classes[inside] = self.raster[pixel[inside][:, 1], pixel[inside][:, 0]]
        return classes


# --------------------------------------------------------------------------------------------
# Building a scene


def build_world(seed: int, scene_index: int, duration_s: float) -> World:
    """The world of scene ``scene_index`` of a dataset generated with ``seed``."""
    rng = np.random.default_rng([seed, scene_index])
    times = np.arange(0.0, duration_s + FUTURE_MARGIN_S + SIM_DT_S / 2, SIM_DT_S)
    s_start = float(rng.uniform(40.0, 60.0))
    route = build_route(
        rng,
        min_length=s_start + 15.0 * times[-1] + 220.0,
        first_gap=s_start + float(rng.uniform(5.0, 45.0)),
    )
    ribbons = [route.ribbon, *route.branches]
    strips, dashes = _ground_geometry(ribbons)
    raster, origin = _rasterise(strips)
    static = _scenery(rng, ribbons, raster, origin)
    controls = _traffic_controls(rng, route, s_start)
    static = BoxSet.concat([static, _control_scenery(controls)])
    ego, lead, obstacles = _drive_ego(rng, times, route, s_start, controls)
    agents = [lead] if lead is not None else []
    agents += [agent for obstacle in obstacles for agent in obstacle[1]]
    agents += _oncoming(rng, times, route, s_start)
    agents += _parked(rng, times, route, ego)
    agents += _cross_traffic(rng, times, route, ego)
    agents += _pedestrians(rng, times, route, s_start, ego)
    agents += _crossing_pedestrians(rng, times, route, ego)
    return World(
        times=times,
        route=route,
        ego=ego,
        agents=agents,
        static_boxes=static,
        strips=strips,
        dashes=dashes,
        raster=raster,
        raster_origin=origin,
        lead_index=0 if lead is not None else None,
        controls=controls,
        obstacles=[obstacle for obstacle, _ in obstacles],
    )


def _ground_geometry(
    ribbons: list[Ribbon],
) -> tuple[list[GroundStrip], dict[tuple[int, int, int], np.ndarray]]:
    """Sidewalks (layer 0), roads (1) and paint (2) of every ribbon as strips and dash quads."""
    strips: list[GroundStrip] = []
    dashes: dict[tuple[int, int, int], list[np.ndarray]] = {WHITE_PAINT: [], YELLOW_PAINT: []}
    for ribbon in ribbons:
        path = ribbon.path
        s = np.linspace(0.0, path.length, max(2, int(path.length / 2.0) + 1))
        outer = ROAD_HALF_WIDTH_M + SIDEWALK_WIDTH_M
        for side in (1.0, -1.0):
            strips.append(
                _strip(
                    path,
                    s,
                    0,
                    SIDEWALK_COLOR,
                    d_left=side * outer,
                    d_right=side * ROAD_HALF_WIDTH_M,
                )
            )
        strips.append(
            _strip(path, s, 1, ROAD_COLOR, d_left=ROAD_HALF_WIDTH_M, d_right=-ROAD_HALF_WIDTH_M)
        )
        for start, end in _complement(ribbon.marking_gaps, path.length):
            run = np.linspace(start, end, max(2, int((end - start) / 2.0) + 1))
            for offset, color in (
                (7.0, WHITE_PAINT),
                (-7.0, WHITE_PAINT),
                (0.2, YELLOW_PAINT),
                (-0.2, YELLOW_PAINT),
            ):
                strips.append(
                    _strip(path, run, 2, color, d_left=offset + 0.07, d_right=offset - 0.07)
                )
            for offset in (3.5, -3.5):
                dashes[WHITE_PAINT].append(_dash_quads(path, start, end, offset))
        for s_line in ribbon.stop_lines:
            quad = _quad(path, s_line - 0.25, s_line + 0.25, 0.0, -7.0)
            dashes[WHITE_PAINT].append(quad[None])
    return strips, {color: np.concatenate(quads) for color, quads in dashes.items() if quads}


def _strip(path: Path, s: np.ndarray, layer: int, color, *, d_left: float, d_right: float):
    left, _, _ = path.pose(s, np.full_like(s, d_left))
    right, _, _ = path.pose(s, np.full_like(s, d_right))
    return GroundStrip(layer, color, left, right)


def _quad(path: Path, s0: float, s1: float, d_left: float, d_right: float) -> np.ndarray:
    s = np.array([s0, s1, s1, s0])
    d = np.array([d_left, d_left, d_right, d_right])
    xy, _, _ = path.pose(s, d)
    return xy


def _dash_quads(path: Path, start: float, end: float, offset: float) -> np.ndarray:
    starts = np.arange(start + 1.0, end - 3.0, 9.0)
    if len(starts) == 0:
        return np.zeros((0, 4, 2))
    return np.stack([_quad(path, s, s + 3.0, offset + 0.075, offset - 0.075) for s in starts])


def _complement(gaps: list[tuple[float, float]], length: float) -> list[tuple[float, float]]:
    runs, cursor = [], 0.0
    for start, end in sorted(gaps):
        if start - cursor > 4.0:
            runs.append((cursor, start))
        cursor = max(cursor, end)
    if length - cursor > 4.0:
        runs.append((cursor, length))
    return runs


def _rasterise(strips: list[GroundStrip]) -> tuple[np.ndarray, np.ndarray]:
    """Ground classes on a 0.25 m raster: terrain, then sidewalks, then roads on top."""
    points = np.concatenate([np.concatenate([s.left, s.right]) for s in strips])
    origin = points.min(axis=0) - 80.0
    size = np.ceil((points.max(axis=0) + 80.0 - origin) / RASTER_RESOLUTION_M).astype(int)
    raster = np.full((size[1], size[0]), OCC_CLASS_ID["terrain"], dtype=np.uint8)
    for layer, name in ((0, "sidewalk"), (1, "driveable_surface")):
        for strip in strips:
            if strip.layer != layer:
                continue
            polygon = np.concatenate([strip.left, strip.right[::-1]])
            pixels = np.round((polygon - origin) / RASTER_RESOLUTION_M).astype(np.int32)
            cv2.fillPoly(raster, [pixels], OCC_CLASS_ID[name])
    return raster, origin


# --------------------------------------------------------------------------------------------
# Static scenery: buildings, trees, hedges, street lamps

_FACADES = (
    (150, 170, 190),
    (120, 130, 150),
    (180, 180, 175),
    (95, 105, 140),
    (200, 195, 185),
    (110, 120, 115),
    (140, 150, 165),
    (170, 150, 120),
)
_CROWNS = ((40, 110, 45), (35, 95, 60), (50, 125, 70))


def _scenery(
    rng: np.random.Generator, ribbons: list[Ribbon], raster: np.ndarray, origin: np.ndarray
) -> BoxSet:
    """Static boxes beside the roads, placed only on free terrain."""
    occupied = raster != OCC_CLASS_ID["terrain"]
    boxes: list[tuple] = []  # (centre xyz, half xyz, yaw, colour, occ class)
    manmade, vegetation = OCC_CLASS_ID["manmade"], OCC_CLASS_ID["vegetation"]
    kerb = ROAD_HALF_WIDTH_M + SIDEWALK_WIDTH_M
    for ribbon in ribbons:
        path = ribbon.path
        for side in (1.0, -1.0):
            s = float(rng.uniform(0.0, 8.0))
            while s < path.length:  # buildings
                length, depth = rng.uniform(10.0, 28.0), rng.uniform(8.0, 18.0)
                height = rng.choice([rng.uniform(5.0, 12.0), rng.uniform(12.0, 30.0)], p=[0.6, 0.4])
                setback = rng.uniform(4.0, 9.0)
                xy, heading, _ = path.pose(s + length / 2, side * (kerb + setback + depth / 2))
                half = (length / 2, depth / 2, height / 2)
                if _claim(occupied, origin, xy, heading, half[:2]):
                    color = _FACADES[rng.integers(len(_FACADES))]
                    boxes.append(((*xy, height / 2), half, heading, color, manmade))
                s += length + rng.uniform(2.0, 10.0)
            s = float(rng.uniform(0.0, 10.0))
            while s < path.length:  # trees and hedges on the verge
                xy, heading, _ = path.pose(s, side * (kerb + 1.8))
                if rng.random() < 0.75:
                    crown = rng.uniform(1.2, 2.0)
                    trunk = rng.uniform(1.8, 3.0)
                    if _claim(occupied, origin, xy, heading, (crown, crown)):
                        yaw = heading + rng.uniform(0, math.pi / 2)
                        boxes.append(
                            (
                                (*xy, trunk / 2),
                                (0.15, 0.15, trunk / 2),
                                yaw,
                                (45, 65, 95),
                                vegetation,
                            )
                        )
                        top = rng.uniform(2.0, 3.5)
                        boxes.append(
                            (
                                (*xy, trunk + top / 2),
                                (crown, crown, top / 2),
                                yaw,
                                _CROWNS[rng.integers(len(_CROWNS))],
                                vegetation,
                            )
                        )
                elif _claim(occupied, origin, xy, heading, (3.0, 0.6)):
                    boxes.append(((*xy, 0.5), (3.0, 0.6, 0.5), heading, (40, 100, 50), vegetation))
                s += rng.uniform(7.0, 14.0)
            for s in np.arange(rng.uniform(5.0, 25.0), path.length, 30.0):  # street lamps
                xy, heading, _ = path.pose(s, side * (ROAD_HALF_WIDTH_M + 0.4))
                pixel = np.floor((xy - origin) / RASTER_RESOLUTION_M).astype(int)
                if raster[pixel[1], pixel[0]] == OCC_CLASS_ID["sidewalk"]:
                    boxes.append(((*xy, 3.0), (0.12, 0.12, 3.0), heading, (90, 90, 95), manmade))
    if not boxes:
        return BoxSet.empty()
    centers, halves, yaws, colors, classes = zip(*boxes, strict=True)
    static = BoxSet(
        np.array(centers, dtype=np.float64),
        np.array(halves, dtype=np.float64),
        np.array(yaws, dtype=np.float64),
        np.array(colors, dtype=np.float64),
        np.array(classes, dtype=np.int64),
        np.full(len(boxes), -1, dtype=np.int64),
    )
    return static


def _claim(
    occupied: np.ndarray, origin: np.ndarray, xy: np.ndarray, yaw: float, half: tuple
) -> bool:
    """Mark the footprint taken and return True if all of it (plus 0.5 m) was free."""
    cos, sin = math.cos(yaw), math.sin(yaw)
    corners = np.array(
        [
            [sx * (half[0] + 0.5), sy * (half[1] + 0.5)]
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
    )
    world = xy + corners @ np.array([[cos, sin], [-sin, cos]])
    pixels = np.round((world - origin) / RASTER_RESOLUTION_M).astype(np.int32)
    low, high = pixels.min(axis=0), pixels.max(axis=0) + 1
    if (low < 0).any() or high[0] > occupied.shape[1] or high[1] > occupied.shape[0]:
        return False
    footprint = np.zeros((high[1] - low[1], high[0] - low[0]), dtype=np.uint8)
    cv2.fillPoly(footprint, [pixels - low], 1)
    window = occupied[low[1] : high[1], low[0] : high[0]]
    if window[footprint.astype(bool)].any():
        return False
    window |= footprint.astype(bool)
    return True


# --------------------------------------------------------------------------------------------
# Agents

_CAR_COLORS = (
    (200, 200, 205),
    (30, 30, 35),
    (40, 40, 170),
    (150, 90, 30),
    (120, 125, 130),
    (235, 235, 235),
    (30, 120, 200),
    (60, 110, 60),
)
_CATEGORY_CLASS = {
    "vehicle.car": OCC_CLASS_ID["car"],
    "vehicle.truck": OCC_CLASS_ID["truck"],
    "vehicle.bus.rigid": OCC_CLASS_ID["bus"],
    "human.pedestrian.adult": OCC_CLASS_ID["pedestrian"],
    "movable_object.trafficcone": OCC_CLASS_ID["traffic_cone"],
    "movable_object.barrier": OCC_CLASS_ID["barrier"],
}


def _vehicle_body(rng: np.random.Generator, category: str) -> tuple[tuple, list[Part]]:
    """nuScenes size (w, l, h) and body parts of a vehicle of ``category``."""
    color = _CAR_COLORS[rng.integers(len(_CAR_COLORS))]
    dark = (28.0, 28.0, 30.0)
    if category == "vehicle.car":
        w, length, h = rng.uniform(1.8, 2.0), rng.uniform(4.2, 4.9), rng.uniform(1.45, 1.75)
        glass = tuple(0.35 * c + 40 for c in color)
        parts = [
            Part((0.0, 0.0, 0.2), (0.42 * length, 0.46 * w, 0.2), dark),
            Part((0.0, 0.0, 0.67), (length / 2, w / 2, 0.27), color),
            Part(
                (-0.06 * length, 0.0, (0.94 + h) / 2),
                (0.28 * length, 0.45 * w, (h - 0.94) / 2),
                glass,
            ),
        ]
    elif category == "vehicle.truck":
        w, length, h = rng.uniform(2.3, 2.5), rng.uniform(6.5, 9.0), rng.uniform(3.0, 3.6)
        cargo = ((215, 215, 215), (180, 185, 190), (60, 60, 150))[rng.integers(3)]
        parts = [
            Part((0.0, 0.0, 0.25), (0.45 * length, 0.46 * w, 0.25), dark),
            Part((0.39 * length, 0.0, 1.5), (0.11 * length, w / 2, 1.0), color),
            Part(
                (-0.11 * length, 0.0, (0.5 + h) / 2), (0.38 * length, w / 2, (h - 0.5) / 2), cargo
            ),
        ]
    else:  # bus
        w, length, h = rng.uniform(2.5, 2.6), rng.uniform(10.5, 12.5), rng.uniform(3.1, 3.4)
        paint = ((40, 190, 230), (50, 50, 190), (170, 110, 40))[rng.integers(3)]
        parts = [
            Part((0.0, 0.0, 0.2), (0.45 * length, 0.46 * w, 0.2), dark),
            Part((0.0, 0.0, 0.75), (length / 2, w / 2, 0.35), paint),
            Part((0.0, 0.0, 1.7), (0.49 * length, 0.48 * w, 0.6), (70, 60, 55)),
            Part((0.0, 0.0, (2.3 + h) / 2), (length / 2, w / 2, (h - 2.3) / 2), paint),
        ]
    return (float(w), float(length), float(h)), parts


def _pedestrian_body(rng: np.random.Generator) -> tuple[tuple, list[Part]]:
    h = rng.uniform(1.6, 1.9)
    shirt = ((40, 40, 180), (170, 90, 30), (60, 160, 60), (210, 210, 210), (40, 140, 220))
    parts = [
        Part((0.0, 0.0, 0.45 * h / 2), (0.15, 0.2, 0.45 * h / 2), (60, 50, 45)),
        Part(
            (0.0, 0.0, 0.45 * h + 0.21 * h), (0.16, 0.25, 0.21 * h), shirt[rng.integers(len(shirt))]
        ),
        Part((0.0, 0.0, 0.935 * h), (0.1, 0.1, 0.065 * h), (120, 150, 190)),
    ]
    return (0.6, 0.5, float(h)), parts


def _vehicle_category(rng: np.random.Generator, weights=(0.75, 0.15, 0.10)) -> str:
    return str(rng.choice(["vehicle.car", "vehicle.truck", "vehicle.bus.rigid"], p=weights))


def _path_agent(
    body: tuple[str, tuple, list[Part]],
    role: str,
    path: Path,
    s: np.ndarray,
    d: np.ndarray,
    *,
    reverse: bool = False,
) -> Agent:
    """An agent (category, size, parts) moving along ``path`` at arc length ``s`` [T], lateral
    offset ``d`` [T]; present while it is on the path."""
    category, size, parts = body
    xy, heading, _ = path.pose(s, d)
    step = np.gradient(s)
    yaw = heading + np.arctan2(np.gradient(d), np.where(np.abs(step) < 1e-6, 1.0, np.abs(step)))
    if reverse:
        yaw = heading + math.pi - np.arctan2(np.gradient(d), np.maximum(np.abs(step), 1e-6))
    speed = np.hypot(*np.gradient(xy, SIM_DT_S, axis=0).T)
    active = (s >= 0.0) & (s <= path.length)
    return Agent(
        category,
        _CATEGORY_CLASS[category],
        size,
        parts,
        role,
        xy[:, 0],
        xy[:, 1],
        np.unwrap(yaw),
        speed,
        active,
    )


LAMP_HALF_M = (0.3, 0.7, 0.7)  # a lamp head 1.4 m wide and high, facing the approach
_POLE_COLOR = (70, 70, 75)


def _lamp_centre(intersection: Intersection) -> tuple[float, float, float]:
    """Over the ego direction's lanes on the far side of the crossing road, 5.5 m up: in view of
    the front camera from far away and while waiting at the stop line."""
    heading = intersection.approach_heading
    forward = np.array([math.cos(heading), math.sin(heading)])
    right = np.array([math.sin(heading), -math.cos(heading)])
    xy = intersection.centre + (ROAD_HALF_WIDTH_M + 1.0) * forward + 3.5 * right
    return (float(xy[0]), float(xy[1]), 5.5)


def _traffic_controls(
    rng: np.random.Generator, route: Route, s_start: float
) -> list[TrafficControl]:
    """A traffic light (65 %) or a stop sign at every intersection. A light is green throughout
    (25 %) or red until 2-14 s after the ego would arrive at cruise speed, so that the ego usually
    meets it red and waits."""
    controls = []
    for intersection in route.intersections:
        if rng.random() < 0.35:
            controls.append(TrafficControl("stop sign", intersection))
            continue
        green_at = None
        if rng.random() < 0.75:
            arrival = (intersection.s_stop_line - s_start) / EGO_CRUISE_MPS
            green_at = float(arrival + rng.uniform(2.0, 14.0))
        controls.append(TrafficControl("light", intersection, green_at))
    return controls


def _control_scenery(controls: list[TrafficControl]) -> BoxSet:
    """Static parts of the controls: a light's pole and arm, a stop sign on its post."""
    boxes = []  # (centre xyz, half xyz, yaw, colour)
    for control in controls:
        intersection = control.intersection
        heading = intersection.approach_heading
        forward = np.array([math.cos(heading), math.sin(heading)])
        right = np.array([math.sin(heading), -math.cos(heading)])
        if control.kind == "light":
            base = intersection.centre + (ROAD_HALF_WIDTH_M + 1.0) * forward
            pole = base + (ROAD_HALF_WIDTH_M + 1.0) * right
            arm = base + (ROAD_HALF_WIDTH_M + 1.0) / 2 * right
            boxes.append(((*pole, 3.25), (0.15, 0.15, 3.25), heading, _POLE_COLOR))
            arm_half = (0.1, (ROAD_HALF_WIDTH_M + 1.0) / 2, 0.1)
            boxes.append(((*arm, 6.3), arm_half, heading, _POLE_COLOR))
        else:
            # On the right kerb just before the stop line, facing the approach.
            start = intersection.centre - (TURN_RADIUS_M + 1.5) * forward
            post = start + (ROAD_HALF_WIDTH_M + 0.6) * right
            boxes.append(((*post, 1.2), (0.06, 0.06, 1.2), heading, _POLE_COLOR))
            boxes.append(((*post, 2.75), (0.05, 0.55, 0.55), heading, RED))
            boxes.append(((*post, 2.75), (0.07, 0.42, 0.12), heading, WHITE_PAINT))
    if not boxes:
        return BoxSet.empty()
    centers, halves, yaws, colors = zip(*boxes, strict=True)
    return BoxSet(
        np.array(centers, dtype=np.float64),
        np.array(halves, dtype=np.float64),
        np.array(yaws, dtype=np.float64),
        np.array(colors, dtype=np.float64),
        np.full(len(boxes), OCC_CLASS_ID["manmade"], dtype=np.int64),
        np.full(len(boxes), -1, dtype=np.int64),
    )


def _stop_rules(controls: list[TrafficControl]) -> tuple[list[motion.StopRule], list[str]]:
    """Stop rules (and their kinds) of the red lights and stop signs for a car."""
    rules, kinds = [], []
    for control in controls:
        line = control.intersection.s_stop_line
        if control.kind == "stop sign":
            rules.append(motion.StopRule(line, STOP_SIGN_DWELL_S))
            kinds.append("stop sign")
        elif control.green_at is not None:
            rules.append(motion.StopRule(line, 0.0, green_at=control.green_at))
            kinds.append("red light")
    return rules, kinds


def _brake_lights(parts: list[Part], size: tuple) -> list[Part]:
    """``parts`` plus two rear lamps, dark red, bright while braking."""
    w, length, _ = size
    lamps = [
        Part((-length / 2 - 0.03, side * 0.33 * w, 0.9), (0.05, 0.22, 0.12), (30, 30, 110), RED)
        for side in (-1.0, 1.0)
    ]
    return [*parts, *lamps]


def _drive_ego(
    rng: np.random.Generator,
    times: np.ndarray,
    route: Route,
    s_start: float,
    controls: list[TrafficControl],
) -> tuple[EgoMotion, Agent | None, list[tuple[Obstacle, list[Agent]]]]:
    """The ego's speed profile (IDM at one cruise speed), lanes, an optional lead vehicle it
    follows and the obstacles in its lanes. Every stop and lane change has a visible cause: a red
    light, a stop sign, a braking leader, a pedestrian crossing after a turn, an obstacle; or the
    route command (the lane a turn needs)."""
    path = route.path
    limit_s = np.arange(0.0, path.length, 1.0)
    limit_speed = motion.curve_speed_limit(path.pose(limit_s)[2])
    dt = SIM_DT_S
    lead = None
    leader = None
    start_speed = float(rng.choice([0.0, 6.0, EGO_CRUISE_MPS]))
    if rng.random() < 0.6:
        category = _vehicle_category(rng, (0.7, 0.18, 0.12))
        size, parts = _vehicle_body(rng, category)
        parts = _brake_lights(parts, size)
        cruise = float(rng.uniform(8.0, EGO_CRUISE_MPS))
        targets = np.full(len(times), cruise)
        start = float(rng.uniform(1.0, 5.0))
        while start < times[-1]:  # the lead brakes, to a standstill or to a crawl, now and then
            low = 0.0 if rng.random() < 0.6 else float(rng.uniform(2.0, 5.0))
            end = start + float(rng.uniform(2.0, 5.0))
            targets[(times >= start) & (times < end)] = low
            start = end + float(rng.uniform(4.0, 9.0))
        lead_rules, _ = _stop_rules(controls)
        lead_drive = motion.drive(
            times,
            s_start=s_start + EGO_FRONT_M + size[1] / 2 + 2.5 + 1.6 * start_speed,
            speed_start=start_speed,
            cruise=motion.smooth_targets(targets, dt, 2.0),
            limit_s=limit_s,
            limit_speed=limit_speed,
            front_overhang=size[1] / 2,
            stops=lead_rules,
        )
        leader = motion.Leader(lead_drive.s, size[1] / 2)
        lead = (category, size, parts, lead_drive)
    ego_stops, kinds = _stop_rules(controls)
    for intersection in route.intersections:
        if intersection.turn != "straight" and rng.random() < 0.5:
            # Yield to a pedestrian on the crosswalk just after the turn.
            ego_stops.append(motion.StopRule(intersection.s_exit - 3.0, rng.uniform(1.0, 2.5)))
            kinds.append("yield")
    ego_drive = motion.drive(
        times,
        s_start=s_start,
        speed_start=start_speed,
        cruise=np.full(len(times), EGO_CRUISE_MPS),
        limit_s=limit_s,
        limit_speed=limit_speed,
        front_overhang=EGO_FRONT_M,
        stops=ego_stops,
        leader=leader,
    )
    obstacle_plan = _place_obstacle(rng, route, ego_drive)
    d, lane_changes, obstacle = _plan_lanes(rng, times, route, ego_drive, obstacle_plan)
    xy, heading, curvature = path.pose(ego_drive.s, d)
    along = np.maximum(ego_drive.speed * (1.0 - curvature * d), 1e-3)
    yaw = np.unwrap(heading + np.arctan2(np.gradient(d, dt), along))
    holds = [(start, end, kinds[index]) for start, end, index in ego_drive.holds]
    ego = EgoMotion(
        xy[:, 0],
        xy[:, 1],
        yaw,
        ego_drive.speed,
        ego_drive.accel,
        ego_drive.s,
        d,
        lane_changes,
        holds,
    )
    lead_agent = None
    if lead is not None:
        category, size, parts, lead_drive = lead
        # The lead keeps to the ego's lane along the road (it changes lanes where the ego will).
        lead_d = np.interp(lead_drive.s, ego_drive.s + 1e-9 * np.arange(len(times)), d)
        lead_agent = _path_agent((category, size, parts), "lead", path, lead_drive.s, lead_d)
        lead_agent.braking = (lead_drive.accel < -0.6) | (
            (lead_drive.speed < 0.1) & (lead_drive.accel <= 0.0)
        )
    obstacles = []
    if obstacle is not None:
        agents = _obstacle_agents(rng, times, path, obstacle_plan, obstacle.lane)
        obstacles.append((obstacle, agents))
    return ego, lead_agent, obstacles


def _place_obstacle(
    rng: np.random.Generator, route: Route, drive: motion.Drive
) -> tuple[float, float, str, bool] | None:
    """(route s of its start, its length, "vehicle" | "cones", whether it blocks the ego's lane)
    of an obstacle in 80 % of the scenes, on a stretch the ego reaches, away from intersections."""
    if rng.random() < 0.2:
        return None
    kind = "vehicle" if rng.random() < 0.5 else "cones"
    length = 5.0 if kind == "vehicle" else 10.0
    blocks = bool(rng.random() < 0.85)
    low, high = drive.s[0] + OBSTACLE_REACT_M + 5.0, drive.s[-1] - 20.0
    for _ in range(20):
        if high <= low:
            return None
        s_begin = float(rng.uniform(low, high))
        span = np.array([s_begin - OBSTACLE_REACT_M, s_begin + length])
        if not route.in_intersection_zone(np.linspace(*span, 40), 10.0, 5.0).any():
            return s_begin, length, kind, blocks
    return None


def _obstacle_agents(
    rng: np.random.Generator,
    times: np.ndarray,
    path: Path,
    plan: tuple[float, float, str, bool],
    lane: float,
) -> list[Agent]:
    """A broken-down vehicle, or a taper of cones closing the lane with a barrier behind it."""
    s_begin, length, kind, _ = plan
    if kind == "vehicle":
        category = _vehicle_category(rng, (0.8, 0.2, 0.0))
        size, parts = _vehicle_body(rng, category)
        centre = s_begin + size[1] / 2
        return [
            _path_agent(
                (category, size, parts),
                "obstacle",
                path,
                np.full(len(times), centre),
                np.full(len(times), lane),
            )
        ]
    agents = []
    for step, s in enumerate(np.linspace(s_begin, s_begin + length - 2.0, 5)):
        # A taper across the lane, then a barrier closing it.
        d = lane + 1.4 - 2.8 * step / 4
        agents.append(
            _static_object(
                times, path, "movable_object.trafficcone", s=s, d=float(d), yaw_offset=0.0
            )
        )
    agents.append(
        _static_object(
            times,
            path,
            "movable_object.barrier",
            s=s_begin + length,
            d=lane,
            yaw_offset=math.pi / 2,
        )
    )
    return agents


def _plan_lanes(
    rng: np.random.Generator,
    times: np.ndarray,
    route: Route,
    drive: motion.Drive,
    obstacle_plan: tuple[float, float, str, bool] | None,
) -> tuple[np.ndarray, list[tuple[float, float, float]], Obstacle | None]:
    """Lateral offset [T] and lane changes, each with a visible or commanded cause: the lane a
    turn needs (starting when the route command names the turn, ``COMMAND_DISTANCE_M`` before
    its stop line) and leaving a lane an obstacle blocks (``OBSTACLE_REACT_M`` before it).
    Returns the obstacle placed in the lane it blocks (or in the other lane), None when no lane
    change could be fitted before it."""
    steps = round(LANE_CHANGE_S / SIM_DT_S)
    away = ~route.in_intersection_zone(drive.s, 6.0, 8.0)
    usable = (drive.speed >= 3.5) & away
    window_ok = np.convolve(usable.astype(int), np.ones(steps + 1, int), "valid") == steps + 1

    def first_start(trigger_s: float, deadline_s: float) -> int | None:
        """The first lane-change start at or after reaching ``trigger_s`` that ends before
        ``deadline_s`` (route positions of the ego origin)."""
        k = np.arange(len(window_ok))
        ends = np.minimum(k + steps, len(drive.s) - 1)
        ok = window_ok & (drive.s[k] >= trigger_s) & (drive.s[ends] <= deadline_s)
        found = np.flatnonzero(ok)
        return int(found[0]) if len(found) else None

    # (trigger s, deadline s, needed lane or None for the obstacle's, is the obstacle)
    requirements: list[tuple[float, float, float | None, bool]] = []
    for intersection in route.intersections:
        if intersection.turn != "straight":
            lane = INNER_LANE_M if intersection.turn == "left" else OUTER_LANE_M
            line = intersection.s_stop_line - EGO_FRONT_M
            requirements.append((line - COMMAND_DISTANCE_M, line - 4.0, lane, False))
    if obstacle_plan is not None:
        s_begin = obstacle_plan[0]
        requirements.append((s_begin - OBSTACLE_REACT_M, s_begin - EGO_FRONT_M - 4.0, None, True))
    requirements.sort(key=lambda requirement: requirement[0])
    lane = float(rng.choice([INNER_LANE_M, OUTER_LANE_M]))
    initial_lane = lane
    index = np.arange(len(times))
    changes: list[tuple[int, float, float]] = []  # (start index, from lane, to lane)
    obstacle = None
    for reached, deadline, needed, is_obstacle in requirements:
        trigger = reached
        if obstacle is not None and needed == obstacle.lane:
            trigger = max(reached, obstacle.s_end + 1.0)  # not into its lane before passing it
        other = INNER_LANE_M + OUTER_LANE_M - lane
        if is_obstacle:
            blocks = obstacle_plan[3]
            k = first_start(trigger, deadline) if blocks else None
            if blocks and k is None:
                continue  # no room to change lanes: leave the obstacle out
            obstacle = Obstacle(
                obstacle_plan[0],
                obstacle_plan[0] + obstacle_plan[1],
                lane if blocks else other,
                float(times[k]) if k is not None else None,
            )
            if k is not None:
                changes.append((k, lane, other))
                lane = other
            continue
        if lane == needed:
            continue
        k = first_start(trigger, deadline)
        if k is not None:
            changes.append((k, lane, needed))
            lane = needed
        elif not changes and drive.s[0] >= trigger:
            lane = initial_lane = needed  # commanded before the scene starts: already there
    d = np.full(len(times), initial_lane)
    for k, start_lane, end_lane in changes:
        blend = (1.0 - np.cos(math.pi * np.clip((index - k) / steps, 0.0, 1.0))) / 2.0
        d = np.where(index >= k, start_lane + (end_lane - start_lane) * blend, d)
    return d, [(float(times[k]), a, b) for k, a, b in changes], obstacle


def _oncoming(
    rng: np.random.Generator, times: np.ndarray, route: Route, s_start: float
) -> list[Agent]:
    agents = []
    for lane in (-INNER_LANE_M, -OUTER_LANE_M):
        speed = float(rng.uniform(7.0, 12.0))
        s0 = s_start + float(rng.uniform(20.0, 60.0))
        while s0 < route.path.length + speed * times[-1]:
            category = _vehicle_category(rng)
            size, parts = _vehicle_body(rng, category)
            s = s0 - speed * times
            agents.append(
                _path_agent(
                    (category, size, parts),
                    "oncoming",
                    route.path,
                    s,
                    np.full(len(times), lane),
                    reverse=True,
                )
            )
            s0 += float(rng.uniform(35.0, 120.0))
    return agents


def _parked(
    rng: np.random.Generator,
    times: np.ndarray,
    route: Route,
    ego: EgoMotion,
) -> list[Agent]:
    """Parked vehicles and a work zone of cones and barriers in the parking lanes."""
    agents = []
    s_low, s_high = ego.s[0] - 40.0, ego.s[-1] + 70.0
    work_zone = None
    if rng.random() < 0.6:
        start = float(rng.uniform(ego.s[0] + 10.0, max(ego.s[0] + 12.0, ego.s[-1] - 10.0)))
        if not route.in_intersection_zone(np.array([start, start + 14.0]), 20.0, 15.0).any():
            work_zone = (start, start + 14.0)
            for s in np.arange(start, start + 14.01, 2.8):
                agents.append(
                    _static_object(
                        times,
                        route.path,
                        "movable_object.trafficcone",
                        s=s,
                        d=-7.45,
                        yaw_offset=0.0,
                    )
                )
            for s in (start - 1.0, start + 15.0):
                agents.append(
                    _static_object(
                        times,
                        route.path,
                        "movable_object.barrier",
                        s=s,
                        d=-PARKING_LANE_M,
                        yaw_offset=math.pi / 2,
                    )
                )
    for side in (-1.0, 1.0):
        s = s_low + float(rng.uniform(0.0, 15.0))
        while s < s_high:
            category = _vehicle_category(rng, (0.85, 0.15, 0.0))
            size, parts = _vehicle_body(rng, category)
            centre = s + size[1] / 2
            clear = not route.in_intersection_zone(np.array([centre]), 25.0, 20.0)[0]
            if work_zone and side < 0 and work_zone[0] - 8 < centre < work_zone[1] + 8:
                clear = False
            if clear and rng.random() < 0.55:
                s_arr = np.full(len(times), centre)
                agents.append(
                    _path_agent(
                        (category, size, parts),
                        "parked",
                        route.path,
                        s_arr,
                        np.full(len(times), side * PARKING_LANE_M),
                        reverse=side > 0,
                    )
                )
            s += size[1] + float(rng.uniform(1.5, 12.0))
    return agents


def _static_object(
    times: np.ndarray,
    path: Path,
    category: str,
    *,
    s: float,
    d: float,
    yaw_offset: float,
) -> Agent:
    if category == "movable_object.trafficcone":
        size = (0.4, 0.4, 0.75)
        parts = [Part((0.0, 0.0, 0.375), (0.2, 0.2, 0.375), (20, 110, 245))]
    else:
        size = (0.55, 2.0, 1.05)
        parts = [
            Part((0.0, 0.0, 0.3), (1.0, 0.27, 0.3), (200, 200, 205)),
            Part((0.0, 0.0, 0.82), (1.0, 0.27, 0.23), (40, 40, 205)),
        ]
    (xy,), (heading,), _ = path.pose(np.array([s]), np.array([d]))
    count = len(times)
    return Agent(
        category,
        _CATEGORY_CLASS[category],
        size,
        parts,
        category.rsplit(".", maxsplit=1)[-1],
        np.full(count, xy[0]),
        np.full(count, xy[1]),
        np.full(count, heading + yaw_offset),
        np.zeros(count),
        np.ones(count, bool),
    )


def _cross_traffic(
    rng: np.random.Generator, times: np.ndarray, route: Route, ego: EgoMotion
) -> list[Agent]:
    """Vehicles crossing the intersection while the ego waits at its stop line."""
    agents = []
    for start, end, kind in ego.holds:
        if kind not in ("red light", "stop sign"):
            continue
        s_hold = float(np.interp(start, times, ego.s))
        intersection = route.intersection_ahead(s_hold, 30.0)
        if intersection is None:
            continue
        crossing = intersection.crossing
        middle = crossing.length / 2
        for _ in range(int(rng.integers(1, 3))):
            direction = float(rng.choice([-1.0, 1.0]))
            speed = float(rng.uniform(7.0, 10.0))
            passing = float(rng.uniform(start, max(start + 0.1, end - 1.0)))
            category = _vehicle_category(rng)
            size, parts = _vehicle_body(rng, category)
            s = middle + direction * speed * (times - passing)
            lane = float(rng.choice([INNER_LANE_M, OUTER_LANE_M]))
            d = np.full(len(times), direction * lane)
            agents.append(
                _path_agent((category, size, parts), "cross", crossing, s, d, reverse=direction < 0)
            )
    return agents


def _pedestrians(
    rng: np.random.Generator, times: np.ndarray, route: Route, s_start: float, ego: EgoMotion
) -> list[Agent]:
    agents = []
    count = int(rng.integers(5, 14))
    for _ in range(count):
        size, parts = _pedestrian_body(rng)
        side = float(rng.choice([-1.0, 1.0]))
        s0 = float(rng.uniform(ego.s[0] - 20.0, ego.s[-1] + 40.0))
        d = side * (SIDEWALK_CENTRE_M + rng.uniform(-0.9, 0.9))
        walking = rng.random() < 0.75
        speed = float(rng.uniform(1.0, 1.6)) * float(rng.choice([-1.0, 1.0])) if walking else 0.0
        s = s0 + speed * times
        agents.append(
            _path_agent(
                ("human.pedestrian.adult", size, parts),
                "pedestrian",
                route.path,
                s,
                np.full(len(times), d),
                reverse=speed < 0,
            )
        )
    return agents


def _crossing_pedestrians(
    rng: np.random.Generator, times: np.ndarray, route: Route, ego: EgoMotion
) -> list[Agent]:
    """A pedestrian on the crosswalk in front of the ego whenever it yields after a turn."""
    agents = []
    for start, end, kind in ego.holds:
        if kind != "yield":
            continue
        s_ego = float(np.interp(start, times, ego.s))
        d_ego = float(np.interp(start, times, ego.d))
        s_walk = s_ego + EGO_FRONT_M + 1.5
        (begin,), (heading,), _ = route.path.pose(np.array([s_walk]), np.array([SIDEWALK_CENTRE_M]))
        length = 2 * SIDEWALK_CENTRE_M
        crosswalk = Path.straight(begin, heading - math.pi / 2, length)
        speed = float(rng.uniform(1.2, 1.5))
        # In front of the ego's lane half-way through the wait.
        passing = 0.5 * (start + end)
        s = SIDEWALK_CENTRE_M - d_ego + speed * (times - passing)
        size, parts = _pedestrian_body(rng)
        agents.append(
            _path_agent(
                ("human.pedestrian.adult", size, parts),
                "pedestrian",
                crosswalk,
                s,
                np.zeros(len(times)),
            )
        )
    return agents
