"""Occ3D-nuScenes labels of a keyframe: semantics and the camera / lidar visibility masks.

Semantics voxelise the world in the keyframe's ego frame: the ground surface (z = 0) lies in
layer k = 2 with the ground raster's class; every box marks the voxels whose centres it contains
(boxes thinner than a voxel still mark one). Visibility is ray casting from the sensor origins:
a voxel at or above the ground is observed by a sensor when it is inside the sensor's field of
view and no box surface lies in front of it along the ray through it (the flat ground cannot hide
anything above it). The ray grids are fixed in the ego frame, so each voxel's ray and range are
computed once per rig and each keyframe only needs the boxes' depth maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from occvla_ros.constants import (
    FREE_CLASS,
    OCC_GRID_SHAPE,
    OCC_RANGE_MIN,
    OCC_VOXEL_SIZE,
)
from occvla_ros.data.synth.lidar import LidarScanner
from occvla_ros.data.synth.raycast import cast_boxes
from occvla_ros.data.synth.rig import Camera, Rig
from occvla_ros.data.synth.world import BoxSet

DEPTH_GRID = (90, 160)  # camera depth-map bins (rows, cols) over the image
SURFACE_TOLERANCE_M = 0.35  # a voxel whose centre is this close behind a surface is that surface
GROUND_LAYER = round((0.0 - OCC_RANGE_MIN[2]) / OCC_VOXEL_SIZE - 0.5)  # k of z = 0
_MIN_HALF = OCC_VOXEL_SIZE / 2
_NEAR_M = 0.05
# The 12 edges of a box as pairs of corner indices (corner 4*ix + 2*iy + iz).
_BOX_EDGES = np.array([(a, a | bit) for a in range(8) for bit in (1, 2, 4) if not a & bit])


def voxel_centres() -> np.ndarray:
    """Voxel centres [200, 200, 16, 3] in the ego frame."""
    axes = [
        OCC_RANGE_MIN[a] + OCC_VOXEL_SIZE * (np.arange(OCC_GRID_SHAPE[a]) + 0.5) for a in range(3)
    ]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


@dataclass
class _Lookup:
    """For the voxels a sensor can see: flat voxel index, flat ray-grid bin, range."""

    voxels: np.ndarray
    bins: np.ndarray
    ranges: np.ndarray

    def visible(self, depth: np.ndarray) -> np.ndarray:
        return self.voxels[self.ranges <= depth.reshape(-1)[self.bins] + SURFACE_TOLERANCE_M]


class _CameraView:
    def __init__(self, camera: Camera, centres: np.ndarray) -> None:
        self.camera = camera
        self.rotation = camera.sensor_to_ego[:3, :3]
        self.origin = camera.sensor_to_ego[:3, 3]
        rows, cols = DEPTH_GRID
        self.scale = np.array([camera.width / cols, camera.height / rows])
        u = (np.arange(cols) + 0.5) * self.scale[0]
        v = (np.arange(rows) + 0.5) * self.scale[1]
        grid_u, grid_v = np.meshgrid(u, v)
        k = camera.intrinsic
        rays = np.stack(
            [(grid_u - k[0, 2]) / k[0, 0], (grid_v - k[1, 2]) / k[1, 1], np.ones_like(grid_u)],
            axis=-1,
        )
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        self.directions = rays @ self.rotation.T  # [rows, cols, 3] ego frame
        flat = centres.reshape(-1, 3)
        candidates = np.nonzero(flat[:, 2] >= -1e-6)[0]  # nothing below the ground is seen
        local = (flat[candidates] - self.origin) @ self.rotation
        in_front = local[:, 2] > 0.3
        pixel_u = k[0, 0] * local[:, 0] / np.where(in_front, local[:, 2], 1.0) + k[0, 2]
        pixel_v = k[1, 1] * local[:, 1] / np.where(in_front, local[:, 2], 1.0) + k[1, 2]
        inside = in_front & (pixel_u >= 0) & (pixel_u < camera.width)
        inside &= (pixel_v >= 0) & (pixel_v < camera.height)
        col = np.minimum((pixel_u[inside] / self.scale[0]).astype(np.int64), cols - 1)
        row = np.minimum((pixel_v[inside] / self.scale[1]).astype(np.int64), rows - 1)
        self.lookup = _Lookup(
            candidates[inside], row * cols + col, np.linalg.norm(local[inside], axis=1)
        )

    def spans(self, corners: np.ndarray) -> np.ndarray:
        """Depth-map blocks [M, 4] (row0, row1, col0, col1) that boxes' corners [M, 8, 3] span.

        A box that reaches behind the camera is clipped at a near plane first (its visible part
        is the convex hull of its corners in front and its edges' crossings of that plane).
        """
        local = (corners - self.origin) @ self.rotation  # [M, 8, 3]
        first, second = local[:, _BOX_EDGES[:, 0]], local[:, _BOX_EDGES[:, 1]]  # [M, 12, 3]
        depth_a, depth_b = first[..., 2:] - _NEAR_M, second[..., 2:] - _NEAR_M
        crosses = (depth_a * depth_b < 0.0)[..., 0]
        step = np.where(
            crosses[..., None], depth_a / np.where(crosses[..., None], depth_a - depth_b, 1.0), 0.0
        )
        crossings = first + step * (second - first)  # on the near plane where crosses
        points = np.concatenate([local, crossings], axis=1)  # [M, 20, 3]
        valid = np.concatenate([local[..., 2] >= _NEAR_M, crosses], axis=1)
        depth = np.where(valid, points[..., 2], 1.0)
        k = self.camera.intrinsic
        col = (k[0, 0] * points[..., 0] / depth + k[0, 2]) / self.scale[0]
        row = (k[1, 1] * points[..., 1] / depth + k[1, 2]) / self.scale[1]
        spans = np.stack(
            [
                np.floor(np.where(valid, row, np.inf).min(1)) - 1,
                np.floor(np.where(valid, row, -np.inf).max(1)) + 2,
                np.floor(np.where(valid, col, np.inf).min(1)) - 1,
                np.floor(np.where(valid, col, -np.inf).max(1)) + 2,
            ],
            axis=1,
        )
        rows, cols = DEPTH_GRID
        spans[~valid.any(axis=1)] = 0
        return np.clip(spans, 0, [rows, rows, cols, cols]).astype(np.int64)

    def bin_of(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(in view mask, flat bin, range) of ego-frame points [N, 3]."""
        local = (points - self.origin) @ self.rotation
        k = self.camera.intrinsic
        depth = np.where(local[:, 2] > 0.3, local[:, 2], 1.0)
        u = k[0, 0] * local[:, 0] / depth + k[0, 2]
        v = k[1, 1] * local[:, 1] / depth + k[1, 2]
        inside = (local[:, 2] > 0.3) & (u >= 0) & (u < self.camera.width)
        inside &= (v >= 0) & (v < self.camera.height)
        rows, cols = DEPTH_GRID
        col = np.clip((u / self.scale[0]).astype(np.int64), 0, cols - 1)
        row = np.clip((v / self.scale[1]).astype(np.int64), 0, rows - 1)
        return inside, row * cols + col, np.linalg.norm(local, axis=1)


@dataclass
class KeyframeOccupancy:
    semantics: np.ndarray  # uint8 [200, 200, 16]
    mask_camera: np.ndarray  # uint8 [200, 200, 16]
    mask_lidar: np.ndarray  # uint8 [200, 200, 16]
    camera_depths: list[tuple[np.ndarray, np.ndarray]]  # per camera: depth, owner [rows, cols]


class OccupancyLabeler:
    """Voxelises a keyframe and casts the visibility masks; built once per rig."""

    def __init__(self, rig: Rig, lidar: LidarScanner) -> None:
        self.centres = voxel_centres()
        self.views = [_CameraView(camera, self.centres) for camera in rig.cameras]
        self.lidar = lidar
        self.lidar_lookup = self._lidar_lookup()
        ground = self.centres[:, :, GROUND_LAYER, :2]  # [200, 200, 2]
        self.ground_xy = ground.reshape(-1, 2)

    def _lidar_lookup(self) -> _Lookup:
        flat = self.centres.reshape(-1, 3)
        candidates = np.nonzero(flat[:, 2] >= -1e-6)[0]
        offset = flat[candidates] - self.lidar.origin
        ranges = np.linalg.norm(offset, axis=1)
        elevation = np.arcsin(offset[:, 2] / ranges)
        beams = self.lidar.lidar.elevations_rad
        spacing = float(beams[1] - beams[0])
        row = np.clip(
            np.round((elevation - beams[0]) / spacing).astype(np.int64), 0, len(beams) - 1
        )
        covered = (elevation >= beams[0] - spacing / 2) & (elevation <= beams[-1] + spacing / 2)
        covered &= ranges <= self.lidar.max_range
        azimuth = np.arctan2(offset[:, 1], offset[:, 0])
        col = ((azimuth + math.pi) / self.lidar.azimuth_step).astype(np.int64)
        col = np.clip(col, 0, len(self.lidar.azimuths) - 1)
        bins = row * len(self.lidar.azimuths) + col
        return _Lookup(candidates[covered], bins[covered], ranges[covered])

    def label(
        self, boxes_ego: BoxSet, ego_to_global: np.ndarray, ground_class
    ) -> KeyframeOccupancy:
        semantics = np.full(OCC_GRID_SHAPE, FREE_CLASS, dtype=np.uint8)
        ground_global = self.ground_xy @ ego_to_global[:2, :2].T + ego_to_global[:2, 3]
        semantics[:, :, GROUND_LAYER] = ground_class(ground_global).reshape(OCC_GRID_SHAPE[:2])
        self._voxelise(semantics, boxes_ego)
        mask_camera = np.zeros(semantics.size, dtype=np.uint8)
        corners = boxes_ego.corners()
        depths = []
        for view in self.views:
            spans = view.spans(corners)
            depth, index = cast_boxes(view.origin, view.directions, boxes_ego, spans)
            owner = np.where(index >= 0, boxes_ego.owner[np.maximum(index, 0)], -2)
            depths.append((depth, owner))
            mask_camera[view.lookup.visible(depth)] = 1
        lidar_depth, _ = cast_boxes(
            self.lidar.origin, self.lidar.directions, boxes_ego, self.lidar.spans(corners)
        )
        mask_lidar = np.zeros(semantics.size, dtype=np.uint8)
        mask_lidar[self.lidar_lookup.visible(lidar_depth)] = 1
        return KeyframeOccupancy(
            semantics,
            mask_camera.reshape(OCC_GRID_SHAPE),
            mask_lidar.reshape(OCC_GRID_SHAPE),
            depths,
        )

    def _voxelise(self, semantics: np.ndarray, boxes: BoxSet) -> None:
        """Write each box's class into the voxels whose centres it contains (in box order)."""
        corners = boxes.corners()
        low_corner = np.asarray(OCC_RANGE_MIN)
        for index in range(len(boxes)):
            low = np.floor((corners[index].min(0) - low_corner) / OCC_VOXEL_SIZE).astype(int)
            high = np.ceil((corners[index].max(0) - low_corner) / OCC_VOXEL_SIZE).astype(int) + 1
            low = np.maximum(low, 0)
            high = np.minimum(high, OCC_GRID_SHAPE)
            if (low >= high).any():
                continue
            block = self.centres[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
            cos, sin = math.cos(boxes.yaw[index]), math.sin(boxes.yaw[index])
            offset = block - boxes.centers[index]
            local_x = cos * offset[..., 0] + sin * offset[..., 1]
            local_y = -sin * offset[..., 0] + cos * offset[..., 1]
            half = np.maximum(boxes.half[index], _MIN_HALF)
            inside = (np.abs(local_x) <= half[0]) & (np.abs(local_y) <= half[1])
            inside &= np.abs(offset[..., 2]) <= half[2]
            region = semantics[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
            region[inside] = boxes.occ[index]

    def visibility(
        self, agent_index: int, box_corners: np.ndarray, depths: list[tuple[np.ndarray, np.ndarray]]
    ) -> float:
        """Fraction of an agent's 8 corners (pulled 10% inwards) and centre seen by a camera:
        in view, and either the first surface along the ray is the agent or nothing is in front.
        """
        centre = box_corners.mean(axis=0)
        points = np.concatenate([centre + 0.9 * (box_corners - centre), centre[None]])
        seen = np.zeros(len(points), dtype=bool)
        for view, (depth, owner) in zip(self.views, depths, strict=True):
            inside, bins, ranges = view.bin_of(points)
            first = depth.reshape(-1)[bins]
            by_self = owner.reshape(-1)[bins] == agent_index
            seen |= inside & (by_self | (ranges <= first + SURFACE_TOLERANCE_M))
        return float(seen.mean())
