"""Keyframe records of a nuScenes split, read with the real nuScenes devkit.

Works on real nuScenes (mini / trainval, with or without the CAN-bus expansion) and on the
project's synthetic datasets alike. Per keyframe:

- pose: the ego pose of the keyframe's LIDAR_TOP sample_data (ego -> global);
- future / past ground truth: the ego positions at the next 6 / previous keyframes of the same
  scene, moved global -> ego(t0) and on to LIDAR_TOP(t0); missing keyframes are masked;
- ego state: CAUSAL (:mod:`occvla_ros.data.ego_state`), from the odometry stream the bag
  converter publishes: the CAM_FRONT sample_data up to the keyframe, each with the CAN bus
  ``pose`` speed and yaw rate at or before its time when ``DATAROOT/can_bus`` covers it, else the
  backward difference of its ego pose;
- labels: :mod:`occvla_ros.data.labels` (meta-action); the driving command and situation from
  the route annotation when the dataset has one (the synthetic world's ``world/`` files, see
  :mod:`occvla_ros.data.world_annotations`), else the FUTURE-DERIVED command rule;
- Occ3D labels ``<occupancy_root>/<scene>/<token>/labels.npz`` and OmniDrive files
  ``<omnidrive_root>/{vqa,desc}/{train,val}/<token>.json`` when they exist.

The devkit (~2 s to import) is imported only inside :func:`load_records`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occvla_ros.constants import CAMERA_NAMES, LIDAR_NAME, NUM_WAYPOINTS
from occvla_ros.data import labels, world_annotations
from occvla_ros.data.ego_state import ACCEL_WINDOW_S, ego_state_at, twist_from_poses
from occvla_ros.data.records import (
    EGO_STATE_FROM_CAN_BUS,
    EGO_STATE_FROM_EGO_POSE,
    AgentBoxes,
    KeyframeRecord,
)
from occvla_ros.data.tables import check_tables
from occvla_ros.errors import ConfigError, DataError
from occvla_ros.geometry import invert_transform, make_transform, quat_wxyz_to_yaw

LOGGER = logging.getLogger(__name__)
NUM_PAST = 4
ALL_SCENES = "all"
# The sample_data chain whose ego poses are the odometry stream (in bags too): 12 Hz with sweeps.
ODOMETRY_CHANNEL = "CAM_FRONT"


@dataclass(frozen=True)
class LoaderOptions:
    """Where the label sets live and how the ego state is read; part of the index fingerprint."""

    occupancy_root: str | None = None  # default DATAROOT/gts
    omnidrive_root: str | None = None  # default DATAROOT/omnidrive
    use_can_bus: bool = True  # when DATAROOT/can_bus exists

    def resolved(self, dataroot: Path) -> LoaderOptions:
        return LoaderOptions(
            occupancy_root=str(Path(self.occupancy_root or dataroot / "gts").absolute()),
            omnidrive_root=str(Path(self.omnidrive_root or dataroot / "omnidrive").absolute()),
            use_can_bus=self.use_can_bus,
        )


def split_scene_names(version: str, split: str) -> list[str] | None:
    """Scene names of a devkit split (``create_splits_scenes``), or None for ``"all"``."""
    if split == ALL_SCENES:
        return None
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes()
    if split not in splits:
        raise ConfigError(f"unknown split {split!r}; choose one of {[ALL_SCENES, *splits]}")
    return list(splits[split])


def occupancy_label_path(occupancy_root: str | Path, scene_name: str, token: str) -> Path:
    """Where Occ3D keeps a keyframe's labels: ``<occupancy_root>/<scene>/<token>/labels.npz``."""
    return Path(occupancy_root, scene_name, token, "labels.npz")


def open_nuscenes(dataroot: Path, version: str):
    """The devkit's NuScenes object; :class:`DataError` naming the directory when it fails."""
    from nuscenes.nuscenes import NuScenes

    table_dir = dataroot / version
    check_tables(table_dir)  # a missing or malformed table: one error naming the file
    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except (AssertionError, KeyError, OSError, ValueError) as error:
        raise DataError(f"the nuScenes devkit cannot load {table_dir}: {error!r}") from error


def load_records(
    dataroot: str | Path,
    version: str,
    split: str,
    options: LoaderOptions | None = None,
    *,
    scene_names: Sequence[str] | None = None,
    progress: bool = False,
    nusc=None,
) -> list[KeyframeRecord]:
    """Records of every keyframe of the split's scenes (only ``scene_names`` of them when
    given), scene by scene in time order. ``nusc``: an already opened devkit object."""
    dataroot = Path(dataroot).absolute()
    options = (options or LoaderOptions()).resolved(dataroot)
    nusc = nusc or open_nuscenes(dataroot, version)
    wanted = split_scene_names(version, split)
    scenes = [
        s
        for s in nusc.scene
        if (wanted is None or s["name"] in wanted)
        and (scene_names is None or s["name"] in scene_names)
    ]
    if not scenes:
        raise DataError(
            f"split {split!r} has no scene in {dataroot / version} (mini datasets use "
            f"mini_train / mini_val; trainval uses train / val)"
        )
    can_bus = open_can_bus(dataroot) if options.use_can_bus else None
    builder = _RecordBuilder(nusc, options, can_bus)
    total = sum(scene["nbr_samples"] for scene in scenes)
    from tqdm import tqdm

    records = []
    with tqdm(total=total, desc=f"index {version}/{split}", disable=not progress) as bar:
        for scene in scenes:
            builder.start_scene()
            for sample in _scene_samples(nusc, scene):
                records.append(builder.record(sample, scene))
                bar.update(1)
    return records


def open_can_bus(dataroot: Path):
    """The devkit's CAN bus API when ``DATAROOT/can_bus`` exists, else None."""
    if not (dataroot / "can_bus").is_dir():
        LOGGER.info("no CAN bus expansion under %s: ego state from ego-pose differencing", dataroot)
        return None
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    return NuScenesCanBus(dataroot=str(dataroot))


def _scene_samples(nusc, scene: dict) -> Iterator[dict]:
    token = scene["first_sample_token"]
    while token:
        sample = nusc.get("sample", token)
        yield sample
        token = sample["next"]


def _walk(nusc, sample: dict, direction: str, count: int) -> list[dict | None]:
    """The next (``"next"``) or previous (``"prev"``) ``count`` samples; None beyond the scene."""
    found: list[dict | None] = []
    current: dict | None = sample
    for _ in range(count):
        token = current[direction] if current is not None else ""
        current = nusc.get("sample", token) if token else None
        found.append(current)
    return found


class _RecordBuilder:
    def __init__(self, nusc, options: LoaderOptions, can_bus) -> None:
        self.nusc = nusc
        self.options = options
        self.can_bus = can_bus
        self._can_pose_cache: dict[str, np.ndarray | None] = {}
        self._boxes_cache: dict[str, tuple] = {}
        self._route: dict[str, world_annotations.KeyframeWorld] | None = None

    def start_scene(self) -> None:
        """Forget the previous scene's boxes (keyframes never look across scenes)."""
        self._boxes_cache.clear()
        self._route = None

    def _route_annotation(self, scene_name: str) -> dict[str, world_annotations.KeyframeWorld]:
        if self._route is None:
            self._route = world_annotations.read_scene(Path(self.nusc.dataroot), scene_name)
        return self._route

    def _pose_of(self, sample: dict) -> np.ndarray:
        lidar = self.nusc.get("sample_data", sample["data"][LIDAR_NAME])
        pose = self.nusc.get("ego_pose", lidar["ego_pose_token"])
        return make_transform(pose["translation"], pose["rotation"])

    def record(self, sample: dict, scene: dict) -> KeyframeRecord:
        nusc = self.nusc
        if LIDAR_NAME not in sample["data"]:
            raise DataError(f"keyframe {sample['token']} has no {LIDAR_NAME} sample_data")
        lidar = nusc.get("sample_data", sample["data"][LIDAR_NAME])
        lidar_calib = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
        lidar_to_ego = make_transform(lidar_calib["translation"], lidar_calib["rotation"])
        ego_to_global = self._pose_of(sample)
        ego_from_global = invert_transform(ego_to_global)
        lidar_from_ego = invert_transform(lidar_to_ego)

        future = _walk(nusc, sample, "next", NUM_WAYPOINTS)
        past = _walk(nusc, sample, "prev", NUM_PAST)[::-1]  # oldest first
        future_ego, future_mask = self._positions(future, ego_from_global)
        future_lidar = _apply(lidar_from_ego, future_ego)[:, :2] * future_mask[:, None]
        past_ego, past_mask = self._positions(past, ego_from_global)
        future_xy = future_ego[:, :2]

        ego_state, source = self._ego_state(sample, scene)
        meta_action = ""
        if future_mask[0]:
            meta_action = labels.label_meta_action(future_xy, future_mask, ego_state[0]).text

        route = self._route_annotation(scene["name"]).get(sample["token"])
        paths, intrinsics, extrinsics = self._cameras(sample)
        qa, description = self._omnidrive(sample["token"])
        occupancy = occupancy_label_path(
            self.options.occupancy_root, scene["name"], sample["token"]
        )
        return KeyframeRecord(
            token=sample["token"],
            scene_name=scene["name"],
            scene_token=scene["token"],
            timestamp_us=int(sample["timestamp"]),
            image_paths=paths,
            camera_intrinsics=intrinsics,
            camera_to_ego=extrinsics,
            ego_to_global=ego_to_global,
            lidar_to_ego=lidar_to_ego,
            ego_state=ego_state,
            ego_state_source=source,
            future_ego=future_xy,
            future_lidar=future_lidar,
            future_mask=future_mask,
            past_ego=past_ego[:, :2],
            past_mask=past_mask,
            command=route.command if route else labels.driving_command(future_xy, future_mask),
            command_is_future_derived=route is None,
            situation=route.situation if route else "",
            meta_action=meta_action,
            agents=self._agents([sample, *future], ego_from_global, lidar_from_ego),
            occupancy_path=str(occupancy) if occupancy.is_file() else None,
            qa=qa,
            description=description,
        )

    def _positions(self, samples: list[dict | None], ego_from_global: np.ndarray):
        positions = np.zeros((len(samples), 3))
        mask = np.array([s is not None for s in samples])
        for i, other in enumerate(samples):
            if other is not None:
                positions[i] = _apply(ego_from_global, self._pose_of(other)[:3, 3][None])[0]
        return positions, mask

    def _cameras(self, sample: dict):
        paths, intrinsics, extrinsics = [], [], []
        for channel in CAMERA_NAMES:
            if channel not in sample["data"]:
                raise DataError(f"keyframe {sample['token']} has no {channel} image")
            data = self.nusc.get("sample_data", sample["data"][channel])
            calib = self.nusc.get("calibrated_sensor", data["calibrated_sensor_token"])
            paths.append(str(Path(self.nusc.dataroot, data["filename"]).absolute()))
            intrinsics.append(np.asarray(calib["camera_intrinsic"], dtype=np.float64))
            extrinsics.append(make_transform(calib["translation"], calib["rotation"]))
        return tuple(paths), np.stack(intrinsics), np.stack(extrinsics)

    def _omnidrive(self, token: str) -> tuple[tuple[tuple[str, str], ...], str | None]:
        root = Path(self.options.omnidrive_root)
        qa: tuple[tuple[str, str], ...] = ()
        description = None
        for split in ("train", "val"):
            vqa = _read_json(root / "vqa" / split / f"{token}.json")
            if vqa is not None:
                try:
                    qa = tuple((str(p["question"]), str(p["answer"])) for p in vqa)
                except (TypeError, KeyError) as error:
                    raise DataError(
                        f"{root / 'vqa' / split / token}.json: expected a list of "
                        f"{{question, answer}}: {error!r}"
                    ) from error
            desc = _read_json(root / "desc" / split / f"{token}.json")
            if isinstance(desc, dict) and "description" in desc:
                description = str(desc["description"])
        return qa, description

    def _global_boxes(self, sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
        """Global centres [N, 3], yaws [N], sizes [N, 3] and categories of a sample's boxes.

        Each keyframe's boxes serve 7 records (its own and the 6 before it): computed once.
        """
        token = sample["token"]
        if token not in self._boxes_cache:
            annotations = [self.nusc.get("sample_annotation", t) for t in sample["anns"]]
            self._boxes_cache[token] = (
                np.array([a["translation"] for a in annotations], dtype=np.float64).reshape(-1, 3),
                np.array([quat_wxyz_to_yaw(a["rotation"]) for a in annotations], dtype=np.float64),
                np.array([a["size"] for a in annotations], dtype=np.float64).reshape(-1, 3),
                tuple(a["category_name"] for a in annotations),
            )
        return self._boxes_cache[token]

    def _agents(self, samples, ego_from_global, lidar_from_ego) -> AgentBoxes:
        lidar_from_global = lidar_from_ego @ ego_from_global
        present = [(step, self._global_boxes(s)) for step, s in enumerate(samples) if s is not None]
        centers = np.concatenate([boxes[0] for _, boxes in present])
        yaws = np.concatenate([boxes[1] for _, boxes in present])
        return AgentBoxes(
            step=np.concatenate([np.full(len(boxes[1]), step) for step, boxes in present]).astype(
                np.int64
            ),
            center_ego=_apply(ego_from_global, centers),
            center_lidar=_apply(lidar_from_global, centers),
            yaw_ego=_rotate_yaw(ego_from_global, yaws),
            yaw_lidar=_rotate_yaw(lidar_from_global, yaws),
            size=np.concatenate([boxes[2] for _, boxes in present]),
            category=tuple(c for _, boxes in present for c in boxes[3]),
            frame_exists=np.array([s is not None for s in samples]),
        )

    def _ego_state(self, sample: dict, scene: dict) -> tuple[np.ndarray, str]:
        """The causal ego state at the keyframe and where its twist came from."""
        if self.can_bus is not None and scene["name"] not in self._can_pose_cache:
            self._can_pose_cache[scene["name"]] = can_pose_table(self.can_bus, scene["name"])
        can_table = self._can_pose_cache.get(scene["name"])
        keyframe = self.nusc.get("sample_data", sample["data"][ODOMETRY_CHANNEL])
        # The window, one sample older than it, and that one's predecessor for its twist.
        chain = [keyframe]
        reach_us = int(keyframe["timestamp"]) - round(ACCEL_WINDOW_S * 1e6)
        older = 0
        while chain[0]["prev"] and older < 2:
            chain.insert(0, self.nusc.get("sample_data", chain[0]["prev"]))
            older += int(int(chain[0]["timestamp"]) <= reach_us)
        times_us, speed, yaw_rate, from_can = odometry_stream(self.nusc, chain, can_table)
        relative = (times_us - times_us[-1]) / 1e6
        state = ego_state_at(relative, speed, yaw_rate, 0.0)
        source = EGO_STATE_FROM_CAN_BUS if from_can[-1] else EGO_STATE_FROM_EGO_POSE
        return (np.zeros(3) if state is None else state), source


def odometry_stream(
    nusc, chain: list[dict], can_table: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The odometry of a sample_data ``chain`` (time order): times [W] (int microseconds), speed
    [W], yaw rate [W] and whether each came from the CAN bus [W]. A sample the CAN table covers
    takes its newest message at or before it; the others the backward difference of the ego poses
    (NaN for the chain's first sample, which has no predecessor here)."""
    times_us = np.array([int(data["timestamp"]) for data in chain], dtype=np.int64)
    poses = np.zeros((len(chain), 3))
    for i, data in enumerate(chain):
        pose = nusc.get("ego_pose", data["ego_pose_token"])
        poses[i] = (*pose["translation"][:2], quat_wxyz_to_yaw(pose["rotation"]))
    speed, yaw_rate = twist_from_poses((times_us - times_us[0]) / 1e6, poses)
    from_can = np.zeros(len(chain), dtype=bool)
    for i, stamp in enumerate(times_us):
        twist = can_twist_at(can_table, int(stamp))
        if twist is not None:
            (speed[i], yaw_rate[i]), from_can[i] = twist, True
    return times_us, speed, yaw_rate, from_can


def can_twist_at(table: np.ndarray | None, timestamp_us: int) -> tuple[float, float] | None:
    """(speed, yaw rate) of the newest :func:`can_pose_table` message at or before a time; None
    outside the table (or without one)."""
    if table is None or not table[0, 0] <= timestamp_us <= table[-1, 0]:
        return None
    newest = int(np.searchsorted(table[:, 0], timestamp_us, side="right")) - 1
    return float(table[newest, 1]), float(table[newest, 3])


def can_pose_table(can_bus, scene_name: str) -> np.ndarray | None:
    """[M, 4] utime, speed, acceleration, yaw rate of a scene's CAN ``pose`` messages, or None."""
    try:
        messages = can_bus.get_messages(scene_name, "pose", print_warnings=False)
    except Exception as error:  # the devkit raises bare Exception/AssertionError per scene
        LOGGER.info("no CAN bus pose for %s (%s): using ego-pose differencing", scene_name, error)
        return None
    if not messages:
        return None
    return np.array(
        [
            (m["utime"], m["vel"][0], m["accel"][0], m["rotation_rate"][2])
            for m in sorted(messages, key=lambda m: m["utime"])
        ],
        dtype=np.float64,
    )


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:3, :3].T + transform[:3, 3]


def _rotate_yaw(transform: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Yaws about +z moved into ``transform``'s frame (the box's length axis, projected)."""
    axis = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], axis=1) @ transform[:3, :3].T
    return np.arctan2(axis[:, 1], axis[:, 0])


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read OmniDrive annotation {path}: {error}") from error
