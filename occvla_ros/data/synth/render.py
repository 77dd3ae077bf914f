"""Camera images of the world: flat-shaded polygons drawn far to near (painter's algorithm).

The ground is drawn first in layers (sidewalks, roads, paint), all at z = 0; box faces (buildings,
trees, vehicles, pedestrians) follow, back-face culled, clipped at the near plane and sorted by
distance. Faces are shaded by their orientation to a fixed sun and fade into haze with distance.
Cameras have no pitch or roll, so the horizon is the row through the principal point.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from occvla_ros.data.synth.rig import Camera
from occvla_ros.data.synth.world import BoxSet, World

NEAR_M = 0.3
GROUND_RANGE_M = 160.0
PAINT_RANGE_M = 70.0
OBJECT_RANGE_M = 170.0
_SHIFT = 3  # sub-pixel bits for cv2.fillPoly
_SCALE = float(1 << _SHIFT)
SKY_TOP = np.array([205.0, 150.0, 95.0])  # BGR
SKY_HORIZON = np.array([235.0, 215.0, 195.0])
HAZE = np.array([205.0, 200.0, 190.0])
TERRAIN_NEAR = np.array([70.0, 125.0, 105.0])
_SUN = np.array([0.55, 0.35, 0.76]) / np.linalg.norm([0.55, 0.35, 0.76])

# Box faces as corner indices (corner 4*ix + 2*iy + iz) and their local normals; no bottom face.
_FACE_CORNERS = np.array([[4, 5, 7, 6], [0, 2, 3, 1], [2, 6, 7, 3], [0, 1, 5, 4], [1, 3, 7, 5]])
_FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], float)


@dataclass
class Faces:
    """Box faces in the global frame: vertices [F, 4, 3], normals [F, 3], shaded colours [F, 3]."""

    vertices: np.ndarray
    normals: np.ndarray
    colors: np.ndarray

    @classmethod
    def of_boxes(cls, boxes: BoxSet) -> Faces:
        corners = boxes.corners()  # [M, 8, 3]
        vertices = corners[:, _FACE_CORNERS].reshape(-1, 4, 3)
        normals = np.einsum("mij,fj->mfi", boxes.rotations(), _FACE_NORMALS).reshape(-1, 3)
        shade = 0.62 + 0.38 * (normals @ _SUN)
        colors = (boxes.colors[:, None, :] * shade.reshape(len(boxes), -1, 1)).reshape(-1, 3)
        return cls(vertices, normals, colors)

    @classmethod
    def concat(cls, parts: list[Faces]) -> Faces:
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("vertices", "normals", "colors")
            )
        )


class SceneRenderer:
    """Renders the six cameras of one scene; static geometry is prepared once."""

    def __init__(self, world: World, cameras: tuple[Camera, ...]) -> None:
        self.world = world
        self.cameras = cameras
        self.static_faces = Faces.of_boxes(world.static_boxes)
        self._static_centres = self.static_faces.vertices.mean(axis=1)[:, :2]
        self._strips = [
            (
                s.layer,
                s.color,
                _lift(s.left),
                _lift(s.right),
                np.concatenate([s.left, s.right]).min(0),
                np.concatenate([s.left, s.right]).max(0),
            )
            for s in sorted(world.strips, key=lambda strip: strip.layer)
        ]
        self._dashes = {
            color: np.concatenate([quads, np.zeros((*quads.shape[:2], 1))], axis=-1)
            for color, quads in world.dashes.items()
        }
        self._backgrounds = {cam.channel: _background(cam) for cam in cameras}

    def render(self, t: float, ego_to_global: np.ndarray) -> dict[str, np.ndarray]:
        """BGR images [H, W, 3] uint8 of every camera at time ``t``."""
        position = ego_to_global[:2, 3]
        near = np.linalg.norm(self._static_centres - position, axis=1) < OBJECT_RANGE_M
        static = Faces(
            *(
                a[near]
                for a in (
                    self.static_faces.vertices,
                    self.static_faces.normals,
                    self.static_faces.colors,
                )
            )
        )
        faces = Faces.concat([static, Faces.of_boxes(self.world.agent_boxes(t))])
        ground = self._ground_near(position)
        dashes = {
            color: quads[np.linalg.norm(quads[:, 0, :2] - position, axis=1) < PAINT_RANGE_M]
            for color, quads in self._dashes.items()
        }
        images = {}
        for camera in self.cameras:
            global_from_camera = ego_to_global @ camera.sensor_to_ego
            images[camera.channel] = self._render_camera(
                camera, global_from_camera, faces, ground, dashes
            )
        return images

    def _ground_near(self, position: np.ndarray) -> list[tuple[tuple, np.ndarray]]:
        """(colour, polygon [N, 3]) of the ground strips within range, in drawing order."""
        polygons = []
        for _layer, color, left, right, low, high in self._strips:
            if (np.maximum(low - position, position - high) > GROUND_RANGE_M).any():
                continue
            near = np.linalg.norm(left[:, :2] - position, axis=1) < GROUND_RANGE_M
            for run in _runs(near):
                polygons.append((color, np.concatenate([left[run], right[run][::-1]])))
        return polygons

    def _render_camera(
        self,
        camera: Camera,
        global_from_camera: np.ndarray,
        faces: Faces,
        ground: list,
        dashes: dict,
    ) -> np.ndarray:
        image = self._backgrounds[camera.channel].copy()
        rotation = global_from_camera[:3, :3].T  # global -> camera
        translation = -rotation @ global_from_camera[:3, 3]
        projector = _Projector(camera, rotation, translation)
        for color, polygon in ground:
            pixels = projector.polygon(polygon)
            if pixels is not None:
                cv2.fillPoly(image, [pixels], color, cv2.LINE_8, _SHIFT)
        for color, close in dashes.items():
            polygons = projector.polygons(close @ rotation.T + translation)
            if polygons:
                cv2.fillPoly(image, polygons, color, cv2.LINE_8, _SHIFT)
        self._draw_faces(image, projector, faces)
        return image

    def _draw_faces(self, image: np.ndarray, projector: _Projector, faces: Faces) -> None:
        vertices = faces.vertices @ projector.rotation.T + projector.translation  # [F, 4, 3]
        centres = vertices.mean(axis=1)
        normals = faces.normals @ projector.rotation.T
        facing = np.einsum("fi,fi->f", normals, centres) < 0.0
        keep = np.nonzero(facing & (vertices[..., 2].max(axis=1) > NEAR_M))[0]
        distance = np.linalg.norm(centres[keep], axis=1)
        far_first = np.argsort(-distance, kind="stable")
        keep, distance = keep[far_first], distance[far_first]
        haze = np.clip((distance - 40.0) / 350.0, 0.0, 0.6)[:, None]
        colors = (faces.colors[keep] * (1.0 - haze) + HAZE * haze).tolist()
        for polygon, color in zip(
            projector.polygons(vertices[keep], keep_empty=True), colors, strict=True
        ):
            if polygon is not None:
                cv2.fillPoly(image, [polygon], color, cv2.LINE_8, _SHIFT)


class _Projector:
    def __init__(self, camera: Camera, rotation: np.ndarray, translation: np.ndarray) -> None:
        self.rotation, self.translation = rotation, translation
        self.fx, self.fy = camera.intrinsic[0, 0], camera.intrinsic[1, 1]
        self.cx, self.cy = camera.intrinsic[0, 2], camera.intrinsic[1, 2]
        self.width, self.height = camera.width, camera.height
        # Side planes of the view frustum through the camera centre, as inward normals [4, 3].
        self.planes = np.array(
            [
                [1.0, 0.0, self.cx / self.fx],
                [-1.0, 0.0, (self.width - self.cx) / self.fx],
                [0.0, 1.0, self.cy / self.fy],
                [0.0, -1.0, (self.height - self.cy) / self.fy],
            ]
        )

    def outside(self, points: np.ndarray) -> np.ndarray:
        """Polygons [..., N, 3] (camera frame) wholly outside one side plane of the frustum."""
        return ((points @ self.planes.T) < 0.0).all(axis=-2).any(axis=-1)

    def polygon(self, points: np.ndarray) -> np.ndarray | None:
        """Fixed-point pixel polygon of global points [N, 3], or None when not in front."""
        return self.camera_polygon(points @ self.rotation.T + self.translation)

    def camera_polygon(self, points: np.ndarray) -> np.ndarray | None:
        if self.outside(points):
            return None
        return self._clipped(points)

    def _clipped(self, points: np.ndarray) -> np.ndarray | None:
        clipped = clip_near(points)
        if clipped is None or len(clipped) < 3:
            return None
        u = self.fx * clipped[:, 0] / clipped[:, 2] + self.cx
        v = self.fy * clipped[:, 1] / clipped[:, 2] + self.cy
        if u.max() < 0 or v.max() < 0 or u.min() > self.width or v.min() > self.height:
            return None
        pixels = np.stack([u, v], axis=-1) * _SCALE
        return np.clip(pixels, -2e8, 2e8).astype(np.int32)

    def polygons(self, quads: np.ndarray, keep_empty: bool = False) -> list:
        """Fixed-point pixel polygons of quads [K, 4, 3] (camera frame), in order.

        Quads wholly in front of the near plane are projected together; the few that cross it
        are clipped one by one. Quads that cannot be seen are dropped (None if ``keep_empty``).
        """
        depth = quads[..., 2]
        in_front = depth.min(axis=1) >= NEAR_M
        safe = np.where(in_front[:, None], depth, 1.0)
        u = self.fx * quads[..., 0] / safe + self.cx
        v = self.fy * quads[..., 1] / safe + self.cy
        outside = self.outside(quads)
        # Faces under a pixel in both directions would not change the picture.
        outside |= in_front & (np.ptp(u, axis=1) < 1.0) & (np.ptp(v, axis=1) < 1.0)
        pixels = (np.stack([u, v], axis=-1) * _SCALE).astype(np.int32)  # [K, 4, 2]
        result = []
        for index in range(len(quads)):
            if in_front[index]:
                polygon = None if outside[index] else pixels[index]
            elif not outside[index]:
                polygon = self._clipped(quads[index])
            else:
                polygon = None
            if polygon is not None or keep_empty:
                result.append(polygon)
        return result


def clip_near(points: np.ndarray) -> np.ndarray | None:
    """Polygon [N, 3] (camera frame) clipped to z >= NEAR_M (Sutherland-Hodgman, one plane)."""
    depth = points[:, 2]
    inside = depth >= NEAR_M
    if inside.all():
        return points
    if not inside.any():
        return None
    following = np.concatenate([points[1:], points[:1]])
    crosses = inside != np.concatenate([inside[1:], inside[:1]])
    step = np.where(crosses, following[:, 2] - depth, 1.0)
    crossing = points + ((NEAR_M - depth) / step)[:, None] * (following - points)
    candidates = np.concatenate([points[:, None], crossing[:, None]], axis=1)  # [N, 2, 3]
    return candidates[np.concatenate([inside[:, None], crosses[:, None]], axis=1)]


def _runs(mask: np.ndarray) -> list[slice]:
    """Slices of consecutive True values (at least two long)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    return [slice(a, b) for a, b in zip(starts, ends, strict=True) if b - a >= 2]


def _lift(xy: np.ndarray) -> np.ndarray:
    return np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)


def _background(camera: Camera) -> np.ndarray:
    """Sky above the horizon, terrain below, both hazier towards the horizon."""
    rows = np.arange(camera.height, dtype=np.float64)
    horizon = camera.intrinsic[1, 2]
    fy = camera.intrinsic[1, 1]
    above = np.clip((horizon - rows) / max(horizon, 1.0), 0.0, 1.0)[:, None]
    sky = SKY_HORIZON * (1 - above) + SKY_TOP * above
    # Ground distance seen by a row (camera ~1.5 m high): far rows fade into haze.
    distance = 1.5 * fy / np.maximum(rows - horizon, 1e-3)
    haze = np.clip(distance / 300.0, 0.0, 0.8)[:, None]
    ground = TERRAIN_NEAR * (1 - haze) + HAZE * haze
    column = np.where((rows < horizon)[:, None], sky, ground)
    return np.repeat(column[:, None, :], camera.width, axis=1).round().astype(np.uint8)
