"""Exact ray casting against the world's boxes and the flat ground (z = 0).

Rays are a 2D grid of directions from one origin. Each box is only tested against the block of
rays its corners span in that grid, so the cost follows the boxes' angular size.
"""

from __future__ import annotations

import numpy as np

from occvla_ros.data.synth.world import BoxSet

NO_HIT = np.inf


def cast_boxes(
    origin: np.ndarray, directions: np.ndarray, boxes: BoxSet, spans: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the first box along each ray and the index of that box (-1: none).

    ``directions`` [H, W, 3] are unit vectors in the boxes' frame; ``spans`` [M, 4] gives per
    box the block of rays (row0, row1, col0, col1) that may hit it (empty: none can).
    """
    height, width = directions.shape[:2]
    distance = np.full((height, width), NO_HIT)
    hit = np.full((height, width), -1, dtype=np.int64)
    candidates = np.nonzero((spans[:, 1] > spans[:, 0]) & (spans[:, 3] > spans[:, 2]))[0]
    if len(candidates) == 0:
        return distance, hit
    rotations = boxes.rotations()
    local_origins = np.einsum("mji,mj->mi", rotations, origin - boxes.centers)  # R^T (o - c)
    for index in candidates:
        row0, row1, col0, col1 = spans[index]
        block = directions[row0:row1, col0:col1]  # [h, w, 3]
        near, far = _slab(local_origins[index], block @ rotations[index], boxes.half[index])
        near = np.maximum(near, 0.0)
        current = distance[row0:row1, col0:col1]
        better = (far >= near) & (near < current)
        current[better] = near[better]
        hit[row0:row1, col0:col1][better] = index
    return distance, hit


def _slab(origin: np.ndarray, directions: np.ndarray, half: np.ndarray):
    """Entry and exit distances [h, w] of rays [h, w, 3] through the box |p| <= half (box
    frame); the ray misses where exit < entry. Written per axis: reductions over a length-3 last
    axis are slow."""
    near, far = None, None
    for axis in range(3):
        component = directions[..., axis]
        inverse = 1.0 / np.where(np.abs(component) < 1e-12, 1e-12, component)
        low = (-half[axis] - origin[axis]) * inverse
        high = (half[axis] - origin[axis]) * inverse
        entry, leave = np.minimum(low, high), np.maximum(low, high)
        near = entry if near is None else np.maximum(near, entry)
        far = leave if far is None else np.minimum(far, leave)
    return near, far


def cast_ground(origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distance to the plane z = 0 along each ray (inf for rays that do not go down)."""
    down = directions[..., 2]
    with np.errstate(divide="ignore"):
        distance = np.where(down < -1e-9, -origin[2] / np.where(down < 0, down, -1.0), NO_HIT)
    return distance
