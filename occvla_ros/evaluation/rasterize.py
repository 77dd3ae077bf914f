"""Bird's-eye-view rasters for the open-loop collision metrics: agent occupancy and ego footprint.

Everything here reproduces the grid arithmetic of the public planning metrics (ST-P3/VAD, UniAD,
OmniDrive/BEV-Planner) so that a collision counted here is counted there:

- A grid covers ``[-bound, bound]`` on both axes in cells of ``resolution`` metres. Image rows
  follow the frame's y axis and columns its x axis; ST-P3/VAD draw the LiDAR frame with y pointing
  up the image, so its rows run against y (``flip_rows``).
- An agent box becomes a polygon whose corners are rounded (half to even, like ``np.round``) to
  pixel coordinates ``(coordinate + bound) / resolution`` (``(bound - y) / resolution`` on a
  flipped row axis), then filled with OpenCV's ``fillPoly``, each box on its own: the occupancy
  of a step is the union of its boxes, overlaps included, as in the reference implementations.
- The ego footprint is the set of integer cells ``i`` whose centres ``-bound + resolution * (i +
  0.5)`` lie inside (boundary included) the footprint rectangle placed at the origin; at waypoint
  ``p`` the cell on each axis is ``int(p / resolution + i)`` (``int(n - p / resolution - i)`` on a
  flipped axis), truncated and clipped to the grid. Cells that fall off the grid are therefore
  clipped onto its border row or column, never dropped.
- A rotated footprint (OmniDrive) turns the cell offsets about the grid centre by the heading of
  the step and rounds them back to integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from occvla_ros.errors import ConfigError

# Frames of the current keyframe the metrics work in.
LIDAR_FRAME = "lidar"  # LIDAR_TOP: x right, y forward
EGO_FRAME = "ego"  # ego vehicle: x forward, y left
FORWARD_AXIS = {LIDAR_FRAME: 1, EGO_FRAME: 0}


@dataclass(frozen=True)
class BevGrid:
    """A square BEV grid of ``size x size`` cells of ``resolution`` m over [-bound, bound] m."""

    bound: float = 50.0
    resolution: float = 0.5
    flip_rows: bool = False

    def __post_init__(self) -> None:
        cells = 2.0 * self.bound / self.resolution
        if self.bound <= 0 or self.resolution <= 0 or abs(cells - round(cells)) > 1e-6:
            raise ConfigError(
                f"BEV grid needs bound > 0 and a resolution dividing 2 * bound; got bound "
                f"{self.bound}, resolution {self.resolution}"
            )

    @property
    def size(self) -> int:
        return round(2.0 * self.bound / self.resolution)

    def pixel_coordinates(self, points: np.ndarray) -> np.ndarray:
        """Continuous pixel coordinates (column, row) [..., 2] of frame points (x, y) [..., 2]."""
        column = (points[..., 0] + self.bound) / self.resolution
        if self.flip_rows:
            row = (self.bound - points[..., 1]) / self.resolution
        else:
            row = (points[..., 1] + self.bound) / self.resolution
        return np.stack([column, row], axis=-1)


@dataclass(frozen=True)
class EgoFootprint:
    """The ego rectangle: ``length`` along the forward axis, centred ``forward_offset`` ahead."""

    length: float = 4.084
    width: float = 1.85
    forward_offset: float = 0.5
    rotate_with_heading: bool = False
    # Steps shorter than this keep heading 0 (OmniDrive's rule), in metres.
    min_heading_step: float = 1.0


@dataclass(frozen=True)
class FutureBoxes:
    """Boxes of the other agents at the future steps of one sample, in one frame.

    ``step`` is the 0-based future step (0 = first waypoint, 0.5 s ahead). ``size`` is (width,
    length); ``yaw`` is the heading of the length axis about +z in the same frame. ``tracked`` marks
    agents already annotated at the current keyframe (ST-P3/VAD and OmniDrive draw only those, at
    their future positions; UniAD draws every box of each future frame). ``visibility`` is the
    nuScenes visibility level 1..4, 0 when unknown. ``frame_exists[t]`` is False for steps past the
    end of the scene.
    """

    step: np.ndarray  # int [N]
    center: np.ndarray  # float [N, 2]
    size: np.ndarray  # float [N, 2] (width, length)
    yaw: np.ndarray  # float [N]
    category: np.ndarray  # str [N], nuScenes category names
    tracked: np.ndarray  # bool [N]
    visibility: np.ndarray  # int [N]
    frame_exists: np.ndarray  # bool [T]

    def __post_init__(self) -> None:
        count = len(self.step)
        shapes = {
            "center": (self.center.shape, (count, 2)),
            "size": (self.size.shape, (count, 2)),
            "yaw": (self.yaw.shape, (count,)),
            "category": (self.category.shape, (count,)),
            "tracked": (self.tracked.shape, (count,)),
            "visibility": (self.visibility.shape, (count,)),
        }
        bad = {name: got for name, (got, want) in shapes.items() if got != want}
        if bad:
            raise ConfigError(f"future boxes of {count} agents have mismatched shapes: {bad}")
        for name in ("center", "size", "yaw"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ConfigError(f"future boxes contain a non-finite {name}")

    @classmethod
    def empty(cls, num_steps: int) -> FutureBoxes:
        return cls(
            step=np.zeros(0, dtype=np.int64),
            center=np.zeros((0, 2)),
            size=np.zeros((0, 2)),
            yaw=np.zeros(0),
            category=np.zeros(0, dtype=object),
            tracked=np.zeros(0, dtype=bool),
            visibility=np.zeros(0, dtype=np.int64),
            frame_exists=np.ones(num_steps, dtype=bool),
        )

    def select(self, keep: np.ndarray) -> FutureBoxes:
        return FutureBoxes(
            step=self.step[keep],
            center=self.center[keep],
            size=self.size[keep],
            yaw=self.yaw[keep],
            category=self.category[keep],
            tracked=self.tracked[keep],
            visibility=self.visibility[keep],
            frame_exists=self.frame_exists,
        )


def box_corners(center: np.ndarray, size: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Corners [N, 4, 2] of boxes with centre [N, 2], (width, length) [N, 2] and yaw [N]."""
    half_length, half_width = size[:, 1] / 2.0, size[:, 0] / 2.0
    local = np.stack(
        [
            np.stack([half_length, half_width], axis=-1),
            np.stack([-half_length, half_width], axis=-1),
            np.stack([-half_length, -half_width], axis=-1),
            np.stack([half_length, -half_width], axis=-1),
        ],
        axis=1,
    )  # [N, 4, 2]
    cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = cos * local[..., 0] - sin * local[..., 1]
    y = sin * local[..., 0] + cos * local[..., 1]
    return np.stack([x, y], axis=-1) + center[:, None, :]


def rasterize_boxes(grid: BevGrid, boxes: FutureBoxes, num_steps: int) -> np.ndarray:
    """Occupancy uint8 [T, size, size] (1 = occupied) of ``boxes`` drawn per future step."""
    import cv2

    occupancy = np.zeros((num_steps, grid.size, grid.size), dtype=np.uint8)
    if len(boxes.step) == 0:
        return occupancy
    corners = box_corners(boxes.center, boxes.size, boxes.yaw)  # [N, 4, 2]
    polygons = np.round(grid.pixel_coordinates(corners)).astype(np.int32)  # [N, 4, 2] (col, row)
    # One fillPoly per box: given several polygons at once, fillPoly fills by the even-odd
    # rule and leaves the overlap of two boxes (a truck and its trailer) empty.
    for step, polygon in zip(boxes.step, polygons, strict=True):
        if 0 <= step < num_steps:
            cv2.fillPoly(occupancy[step], [polygon], 1)
    return occupancy


def footprint_offsets(grid: BevGrid, footprint: EgoFootprint, frame: str) -> np.ndarray:
    """Integer cell offsets [K, 2] (x-axis, y-axis) covered by the footprint at the origin.

    A cell ``i`` is covered when its centre ``-bound + resolution * (i + 0.5)`` lies inside the
    rectangle or on its boundary; on the 0.5 m grid this is 8 x 4 = 32 cells, on the 0.1 m grid
    41 x 18 = 738 cells.
    """
    half_length, half_width = footprint.length / 2.0, footprint.width / 2.0
    forward = (footprint.forward_offset - half_length, footprint.forward_offset + half_length)
    lateral = (-half_width, half_width)
    centre_of_first = -grid.bound + grid.resolution / 2.0

    def covered(low: float, high: float) -> np.ndarray:
        first = max(0, math.ceil((low - centre_of_first) / grid.resolution))
        last = math.floor((high - centre_of_first) / grid.resolution)
        return np.arange(first, last + 1)

    forward_cells, lateral_cells = covered(*forward), covered(*lateral)
    grid_forward, grid_lateral = np.meshgrid(forward_cells, lateral_cells, indexing="ij")
    offsets = np.empty((grid_forward.size, 2), dtype=np.int64)
    forward_axis = FORWARD_AXIS[frame]
    offsets[:, forward_axis] = grid_forward.ravel()
    offsets[:, 1 - forward_axis] = grid_lateral.ravel()
    return offsets


def step_headings(
    waypoints: np.ndarray, min_step: float, frame: str, origin: np.ndarray | None = None
) -> np.ndarray:
    """Heading [..., T] of each step from the previous waypoint (the origin before the first).

    Measured from the frame's forward axis; 0 where the step is shorter than ``min_step``.
    """
    start = np.zeros_like(waypoints[..., :1, :]) if origin is None else origin
    previous = np.concatenate([start, waypoints[..., :-1, :]], axis=-2)
    delta = waypoints - previous
    heading = np.arctan2(delta[..., 1], delta[..., 0]) - (
        math.pi / 2 if frame == LIDAR_FRAME else 0
    )
    return np.where(np.linalg.norm(delta, axis=-1) < min_step, 0.0, heading)


def footprint_cells(
    grid: BevGrid,
    footprint: EgoFootprint,
    frame: str,
    waypoints: np.ndarray,
    offsets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Grid (rows, cols), int [..., T, K] each, under the footprint at ``waypoints`` [..., T, 2]."""
    if offsets is None:
        offsets = footprint_offsets(grid, footprint, frame)
    cell_offsets = offsets.astype(np.float64)  # [K, 2]
    if footprint.rotate_with_heading:
        heading = step_headings(waypoints, footprint.min_heading_step, frame)  # [..., T]
        centre = grid.bound / grid.resolution - 0.5
        cos, sin = np.cos(heading)[..., None], np.sin(heading)[..., None]  # [..., T, 1]
        relative = cell_offsets - centre  # [K, 2]
        rotated_x = cos * relative[:, 0] - sin * relative[:, 1]
        rotated_y = sin * relative[:, 0] + cos * relative[:, 1]
        cell_offsets = np.round(
            np.stack([rotated_x, rotated_y], axis=-1) + centre
        )  # [..., T, K, 2]
    index = waypoints[..., None, :] / grid.resolution + cell_offsets  # [..., T, K, 2]
    columns = index[..., 0]
    rows = grid.size - index[..., 1] if grid.flip_rows else index[..., 1]
    last = grid.size - 1
    return np.clip(rows.astype(np.int64), 0, last), np.clip(columns.astype(np.int64), 0, last)
