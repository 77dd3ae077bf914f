"""The sensor rig: six cameras and LIDAR_TOP placed approximately as on the nuScenes car.

Camera optical frames are x right, y down, z forward; LIDAR_TOP is x right, y forward, z up
(rotated -90 degrees about z from the ego frame). Intrinsics are the nuScenes values at 1600x900
and scale with the configured resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from occvla_ros.constants import CAMERA_NAMES, LIDAR_NAME, NUSCENES_IMAGE_SIZE
from occvla_ros.geometry import make_transform, matrix_to_quat_wxyz, yaw_to_quat_wxyz

# channel -> (translation in the ego frame [m], yaw [deg], fx, cx, cy at 1600x900)
_CAMERA_LAYOUT: dict[str, tuple[tuple[float, float, float], float, float, float, float]] = {
    "CAM_FRONT": ((1.70, 0.02, 1.51), 0.0, 1266.4, 816.3, 491.5),
    "CAM_FRONT_RIGHT": ((1.55, -0.49, 1.50), -55.0, 1260.8, 807.9, 495.3),
    "CAM_FRONT_LEFT": ((1.52, 0.49, 1.51), 55.0, 1272.6, 826.6, 479.8),
    "CAM_BACK": ((0.03, 0.01, 1.57), 180.0, 809.2, 829.2, 481.8),
    "CAM_BACK_LEFT": ((1.04, 0.81, 1.49), 110.0, 1256.7, 817.8, 451.9),
    "CAM_BACK_RIGHT": ((1.04, -0.81, 1.49), -110.0, 1259.5, 807.3, 501.2),
}
LIDAR_TRANSLATION = (0.94, 0.0, 1.84)
LIDAR_YAW = -math.pi / 2
# HDL-32E: 32 beams from -30.67 to +10.67 degrees elevation.
LIDAR_ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)

# Rotation taking optical-frame axes (x right, y down, z forward) to a forward-looking ego frame.
_OPTICAL_TO_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


class _MountedSensor:
    """A sensor's pose on the car as nuScenes' calibrated_sensor records it."""

    sensor_to_ego: np.ndarray  # [4, 4]

    @property
    def translation(self) -> list[float]:
        return [float(v) for v in self.sensor_to_ego[:3, 3]]

    @property
    def rotation(self) -> list[float]:
        """Quaternion w, x, y, z."""
        return [float(v) for v in matrix_to_quat_wxyz(self.sensor_to_ego[:3, :3])]


@dataclass(frozen=True)
class Camera(_MountedSensor):
    channel: str
    width: int
    height: int
    intrinsic: np.ndarray  # [3, 3]
    sensor_to_ego: np.ndarray  # [4, 4]


@dataclass(frozen=True)
class Lidar(_MountedSensor):
    channel: str
    sensor_to_ego: np.ndarray  # [4, 4]
    elevations_rad: np.ndarray  # [32]
    azimuth_steps: int


@dataclass(frozen=True)
class Rig:
    cameras: tuple[Camera, ...]  # in constants.CAMERA_NAMES order
    lidar: Lidar


def build_rig(width: int, height: int, lidar_azimuth_steps: int) -> Rig:
    """The rig at ``width`` x ``height`` pixels (intrinsics scaled from 1600x900)."""
    scale_x = width / NUSCENES_IMAGE_SIZE[0]
    scale_y = height / NUSCENES_IMAGE_SIZE[1]
    cameras = []
    for channel in CAMERA_NAMES:
        translation, yaw_deg, fx, cx, cy = _CAMERA_LAYOUT[channel]
        intrinsic = np.array(
            [[fx * scale_x, 0.0, cx * scale_x], [0.0, fx * scale_y, cy * scale_y], [0, 0, 1.0]]
        )
        yaw = make_transform((0, 0, 0), yaw_to_quat_wxyz(math.radians(yaw_deg)))[:3, :3]
        sensor_to_ego = np.eye(4)
        sensor_to_ego[:3, :3] = yaw @ _OPTICAL_TO_FORWARD
        sensor_to_ego[:3, 3] = translation
        cameras.append(Camera(channel, width, height, intrinsic, sensor_to_ego))
    lidar = Lidar(
        LIDAR_NAME,
        make_transform(LIDAR_TRANSLATION, yaw_to_quat_wxyz(LIDAR_YAW)),
        np.radians(LIDAR_ELEVATIONS_DEG),
        lidar_azimuth_steps,
    )
    return Rig(tuple(cameras), lidar)
