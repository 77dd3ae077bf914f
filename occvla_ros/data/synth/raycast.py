"""Exact ray casting against the world's boxes and the flat ground (z = 0).

Rays are a 2D grid of directions from one origin. Each box is only tested against the block of
rays its corners span in that grid, so the cost follows the boxes' angular size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from occvla_ros.data.synth.world import BoxSet

NO_HIT = np.inf


def cast_boxes(
    origin: np.ndarray,
    directions: np.ndarray,
    boxes: BoxSet,
    grid_span: Callable[[np.ndarray], tuple[slice, slice] | None],
) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the first box along each ray and the index of that box (-1: none).

    ``directions`` [H, W, 3] are unit vectors in the boxes' frame; ``grid_span(corners [8, 3])``
    returns the (rows, cols) block of rays that may hit a box, or None if none can.
    """
    height, width = directions.shape[:2]
    distance = np.full((height, width), NO_HIT)
    hit = np.full((height, width), -1, dtype=np.int64)
    if len(boxes) == 0:
        return distance, hit
    corners = boxes.corners()
    rotations = boxes.rotations()
    for index in range(len(boxes)):
        span = grid_span(corners[index])
        if span is None:
            continue
        rows, cols = span
        block = directions[rows, cols]  # [h, w, 3]
        local_dirs = block @ rotations[index]  # box frame: R^T d
        local_origin = (origin - boxes.centers[index]) @ rotations[index]
        near, far = _slab(local_origin, local_dirs, boxes.half[index])
        better = (far >= np.maximum(near, 0.0)) & (np.maximum(near, 0.0) < distance[rows, cols])
        if better.any():
            distance[rows, cols] = np.where(better, np.maximum(near, 0.0), distance[rows, cols])
            hit[rows, cols] = np.where(better, index, hit[rows, cols])
    return distance, hit


def _slab(origin: np.ndarray, directions: np.ndarray, half: np.ndarray):
    safe = np.where(np.abs(directions) < 1e-12, 1e-12, directions)
    low = (-half - origin) / safe
    high = (half - origin) / safe
    near = np.minimum(low, high).max(axis=-1)
    far = np.maximum(low, high).min(axis=-1)
    return near, far


def cast_ground(origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distance to the plane z = 0 along each ray (inf for rays that do not go down)."""
    down = directions[..., 2]
    with np.errstate(divide="ignore"):
        distance = np.where(down < -1e-9, -origin[2] / np.where(down < 0, down, -1.0), NO_HIT)
    return distance
