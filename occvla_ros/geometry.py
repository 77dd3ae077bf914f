"""Rigid transforms and quaternions, written once.

Quaternions are (w, x, y, z) as in nuScenes and pyquaternion; ROS messages store (x, y, z, w):
convert only with :func:`quat_wxyz_to_ros_xyzw` / :func:`ros_xyzw_to_quat_wxyz`. Transforms are
4x4 homogeneous matrices mapping points of a child frame into a parent frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def quat_wxyz_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Rotation matrix [3, 3] of a (w, x, y, z) quaternion (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat_wxyz(rotation: np.ndarray) -> np.ndarray:
    """(w, x, y, z) quaternion with w >= 0 of a rotation matrix [3, 3]."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    quat = np.asarray(q)
    quat /= np.linalg.norm(quat)
    return quat if quat[0] >= 0 else -quat


def yaw_to_quat_wxyz(yaw: float) -> np.ndarray:
    """Quaternion of a rotation by ``yaw`` radians about +z."""
    return np.array([math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)])


def quat_wxyz_to_yaw(q: Sequence[float]) -> float:
    """Heading about +z of a (w, x, y, z) quaternion (the x axis projected on the xy plane)."""
    rotation = quat_wxyz_to_matrix(q)
    return math.atan2(rotation[1, 0], rotation[0, 0])


def quat_wxyz_to_ros_xyzw(q: Sequence[float]) -> tuple[float, float, float, float]:
    w, x, y, z = (float(v) for v in q)
    return x, y, z, w


def ros_xyzw_to_quat_wxyz(x: float, y: float, z: float, w: float) -> np.ndarray:
    return np.array([w, x, y, z], dtype=np.float64)


def make_transform(translation: Sequence[float], quat_wxyz: Sequence[float]) -> np.ndarray:
    """4x4 transform from a translation [3] and a (w, x, y, z) rotation."""
    transform = np.eye(4)
    transform[:3, :3] = quat_wxyz_to_matrix(quat_wxyz)
    transform[:3, 3] = np.asarray(translation, dtype=np.float64)
    return transform


def invert_transform(transform: np.ndarray) -> np.ndarray:
    rotation, translation = transform[:3, :3], transform[:3, 3]
    inverse = np.eye(4)
    inverse[:3, :3] = rotation.T
    inverse[:3, 3] = -rotation.T @ translation
    return inverse


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points [..., 3] (or [..., 2], taken at z = 0)."""
    points = np.asarray(points, dtype=np.float64)
    dims = points.shape[-1]
    if dims == 2:
        points = np.concatenate([points, np.zeros((*points.shape[:-1], 1))], axis=-1)
    moved = points @ transform[:3, :3].T + transform[:3, 3]
    return moved[..., :dims]


def wrap_angle(angle: float | np.ndarray) -> float | np.ndarray:
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def path_headings(points: np.ndarray, start_heading: float) -> np.ndarray:
    """Heading of each waypoint: direction from the previous point (the origin for the first);
    a step shorter than 1 cm keeps the previous heading (standing still)."""
    previous = np.vstack([np.zeros((1, 2)), points[:-1]])
    steps = points - previous
    headings = np.empty(len(points))
    heading = start_heading
    for index, (dx, dy) in enumerate(steps):
        if np.hypot(dx, dy) >= 0.01:
            heading = float(np.arctan2(dy, dx))
        headings[index] = heading
    return headings
