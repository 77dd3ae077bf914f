"""Write a complete synthetic dataset: nuScenes tables and sensor files, Occ3D labels, OmniDrive QA.

Layout under ``output_dir`` (the same as real data, see docs/synthetic-world.md):
``<version>/*.json``, ``samples/<CH>/``, ``sweeps/<CH>/``, ``maps/<token>.png``,
``gts/<scene>/<sample_token>/labels.npz``, ``omnidrive/{vqa,desc,keywords}/<split>/<token>.json``,
``world/<scene>.json`` (route command, situation and world state per keyframe).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from occvla_ros.constants import (
    CAMERA_NAMES,
    CAMERA_SWEEP_HZ,
    KEYFRAME_HZ,
    LIDAR_NAME,
    OCC_CLASS_ID,
)
from occvla_ros.data import world_annotations
from occvla_ros.data.synth import omnidrive, situation
from occvla_ros.data.synth.config import SynthConfig
from occvla_ros.data.synth.lidar import LidarScanner
from occvla_ros.data.synth.nuscenes_writer import NuScenesTables, visibility_token
from occvla_ros.data.synth.occupancy import OccupancyLabeler
from occvla_ros.data.synth.render import SceneRenderer
from occvla_ros.data.synth.rig import Rig, build_rig
from occvla_ros.data.synth.world import BoxSet, World, build_world
from occvla_ros.errors import ConfigError, DataError
from occvla_ros.geometry import invert_transform, make_transform, yaw_to_quat_wxyz

LOGGER = logging.getLogger(__name__)
FRAMES_PER_KEYFRAME = round(CAMERA_SWEEP_HZ / KEYFRAME_HZ)  # 6 camera frames per sample
TIMESTAMP_BASE_US = 1_600_000_000_000_000
SCENE_SPACING_US = 1_000_000_000  # scenes 1000 s apart on one clock
ANNOTATION_RANGE_M = 50.0
SENSING_RANGE_M = 90.0
LOCATION = "boston-seaport"  # right-hand traffic, like the world


@dataclass(frozen=True)
class _Frame:
    """One camera timestamp of a scene."""

    frame: int  # camera frame index (12 Hz)
    t: float  # seconds since the scene start
    timestamp: int  # microseconds
    ego_to_global: np.ndarray  # [4, 4]

    @property
    def is_key(self) -> bool:
        return self.frame % FRAMES_PER_KEYFRAME == 0


@dataclass
class _Scene:
    index: int
    name: str
    logfile: str
    world: World
    sample_tokens: list[str]
    calibration: dict[str, str]  # channel -> calibrated_sensor token
    records: dict[str, list[dict]]  # channel -> sample_data records in time order
    rng: np.random.Generator


@dataclass
class SynthSummary:
    """What was written and how long each stage took (seconds, summed over scenes)."""

    output_dir: Path
    scenes: int = 0
    keyframes: int = 0
    images: int = 0
    lidar_scans: int = 0
    annotations: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # wall-clock
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # this process's CPU time

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall-clock and CPU time of the ``with`` body to ``stage``."""
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        for totals, spent in (
            (self.seconds, time.perf_counter() - wall),
            (self.cpu_seconds, time.process_time() - cpu),
        ):
            totals[stage] = totals.get(stage, 0.0) + spent


def scene_names(config: SynthConfig) -> list[tuple[str, str]]:
    """(scene name, "train" | "val") per scene, names from the devkit's split lists."""
    from nuscenes.utils import splits

    train, val = config.split_counts
    if config.version == "v1.0-mini":
        train_names, val_names = splits.mini_train, splits.mini_val
    else:
        train_names, val_names = splits.train, splits.val
    return [(n, "train") for n in train_names[:train]] + [(n, "val") for n in val_names[:val]]


def camera_frame_count(config: SynthConfig) -> int:
    """Camera timestamps per scene (each is one image per camera)."""
    keyframes = config.num_keyframes_per_scene
    return (keyframes - 1) * FRAMES_PER_KEYFRAME + 1 if config.camera_sweeps else keyframes


def generate_dataset(
    output_dir: str | Path,
    config: SynthConfig,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Generate the dataset described by ``config`` into ``output_dir``.

    ``progress(n)`` is called after every n camera timestamps (all six images) are written.
    Raises ConfigError if ``output_dir`` already holds a dataset of that version.
    """
    output_dir = Path(output_dir)
    if (output_dir / config.version).exists():
        raise ConfigError(
            f"{output_dir / config.version} already exists; choose an empty output directory"
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create output directory {output_dir}: {error}") from error
    summary = SynthSummary(output_dir)
    started, cpu_started = time.perf_counter(), time.process_time()
    with summary.timed("setup"):
        rig = build_rig(config.image_width, config.image_height, config.lidar_azimuth_steps)
        scanner = LidarScanner(rig.lidar, config.lidar_max_range_m)
        labeler = OccupancyLabeler(rig, scanner)
        tables = NuScenesTables(config.seed)
        for channel in (*CAMERA_NAMES, LIDAR_NAME):
            modality = "lidar" if channel == LIDAR_NAME else "camera"
            token = tables.token("sensor", channel)
            tables.add("sensor", token, channel=channel, modality=modality)
    for scene_index, (name, split) in enumerate(scene_names(config)):
        writer = _SceneWriter(
            output_dir,
            config,
            rig=rig,
            scanner=scanner,
            labeler=labeler,
            tables=tables,
            summary=summary,
        )
        writer.write(scene_index, name, split, progress)
    with summary.timed("tables"):
        tables.write(output_dir / config.version)
    summary.seconds["total"] = time.perf_counter() - started
    summary.cpu_seconds["total"] = time.process_time() - cpu_started
    return summary


class _SceneWriter:
    def __init__(self, output_dir, config, *, rig: Rig, scanner, labeler, tables, summary) -> None:
        self.root = output_dir
        self.config = config
        self.rig = rig
        self.scanner = scanner
        self.labeler = labeler
        self.tables = tables
        self.summary = summary

    def write(self, scene_index: int, name: str, split: str, progress) -> None:
        config, tables = self.config, self.tables
        with self.summary.timed("world"):
            world = build_world(config.seed, scene_index, float(config.scene_duration_s))
            renderer = SceneRenderer(world, self.rig.cameras)
        log_token = tables.token("log", scene_index)
        logfile = f"n015-synth-{config.seed}-{scene_index:04d}"
        tables.add(
            "log",
            log_token,
            logfile=logfile,
            vehicle="n015",
            date_captured="2020-09-13",
            location=LOCATION,
        )
        self._write_map(scene_index, world, log_token)
        calibration = self._calibration(scene_index)
        keyframes = config.num_keyframes_per_scene
        base_us = TIMESTAMP_BASE_US + scene_index * SCENE_SPACING_US
        sample_tokens = [tables.token("sample", scene_index, k) for k in range(keyframes)]
        scene_token = tables.token("scene", scene_index)
        samples = [
            tables.add(
                "sample", sample_tokens[k], timestamp=base_us + k * 500_000, scene_token=scene_token
            )
            for k in range(keyframes)
        ]
        tables.link_chain(samples)
        scene = _Scene(
            index=scene_index,
            name=name,
            logfile=logfile,
            world=world,
            sample_tokens=sample_tokens,
            calibration=calibration,
            records={c: [] for c in (*CAMERA_NAMES, LIDAR_NAME)},
            rng=np.random.default_rng([config.seed, scene_index, 7]),
        )
        step = 1 if config.camera_sweeps else FRAMES_PER_KEYFRAME
        annotations: dict[int, list[dict]] = {}
        keyframe_worlds: dict[str, world_annotations.KeyframeWorld] = {}
        for frame in range(0, (keyframes - 1) * FRAMES_PER_KEYFRAME + 1, step):
            t = frame / CAMERA_SWEEP_HZ
            at = _Frame(
                frame=frame,
                t=t,
                timestamp=base_us + round(frame * 1_000_000 / CAMERA_SWEEP_HZ),
                ego_to_global=_ego_to_global(world, t),
            )
            with self.summary.timed("render"):
                images = renderer.render(t, at.ego_to_global)
            with self.summary.timed("encode"):
                self._write_images(scene, at, images)
            if at.is_key:
                k = frame // FRAMES_PER_KEYFRAME
                with self.summary.timed("keyframe sensing"):
                    annotations[k] = self._keyframe(scene, at)
                with self.summary.timed("qa"):
                    end = (keyframes - 1) / KEYFRAME_HZ
                    facts = omnidrive.keyframe_facts(world, t, scene_end_s=end)
                    self._write_qa(split, sample_tokens[k], facts)
                    keyframe_worlds[sample_tokens[k]] = situation.keyframe_world(world, t)
            if progress is not None:
                progress(1)
        for records in scene.records.values():
            tables.link_chain(records)
        world_annotations.write_scene(self.root, name, keyframe_worlds)
        self._instances(scene_index, world, annotations)
        tables.add(
            "scene",
            scene_token,
            log_token=log_token,
            nbr_samples=keyframes,
            first_sample_token=sample_tokens[0],
            last_sample_token=sample_tokens[-1],
            name=name,
            description=_describe(world),
        )
        self.summary.scenes += 1
        self.summary.keyframes += keyframes

    def _calibration(self, scene_index: int) -> dict[str, str]:
        tokens = {}
        sensors = [*self.rig.cameras, self.rig.lidar]
        for sensor in sensors:
            token = self.tables.token("calibrated_sensor", scene_index, sensor.channel)
            intrinsic = getattr(sensor, "intrinsic", None)
            self.tables.add(
                "calibrated_sensor",
                token,
                sensor_token=self.tables.token("sensor", sensor.channel),
                translation=sensor.translation,
                rotation=sensor.rotation,
                camera_intrinsic=intrinsic.tolist() if intrinsic is not None else [],
            )
            tokens[sensor.channel] = token
        return tokens

    def _write_images(self, scene: _Scene, at: _Frame, images: dict[str, np.ndarray]) -> None:
        folder = "samples" if at.is_key else "sweeps"
        # A sweep belongs to the NEXT keyframe's sample, as in nuScenes.
        sample_token = scene.sample_tokens[math.ceil(at.frame / FRAMES_PER_KEYFRAME)]
        quality = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        for channel, image in images.items():
            filename = f"{folder}/{channel}/{scene.logfile}__{channel}__{at.timestamp}.jpg"
            ok, encoded = cv2.imencode(".jpg", image, quality)
            if not ok:
                raise DataError(f"JPEG encoding failed for {filename}")
            path = self.root / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encoded.tobytes())
            scene.records[channel].append(
                self._sample_data(scene, at, channel, sample_token, filename)
            )
        self.summary.images += len(images)

    def _sample_data(
        self, scene: _Scene, at: _Frame, channel: str, sample_token: str, filename: str
    ) -> dict:
        token = self.tables.token("sample_data", scene.index, channel, at.frame)
        pose_token = self.tables.token("ego_pose", scene.index, channel, at.frame)
        ego_to_global = at.ego_to_global
        yaw = math.atan2(ego_to_global[1, 0], ego_to_global[0, 0])
        self.tables.add(
            "ego_pose",
            pose_token,
            timestamp=at.timestamp,
            rotation=[float(v) for v in yaw_to_quat_wxyz(yaw)],
            translation=[float(v) for v in ego_to_global[:3, 3]],
        )
        is_camera = channel != LIDAR_NAME
        return self.tables.add(
            "sample_data",
            token,
            sample_token=sample_token,
            ego_pose_token=pose_token,
            calibrated_sensor_token=scene.calibration[channel],
            timestamp=at.timestamp,
            fileformat="pcd" if channel == LIDAR_NAME else "jpg",
            is_key_frame=at.is_key,
            height=self.config.image_height if is_camera else 0,
            width=self.config.image_width if is_camera else 0,
            filename=filename,
            prev="",
            next="",
        )

    def _keyframe(self, scene: _Scene, at: _Frame) -> list[dict]:
        """LIDAR_TOP scan, Occ3D labels and the sample's annotations; returns the annotations."""
        world, ego_to_global = scene.world, at.ego_to_global
        sample_token = scene.sample_tokens[at.frame // FRAMES_PER_KEYFRAME]
        global_to_ego = invert_transform(ego_to_global)
        agent_boxes = world.agent_boxes(at.t)
        boxes = BoxSet.concat([world.static_boxes, agent_boxes])
        near = np.linalg.norm(boxes.centers[:, :2] - ego_to_global[:2, 3], axis=1)
        boxes_ego = boxes.select(near < SENSING_RANGE_M).transformed(global_to_ego)

        def ground_class_ego(points_ego: np.ndarray) -> np.ndarray:
            return world.ground_class(points_ego @ ego_to_global[:2, :2].T + ego_to_global[:2, 3])

        points, owners = self.scanner.scan(boxes_ego, ground_class_ego, scene.rng)
        filename = f"samples/{LIDAR_NAME}/{scene.logfile}__{LIDAR_NAME}__{at.timestamp}.pcd.bin"
        path = self.root / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(points.tobytes())
        scene.records[LIDAR_NAME].append(
            self._sample_data(scene, at, LIDAR_NAME, sample_token, filename)
        )
        self.summary.lidar_scans += 1
        occupancy = self.labeler.label(boxes_ego, ego_to_global, world.ground_class)
        folder = self.root / "gts" / scene.name / sample_token
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            folder / "labels.npz",
            semantics=occupancy.semantics,
            mask_lidar=occupancy.mask_lidar,
            mask_camera=occupancy.mask_camera,
        )
        return self._annotations(scene, at, occupancy, owners)

    def _annotations(self, scene: _Scene, at: _Frame, occupancy, owners: np.ndarray) -> list[dict]:
        world, ego_to_global = scene.world, at.ego_to_global
        global_to_ego = invert_transform(ego_to_global)
        k = at.frame // FRAMES_PER_KEYFRAME
        states = world.agent_states(at.t)
        lidar_counts = np.bincount(owners[owners >= 0], minlength=len(world.agents))
        records = []
        for index, agent in enumerate(world.agents):
            if not states["active"][index]:
                continue
            centre = np.array([states["x"][index], states["y"][index], agent.size[2] / 2])
            if np.linalg.norm(centre[:2] - ego_to_global[:2, 3]) > ANNOTATION_RANGE_M:
                continue
            yaw = float(states["yaw"][index])
            box = BoxSet(
                centre[None],
                np.array([[agent.size[1] / 2, agent.size[0] / 2, agent.size[2] / 2]]),
                np.array([yaw]),
                np.zeros((1, 3)),
                np.zeros(1, np.int64),
                np.zeros(1, np.int64),
            )
            corners_ego = box.transformed(global_to_ego).corners()[0]
            visible = self.labeler.visibility(index, corners_ego, occupancy.camera_depths)
            attribute = _attribute(agent, float(states["speed"][index]))
            records.append(
                self.tables.add(
                    "sample_annotation",
                    self.tables.token("sample_annotation", scene.index, index, k),
                    sample_token=scene.sample_tokens[k],
                    instance_token=self.tables.token("instance", scene.index, index),
                    visibility_token=visibility_token(visible),
                    attribute_tokens=[self.tables.attribute_token(attribute)] if attribute else [],
                    translation=[float(v) for v in centre],
                    size=[float(v) for v in agent.size],
                    rotation=[float(v) for v in yaw_to_quat_wxyz(yaw)],
                    prev="",
                    next="",
                    num_lidar_pts=int(lidar_counts[index]),
                    num_radar_pts=0,
                )
            )
            records[-1]["_agent"] = index
        self.summary.annotations += len(records)
        return records

    def _instances(self, scene_index: int, world: World, annotations: dict[int, list[dict]]):
        by_agent: dict[int, list[dict]] = {}
        for k in sorted(annotations):
            for record in annotations[k]:
                by_agent.setdefault(record.pop("_agent"), []).append(record)
        for index in sorted(by_agent):
            chain = by_agent[index]
            self.tables.link_chain(chain)
            self.tables.add(
                "instance",
                self.tables.token("instance", scene_index, index),
                category_token=self.tables.category_token(world.agents[index].category),
                nbr_annotations=len(chain),
                first_annotation_token=chain[0]["token"],
                last_annotation_token=chain[-1]["token"],
            )

    def _write_map(self, scene_index: int, world: World, log_token: str) -> None:
        token = self.tables.token("map", scene_index)
        filename = f"maps/{token}.png"
        path = self.root / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        drivable = np.where(world.raster == OCC_CLASS_ID["driveable_surface"], 255, 0)
        cv2.imwrite(str(path), np.flipud(drivable).astype(np.uint8))
        self.tables.add(
            "map", token, log_tokens=[log_token], category="semantic_prior", filename=filename
        )

    def _write_qa(self, split: str, token: str, facts: omnidrive.KeyframeFacts) -> None:
        vqa, desc, keywords = omnidrive.build_annotations(facts)
        for folder, content in (("vqa", vqa), ("desc", desc), ("keywords", keywords)):
            path = self.root / "omnidrive" / folder / split / f"{token}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content, indent=1), encoding="utf-8")


def _ego_to_global(world: World, t: float) -> np.ndarray:
    x, y, yaw = world.ego_pose(t)
    return make_transform((x, y, 0.0), yaw_to_quat_wxyz(yaw))


def _attribute(agent, speed: float) -> str | None:
    if agent.category.startswith("human."):
        return "pedestrian.moving" if speed > 0.2 else "pedestrian.standing"
    if agent.is_vehicle:
        if speed > 0.3:
            return "vehicle.moving"
        return "vehicle.parked" if agent.role == "parked" else "vehicle.stopped"
    return None


def _describe(world: World) -> str:
    turns = [i.turn for i in world.route.intersections if i.s_stop_line < world.ego.s[-1]]
    parts = [f"synthetic drive; intersections: {', '.join(turns) or 'none'}"]
    if world.lead_index is not None:
        parts.append("following a lead vehicle")
    for kind in sorted({kind for _, _, kind in world.ego.holds}):
        parts.append(f"stops for a {kind}" if kind != "yield" else "yields to a pedestrian")
    if world.obstacles:
        parts.append("an obstacle in the road")
    if world.ego.lane_changes:
        parts.append(f"{len(world.ego.lane_changes)} lane change(s)")
    return "; ".join(parts)
