"""LIDAR_TOP: 32 beams x N azimuth steps cast against the world; nuScenes point format."""

from __future__ import annotations

import math

import numpy as np

from occvla_ros.constants import OCC_CLASS_ID
from occvla_ros.data.synth.raycast import cast_boxes, cast_ground
from occvla_ros.data.synth.rig import Lidar
from occvla_ros.data.synth.world import BoxSet

# Return intensity by what the beam hit (asphalt is dark, paint and buildings bright).
_INTENSITY = {
    OCC_CLASS_ID["driveable_surface"]: 8.0,
    OCC_CLASS_ID["sidewalk"]: 25.0,
    OCC_CLASS_ID["terrain"]: 15.0,
}
_BOX_INTENSITY = 40.0


class LidarScanner:
    """Rays fixed in the ego frame; ``scan`` returns points in the LIDAR_TOP frame."""

    def __init__(self, lidar: Lidar, max_range_m: float) -> None:
        self.lidar = lidar
        self.max_range = max_range_m
        self.origin = lidar.sensor_to_ego[:3, 3]
        self.azimuths = np.linspace(-math.pi, math.pi, lidar.azimuth_steps, endpoint=False)
        elevation = lidar.elevations_rad[:, None]
        self.directions = np.stack(  # [beams, azimuths, 3] in the ego frame
            np.broadcast_arrays(
                np.cos(elevation) * np.cos(self.azimuths),
                np.cos(elevation) * np.sin(self.azimuths),
                np.sin(elevation),
            ),
            axis=-1,
        )
        self.azimuth_step = 2 * math.pi / lidar.azimuth_steps

    def spans(self, corners: np.ndarray) -> np.ndarray:
        """Ray blocks [M, 4] (row0, row1, col0, col1) that boxes' corners [M, 8, 3] span."""
        offset = corners - self.origin  # [M, 8, 3]
        distance = np.linalg.norm(offset, axis=-1)
        elevation = np.arcsin(np.clip(offset[..., 2] / np.maximum(distance, 1e-6), -1, 1))
        beams = self.lidar.elevations_rad
        row0 = np.searchsorted(beams, elevation.min(1) - 0.03)
        row1 = np.searchsorted(beams, elevation.max(1) + 0.03, side="right")
        azimuth = np.arctan2(offset[..., 1], offset[..., 0])
        centre = np.arctan2(offset[..., 1].mean(1), offset[..., 0].mean(1))
        relative = (azimuth - centre[:, None] + math.pi) % (2 * math.pi) - math.pi
        low = centre + relative.min(1)
        high = centre + relative.max(1)
        col0 = np.floor((low + math.pi) / self.azimuth_step).astype(np.int64)
        col1 = np.floor((high + math.pi) / self.azimuth_step).astype(np.int64) + 2
        full = (high - low > math.pi) | (low < -math.pi) | (high >= math.pi)
        col0[full], col1[full] = 0, len(self.azimuths)
        spans = np.stack([row0, row1, col0, np.minimum(col1, len(self.azimuths))], axis=1)
        spans[distance.min(1) > self.max_range] = 0
        return spans

    def scan(
        self, boxes_ego: BoxSet, ground_class, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Points [N, 5] float32 (x, y, z, intensity, ring) in the lidar frame, and the owner
        (agent index, -1 for scenery/ground) of each point.

        ``ground_class(points_ego [N, 2]) -> [N]`` gives the ground's Occ3D class under a point.
        """
        box_distance, box_index = cast_boxes(
            self.origin, self.directions, boxes_ego, self.spans(boxes_ego.corners())
        )
        ground_distance = cast_ground(self.origin, self.directions)
        distance = np.minimum(box_distance, ground_distance)
        valid = distance <= self.max_range
        on_box = valid & (box_distance <= ground_distance)
        # Range noise of a few centimetres, as a real sensor has.
        noisy = np.where(valid, distance + rng.normal(0.0, 0.02, size=distance.shape), 0.0)
        points_ego = self.origin + self.directions * noisy[..., None]
        intensity = np.full(distance.shape, _BOX_INTENSITY)
        ground_hits = valid & ~on_box
        classes = ground_class(points_ego[ground_hits][:, :2])
        intensity[ground_hits] = np.vectorize(_INTENSITY.get)(classes, 10.0)
        owner = np.full(distance.shape, -1, dtype=np.int64)
        owner[on_box] = boxes_ego.owner[box_index[on_box]]
        ring = np.broadcast_to(np.arange(distance.shape[0])[:, None], distance.shape)
        to_lidar = np.linalg.inv(self.lidar.sensor_to_ego)
        xyz = points_ego[valid] @ to_lidar[:3, :3].T + to_lidar[:3, 3]
        points = np.concatenate(
            [xyz, intensity[valid][:, None], ring[valid][:, None].astype(np.float64)], axis=1
        ).astype(np.float32)
        return points, owner[valid]
