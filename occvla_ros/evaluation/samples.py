"""The obstacles of the collision metrics, read from the nuScenes tables per keyframe.

For a keyframe: the boxes of the other agents at the next 6 keyframes in the ego and LiDAR frames
of the keyframe, with what the conventions select on and the keyframe records do not carry: the
instance (is the agent annotated at the current keyframe? ST-P3/VAD and OmniDrive draw only those)
and the visibility level. Read with the real nuScenes devkit, imported here only; tests check
the boxes against the data loader's records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occvla_ros.constants import LIDAR_NAME, NUM_WAYPOINTS
from occvla_ros.errors import DataError
from occvla_ros.evaluation.rasterize import FutureBoxes
from occvla_ros.geometry import invert_transform, make_transform


@dataclass(frozen=True)
class SampleContext:
    token: str
    lidar_from_ego: np.ndarray  # [4, 4]
    boxes_ego: FutureBoxes
    boxes_lidar: FutureBoxes


def ego_to_lidar(points: np.ndarray, lidar_from_ego: np.ndarray) -> np.ndarray:
    """(x, y) [..., 2] in the keyframe's ego frame -> (x, y) in its LIDAR_TOP frame (z = 0)."""
    return points @ lidar_from_ego[:2, :2].T + lidar_from_ego[:2, 3]


def _frame_boxes(
    transform: np.ndarray,
    *,
    step: np.ndarray,
    translation: np.ndarray,
    rotation: np.ndarray,
    fields: dict[str, np.ndarray],
    frame_exists: np.ndarray,
) -> FutureBoxes:
    """Boxes of global translations [N, 3] and rotations [N, 3, 3] in ``transform``'s frame."""
    center = translation @ transform[:3, :3].T + transform[:3, 3]
    heading = transform[:3, :3] @ rotation[..., 0:1] if len(rotation) else np.zeros((0, 3, 1))
    # heading[n] is the box's x axis (its length) in the frame; yaw is its angle about +z.
    yaw = np.arctan2(heading[:, 1, 0], heading[:, 0, 0]) if len(rotation) else np.zeros(0)
    return FutureBoxes(
        step=step,
        center=center[:, :2],
        yaw=yaw,
        frame_exists=frame_exists,
        **fields,
    )


class NuScenesContext:
    """Per-keyframe evaluation context from a nuScenes-format dataset (tables loaded once)."""

    def __init__(self, dataroot: str | Path, version: str) -> None:
        from occvla_ros.data.nuscenes_loader import open_nuscenes

        self.nusc = open_nuscenes(Path(dataroot), version)

    def _ego_from_global(self, sample: dict) -> np.ndarray:
        lidar = self.nusc.get("sample_data", sample["data"][LIDAR_NAME])
        pose = self.nusc.get("ego_pose", lidar["ego_pose_token"])
        return invert_transform(make_transform(pose["translation"], pose["rotation"]))

    def _future(self, sample: dict, count: int) -> list[dict]:
        found = []
        while len(found) < count and sample["next"]:
            sample = self.nusc.get("sample", sample["next"])
            found.append(sample)
        return found

    def __call__(self, token: str) -> SampleContext:
        try:
            sample = self.nusc.get("sample", token)
        except KeyError as error:
            raise DataError(f"sample {token} is not in {self.nusc.version}") from error
        lidar = self.nusc.get("sample_data", sample["data"][LIDAR_NAME])
        calibration = self.nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
        lidar_from_ego = invert_transform(
            make_transform(calibration["translation"], calibration["rotation"])
        )
        ego_from_global = self._ego_from_global(sample)
        current_instances = {
            self.nusc.get("sample_annotation", a)["instance_token"] for a in sample["anns"]
        }
        future = self._future(sample, NUM_WAYPOINTS)
        frame_exists = np.arange(NUM_WAYPOINTS) < len(future)
        annotations = [
            (step, self.nusc.get("sample_annotation", a))
            for step, future_sample in enumerate(future)
            for a in future_sample["anns"]
        ]
        step = np.array([s for s, _ in annotations], dtype=np.int64)
        translation = np.array([a["translation"] for _, a in annotations], dtype=np.float64)
        rotation = np.array(
            [make_transform([0, 0, 0], a["rotation"])[:3, :3] for _, a in annotations]
        ).reshape(-1, 3, 3)
        fields = {
            "size": np.array([a["size"][:2] for _, a in annotations], dtype=np.float64).reshape(
                -1, 2
            ),
            "category": np.array([a["category_name"] for _, a in annotations], dtype=object),
            "tracked": np.array(
                [a["instance_token"] in current_instances for _, a in annotations], dtype=bool
            ),
            "visibility": np.array(
                [_visibility(a.get("visibility_token")) for _, a in annotations], dtype=np.int64
            ),
        }
        translation = translation.reshape(-1, 3)
        lidar_from_global = lidar_from_ego @ ego_from_global
        arrays = {
            "step": step,
            "translation": translation,
            "rotation": rotation,
            "fields": fields,
            "frame_exists": frame_exists,
        }
        return SampleContext(
            token=token,
            lidar_from_ego=lidar_from_ego,
            boxes_ego=_frame_boxes(ego_from_global, **arrays),
            boxes_lidar=_frame_boxes(lidar_from_global, **arrays),
        )


def _visibility(token: str | None) -> int:
    """nuScenes visibility level 1..4 from its token ("1".."4"); 0 when unknown."""
    try:
        level = int(token) if token is not None else 0
    except ValueError:
        return 0
    return level if 1 <= level <= 4 else 0
