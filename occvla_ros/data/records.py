"""One typed record per keyframe: everything training and evaluation read, in named frames.

Frames (all right-handed, metres, radians):
- ``ego``: the keyframe's ego frame (x forward, y left, z up), from its LIDAR_TOP ego pose;
- ``lidar``: the keyframe's LIDAR_TOP frame (nuScenes: x right, y forward, z up);
- ``global``: the map frame of nuScenes.

Records serialise to plain JSON (strings, scalars, lists) plus named numpy arrays (one ``.npz``
for many records): no pickle anywhere. Paths are absolute, so a record stands alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from occvla_ros.constants import NUM_CAMERAS, NUM_WAYPOINTS
from occvla_ros.errors import DataError

EGO_STATE_FROM_CAN_BUS = "can_bus"
EGO_STATE_FROM_EGO_POSE = "ego_pose"


# eq=False: records hold arrays, which have no single truth value; compare fields explicitly.
@dataclass(frozen=True, eq=False)
class AgentBoxes:
    """Boxes of the other agents at the current keyframe (step 0) and the next 6 (steps 1..6).

    Row n is one box; ``step[n]`` says at which keyframe. Centres and yaws are expressed in the
    CURRENT keyframe's ego and LiDAR frames (yaw = angle of the box's length axis about +z).
    ``frame_exists[s]`` is False where keyframe s lies beyond the scene end.
    """

    step: np.ndarray  # int64 [N]
    center_ego: np.ndarray  # float64 [N, 3]
    center_lidar: np.ndarray  # float64 [N, 3]
    yaw_ego: np.ndarray  # float64 [N]
    yaw_lidar: np.ndarray  # float64 [N]
    size: np.ndarray  # float64 [N, 3] width, length, height
    category: tuple[str, ...]  # nuScenes category names, [N]
    frame_exists: np.ndarray  # bool [NUM_WAYPOINTS + 1]

    def at_step(self, step: int) -> np.ndarray:
        """Row indices of the boxes at keyframe ``step`` (0 = current)."""
        return np.flatnonzero(self.step == step)


@dataclass(frozen=True, eq=False)
class KeyframeRecord:
    token: str
    scene_name: str
    scene_token: str
    timestamp_us: int
    # Cameras in constants.CAMERA_NAMES order.
    image_paths: tuple[str, ...]  # absolute JPEG paths, [6]
    camera_intrinsics: np.ndarray  # [6, 3, 3]
    camera_to_ego: np.ndarray  # [6, 4, 4]
    ego_to_global: np.ndarray  # [4, 4]
    lidar_to_ego: np.ndarray  # [4, 4]
    # Ego state at the keyframe: longitudinal speed [m/s], acceleration [m/s^2], yaw rate [rad/s].
    ego_state: np.ndarray  # float64 [3]
    ego_state_source: str  # EGO_STATE_FROM_CAN_BUS | EGO_STATE_FROM_EGO_POSE
    # Ground-truth future ego positions at the next 6 keyframes (0.5 s apart).
    future_ego: np.ndarray  # [6, 2] ego frame
    future_lidar: np.ndarray  # [6, 2] LiDAR frame
    future_mask: np.ndarray  # bool [6], False beyond the scene end
    # Previous keyframes' ego positions, oldest first, in the ego frame.
    past_ego: np.ndarray  # [P, 2]
    past_mask: np.ndarray  # bool [P], False before the scene start
    # High-level driving command: from the route where the dataset annotates it (the synthetic
    # world), else FUTURE-DERIVED by the +-2 m rule on the ground-truth end point
    # (labels.driving_command); ``command_is_future_derived`` says which.
    command: str
    # Meta-action text from labels.label_meta_action; "" when no future keyframe exists.
    meta_action: str
    agents: AgentBoxes
    occupancy_path: str | None  # Occ3D labels.npz, None when absent
    qa: tuple[tuple[str, str], ...]  # OmniDrive (question, answer) pairs
    description: str | None = None  # OmniDrive scene description
    command_is_future_derived: bool = True
    # The synthetic world's situation label (world_annotations.SITUATIONS), "" where unknown.
    situation: str = ""

    def __post_init__(self) -> None:
        shapes = {
            "camera_intrinsics": (NUM_CAMERAS, 3, 3),
            "camera_to_ego": (NUM_CAMERAS, 4, 4),
            "ego_to_global": (4, 4),
            "lidar_to_ego": (4, 4),
            "ego_state": (3,),
            "future_ego": (NUM_WAYPOINTS, 2),
            "future_lidar": (NUM_WAYPOINTS, 2),
            "future_mask": (NUM_WAYPOINTS,),
        }
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise DataError(
                    f"keyframe {self.token}: {name} has shape {np.shape(getattr(self, name))}, "
                    f"expected {shape}"
                )
        if len(self.image_paths) != NUM_CAMERAS:
            raise DataError(f"keyframe {self.token}: {len(self.image_paths)} camera images")

    @property
    def has_future(self) -> bool:
        return bool(self.future_mask[0])


_ARRAY_FIELDS = (
    "camera_intrinsics",
    "camera_to_ego",
    "ego_to_global",
    "lidar_to_ego",
    "ego_state",
    "future_ego",
    "future_lidar",
    "future_mask",
    "past_ego",
    "past_mask",
)
_AGENT_ARRAYS = ("step", "center_ego", "center_lidar", "yaw_ego", "yaw_lidar", "size")
_JSON_FIELDS = tuple(
    f.name for f in fields(KeyframeRecord) if f.name not in _ARRAY_FIELDS and f.name != "agents"
)


def save_records(records: list[KeyframeRecord], json_path: Path, npz_path: Path) -> None:
    """Write records as one JSON list (text fields) and one npz (arrays stacked over records)."""
    rows = []
    for record in records:
        row = {name: getattr(record, name) for name in _JSON_FIELDS}
        row["qa"] = [list(pair) for pair in record.qa]
        row["image_paths"] = list(record.image_paths)
        row["agent_category"] = list(record.agents.category)
        rows.append(row)
    arrays: dict[str, np.ndarray] = {}
    for name in _ARRAY_FIELDS:
        arrays[name] = np.stack([getattr(r, name) for r in records]) if records else np.zeros(0)
    counts = np.array([len(r.agents.step) for r in records], dtype=np.int64)
    arrays["agent_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    for name in _AGENT_ARRAYS:
        parts = [getattr(r.agents, name) for r in records]
        arrays[f"agent_{name}"] = np.concatenate(parts) if parts else np.zeros(0)
    arrays["agent_frame_exists"] = (
        np.stack([r.agents.frame_exists for r in records]) if records else np.zeros(0, bool)
    )
    json_path.write_text(json.dumps(rows))
    np.savez(npz_path, **arrays)


def load_records(json_path: Path, npz_path: Path) -> list[KeyframeRecord]:
    """Inverse of :func:`save_records`; :class:`DataError` naming the file when unreadable."""
    try:
        rows = json.loads(json_path.read_text())
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, KeyError) as error:
        raise DataError(
            f"cannot read keyframe records {json_path} / {npz_path}: {error}"
        ) from error
    offsets = arrays["agent_offsets"]
    records = []
    for i, row in enumerate(rows):
        begin, end = offsets[i], offsets[i + 1]
        agents = AgentBoxes(
            **{name: arrays[f"agent_{name}"][begin:end] for name in _AGENT_ARRAYS},
            category=tuple(row.pop("agent_category")),
            frame_exists=arrays["agent_frame_exists"][i],
        )
        row["qa"] = tuple(tuple(pair) for pair in row["qa"])
        row["image_paths"] = tuple(row["image_paths"])
        records.append(
            KeyframeRecord(
                **row, **{name: arrays[name][i] for name in _ARRAY_FIELDS}, agents=agents
            )
        )
    return records
