"""One keyframe on one PNG: the 6 cameras as mounted on the car and a bird's-eye view.

Cameras in two rows as seen from the driver's seat (front-left, front, front-right / back-left,
back, back-right); on the right a top-down view of the Occ3D labels (the highest non-free voxel
of each column, Occ3D class colours) with the ego footprint, the other agents' boxes now
(outlines) and over the next 3 s (centre dots), and the ground-truth future trajectory.

The ``contact-sheet`` subcommand (``add_arguments`` / ``run``) is defined here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from occvla_ros.constants import (
    CAMERA_NAMES,
    FREE_CLASS,
    OCC3D_CLASS_COLORS,
    OCC_RANGE_MAX,
    OCC_VOXEL_SIZE,
)
from occvla_ros.data.datasets import load_occupancy
from occvla_ros.data.images import decode_jpeg, read_jpeg_bytes
from occvla_ros.data.records import KeyframeRecord
from occvla_ros.errors import ConfigError, DataError

SHEET_LAYOUT = (
    ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
    ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"),
)
TILE_WIDTH = 480
BEV_PIXELS = 540
EGO_SIZE_M = (4.084, 1.85)  # length, width
EMPTY_COLUMN_BGR = (40, 40, 40)
TRAJECTORY_BGR = (0, 220, 255)
BOX_BGR = (255, 255, 255)
TEXT_BGR = (255, 255, 255)


def _camera_tile(path: str, channel: str) -> np.ndarray:
    image = decode_jpeg(read_jpeg_bytes(path), TILE_WIDTH, path)
    height = round(image.shape[0] * TILE_WIDTH / image.shape[1])
    tile = cv2.resize(image, (TILE_WIDTH, height), interpolation=cv2.INTER_AREA)
    _label(tile, channel, (8, 22))
    return tile


def _label(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.55) -> None:
    # A dark outline keeps the text readable on any background.
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_BGR, 1, cv2.LINE_AA)


def top_down_classes(semantics: np.ndarray) -> np.ndarray:
    """Class of the highest non-free voxel per column [200, 200]; FREE_CLASS when all free."""
    occupied = semantics != FREE_CLASS  # [X, Y, Z]
    highest = semantics.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2)  # [X, Y]
    top = np.take_along_axis(semantics, highest[..., None], axis=2)[..., 0]
    return np.where(occupied.any(axis=2), top, FREE_CLASS)


class _BevCanvas:
    """Ego frame (x forward = up, y left = left) -> pixels of a square image."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.half_range = OCC_RANGE_MAX[0]  # the Occ3D grid is centred on the ego
        self.pixels_per_m = size / (2 * self.half_range)

    def pixel(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        u = (self.half_range - xy[..., 1]) * self.pixels_per_m
        v = (self.half_range - xy[..., 0]) * self.pixels_per_m
        return np.stack([u, v], axis=-1).round().astype(np.int32)

    def box(self, center: np.ndarray, length: float, width: float, yaw: float) -> np.ndarray:
        corners = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
        rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        return self.pixel(corners @ rotation.T + center[:2])


def bev_image(record: KeyframeRecord, size: int = BEV_PIXELS) -> np.ndarray:
    """BGR [size, size, 3] top-down view of one keyframe (see the module docstring)."""
    canvas = _BevCanvas(size)
    if record.occupancy_path is not None:
        semantics, _ = load_occupancy(record.occupancy_path)
        colors = np.array(OCC3D_CLASS_COLORS, dtype=np.uint8)[:, ::-1].copy()  # RGB -> BGR
        colors[FREE_CLASS] = EMPTY_COLUMN_BGR
        # Voxel [i, j] is at x = -40 + 0.4 (i + 0.5): flip both axes so +x is up and +y left.
        image = colors[top_down_classes(semantics)][::-1, ::-1]
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
    else:
        image = np.full((size, size, 3), EMPTY_COLUMN_BGR, dtype=np.uint8)
    agents = record.agents
    for row in agents.at_step(0):
        width, length = agents.size[row, :2]
        corners = canvas.box(agents.center_ego[row], length, width, agents.yaw_ego[row])
        cv2.polylines(image, [corners], True, BOX_BGR, 1, cv2.LINE_AA)
    future_rows = np.flatnonzero(agents.step > 0)
    for center in canvas.pixel(agents.center_ego[future_rows, :2]):
        cv2.circle(image, tuple(int(v) for v in center), 1, BOX_BGR, -1, cv2.LINE_AA)
    ego = canvas.box(np.zeros(2), *EGO_SIZE_M, 0.0)
    cv2.fillPoly(image, [ego], (0, 0, 255), cv2.LINE_AA)
    valid = record.future_ego[record.future_mask]
    if len(valid):
        path = canvas.pixel(np.vstack([np.zeros((1, 2)), valid]))
        cv2.polylines(image, [path], False, TRAJECTORY_BGR, 2, cv2.LINE_AA)
        for point in path[1:]:
            cv2.circle(image, tuple(int(v) for v in point), 4, TRAJECTORY_BGR, -1, cv2.LINE_AA)
    scale_m = 10
    bar = int(scale_m * canvas.pixels_per_m)
    cv2.line(image, (10, size - 12), (10 + bar, size - 12), TEXT_BGR, 2)
    _label(image, f"{scale_m} m   grid {OCC_VOXEL_SIZE} m", (10, size - 20), 0.45)
    return image


def contact_sheet(record: KeyframeRecord) -> np.ndarray:
    """BGR image of the cameras (2 x 3) beside the BEV, with a caption line."""
    tiles = {
        channel: _camera_tile(path, channel)
        for channel, path in zip(CAMERA_NAMES, record.image_paths, strict=True)
    }
    rows = [np.hstack([tiles[channel] for channel in row]) for row in SHEET_LAYOUT]
    cameras = np.vstack(rows)
    bev = bev_image(record, cameras.shape[0])
    sheet = np.hstack([cameras, bev])
    caption = np.zeros((34, sheet.shape[1], 3), dtype=np.uint8)
    speed, accel, yaw_rate = record.ego_state
    _label(
        caption,
        f"{record.scene_name}  {record.token}  speed {speed:.1f} m/s  accel {accel:+.1f} m/s2  "
        f"yaw rate {np.degrees(yaw_rate):+.1f} deg/s  meta-action: {record.meta_action or '-'}  "
        f"command ({'from the future' if record.command_is_future_derived else 'route'}): "
        f"{record.command}",
        (8, 23),
    )
    return np.vstack([sheet, caption])


def write_contact_sheet(record: KeyframeRecord, out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must name a .png file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), contact_sheet(record), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise DataError(f"cannot write {out}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from occvla_ros.data.index import add_loader_arguments

    add_loader_arguments(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, default=0, help="keyframe number in the split")
    which.add_argument("--token", help="sample token of the keyframe")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")


def select_record(records: tuple[KeyframeRecord, ...], index: int, token: str | None):
    if token is not None:
        for record in records:
            if record.token == token:
                return record
        raise ConfigError(f"no keyframe with token {token!r} in this split")
    if not -len(records) <= index < len(records):
        raise ConfigError(f"--index {index} is out of range: the split has {len(records)}")
    return records[index]


def run(args: argparse.Namespace) -> int:
    from occvla_ros.data.index import index_from_arguments

    record = select_record(index_from_arguments(args).records, args.index, args.token)
    out = write_contact_sheet(record, args.out)
    print(f"wrote {out} ({record.scene_name}, keyframe {record.token})")
    return 0
