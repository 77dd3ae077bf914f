"""nuScenes scenes -> a rosbag2 bag the planner can be replayed from (no rclpy needed).

Read with the real nuScenes devkit, written with ``rosbags`` (MCAP, rosbag2 format 9, for
Jazzy / Kilted; or sqlite3 with format 8, which Humble's ``ros2 bag play`` reads). Per scene:

- ``/<CAM>/image_rect/compressed`` (``sensor_msgs/CompressedImage``): every camera sample_data,
  keyframes and sweeps, with the JPEG bytes as stored;
- ``/<CAM>/camera_info`` (``sensor_msgs/CameraInfo``): calibrated_sensor intrinsics, one per image;
- ``/odom`` (``nav_msgs/Odometry``): the ego pose of every CAM_FRONT sample_data, ``map`` ->
  ``base_link``, and the same poses on ``/tf`` (``tf2_msgs/TFMessage``);
- ``/LIDAR_TOP`` (``sensor_msgs/PointCloud2``): every LIDAR_TOP sweep, the ``.pcd.bin`` points
  as stored (x, y, z, intensity and, where the file has it, ring; float32), frame ``LIDAR_TOP``;
- ``/tf_static``: ``base_link`` -> each camera and LIDAR_TOP, once per scene;
- ``/gt_trajectory`` (``nav_msgs/Path``): each keyframe's ground-truth future, the loader's
  ``future_ego`` in ``base_link``, stamped with the keyframe's time.

Message stamps and log times are the nuScenes timestamps. The odometry twist (speed along the
heading, yaw rate) is the loader's causal odometry stream (:func:`odometry_stream`): the CAN bus
expansion's newest ``pose`` message at or before the time when it covers it, else the backward
difference of the ego poses (the scene's first pose, without a predecessor, goes on ``/tf`` only,
with no ``/odom`` message). The node's ego state from this stream is the loader's. nuScenes
images are undistorted, so CameraInfo carries ``plumb_bob`` with zero distortion. A missing or
truncated image or point cloud is skipped, counted and logged; the bag is still written. A
missing blob folder (``samples/<channel>``, ``sweeps/<channel>``) stops the conversion before it
starts, naming every one. MCAP chunks are zstd-compressed by default. The bag is written aside
(``.<name>.partial`` beside it) and renamed when complete, so an interrupted conversion leaves
nothing under the requested name. ``close_gaps_s`` moves each scene to start that long after the
previous one ends (stamps and log times alike), for players that keep the hours between the
recordings of one bag.
"""

from __future__ import annotations

import heapq
import logging
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from occvla_ros.constants import (
    CAMERA_NAMES,
    GROUND_TRUTH_TOPIC,
    LIDAR_NAME,
    ODOMETRY_TOPIC,
    camera_image_topic,
    camera_info_topic,
)
from occvla_ros.data.images import jpeg_size, read_jpeg_bytes
from occvla_ros.data.nuscenes_loader import (
    ODOMETRY_CHANNEL,
    LoaderOptions,
    can_pose_table,
    load_records,
    odometry_stream,
    open_can_bus,
    open_nuscenes,
)
from occvla_ros.errors import ConfigError, DataError
from occvla_ros.geometry import path_headings, yaw_to_quat_wxyz

LOGGER = logging.getLogger(__name__)
MAP_FRAME, BASE_FRAME = "map", "base_link"
STORAGES = ("mcap", "sqlite3")
COMPRESSIONS = ("zstd", "none")
LIDAR_TOPIC = f"/{LIDAR_NAME}"
# nuScenes .pcd.bin: float32 x, y, z, intensity, ring index per point (5 values); a file with 4
# values per point has no ring.
LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring")
FLOAT32_SIZE = 4


@dataclass
class ConversionReport:
    scenes: list[str] = field(default_factory=list)
    messages: Counter = field(default_factory=Counter)  # topic -> count
    skipped_images: list[str] = field(default_factory=list)  # why, one line each
    skipped_clouds: list[str] = field(default_factory=list)  # why, one line each
    keyframes: int = 0
    duration_s: float = 0.0  # recorded time of the scenes (gaps between them not counted)

    def summary(self) -> str:
        lines = [f"{len(self.scenes)} scene(s): {', '.join(self.scenes)}"]
        lines += [f"  {topic}: {count}" for topic, count in sorted(self.messages.items())]
        lines.append(f"  skipped images: {len(self.skipped_images)}")
        lines.append(f"  skipped point clouds: {len(self.skipped_clouds)}")
        return "\n".join(lines)


class _Messages:
    """Builds the bag's messages as ``rosbags`` typestore instances."""

    def __init__(self, typestore) -> None:
        self.t = typestore.types

    def header(self, stamp_ns: int, frame_id: str):
        time = self.t["builtin_interfaces/msg/Time"](
            sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
        )
        return self.t["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def pose(self, translation: Sequence[float], quat_wxyz: Sequence[float]):
        w, x, y, z = (float(v) for v in quat_wxyz)
        position = self.t["geometry_msgs/msg/Point"](*(float(v) for v in translation))
        return self.t["geometry_msgs/msg/Pose"](
            position=position, orientation=self.t["geometry_msgs/msg/Quaternion"](x, y, z, w)
        )

    def transform(self, stamp_ns: int, parent: str, child: str, translation, quat_wxyz):
        pose = self.pose(translation, quat_wxyz)
        vector = self.t["geometry_msgs/msg/Vector3"](
            pose.position.x, pose.position.y, pose.position.z
        )
        return self.t["geometry_msgs/msg/TransformStamped"](
            header=self.header(stamp_ns, parent),
            child_frame_id=child,
            transform=self.t["geometry_msgs/msg/Transform"](
                translation=vector, rotation=pose.orientation
            ),
        )

    def tf(self, transforms: list):
        return self.t["tf2_msgs/msg/TFMessage"](transforms=transforms)

    def compressed_image(self, stamp_ns: int, camera: str, jpeg: bytes):
        return self.t["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp_ns, camera),
            format="jpeg",
            data=np.frombuffer(jpeg, dtype=np.uint8),
        )

    def point_cloud(self, stamp_ns: int, frame: str, points: bytes, fields_per_point: int):
        """A dense PointCloud2 whose data are the float32 points as stored."""
        step = FLOAT32_SIZE * fields_per_point
        fields = [
            self.t["sensor_msgs/msg/PointField"](
                name=name,
                offset=FLOAT32_SIZE * index,
                datatype=7,
                count=1,  # 7: FLOAT32
            )
            for index, name in enumerate(LIDAR_FIELDS[:fields_per_point])
        ]
        return self.t["sensor_msgs/msg/PointCloud2"](
            header=self.header(stamp_ns, frame),
            height=1,
            width=len(points) // step,
            fields=fields,
            is_bigendian=False,
            point_step=step,
            row_step=len(points),
            data=np.frombuffer(points, dtype=np.uint8),
            is_dense=True,
        )

    def camera_info(self, stamp_ns: int, camera: str, width: int, height: int, intrinsic):
        k = np.asarray(intrinsic, dtype=np.float64).reshape(3, 3)
        projection = np.hstack([k, np.zeros((3, 1))])
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](0, 0, 0, 0, False)
        return self.t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, camera),
            height=height,
            width=width,
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=k.ravel(),
            r=np.eye(3).ravel(),
            p=projection.ravel(),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )

    def odometry(self, stamp_ns: int, translation, quat_wxyz, speed: float, yaw_rate: float):
        vector = self.t["geometry_msgs/msg/Vector3"]
        twist = self.t["geometry_msgs/msg/Twist"](
            linear=vector(float(speed), 0.0, 0.0), angular=vector(0.0, 0.0, float(yaw_rate))
        )
        return self.t["nav_msgs/msg/Odometry"](
            header=self.header(stamp_ns, MAP_FRAME),
            child_frame_id=BASE_FRAME,
            pose=self.t["geometry_msgs/msg/PoseWithCovariance"](
                pose=self.pose(translation, quat_wxyz), covariance=np.zeros(36)
            ),
            twist=self.t["geometry_msgs/msg/TwistWithCovariance"](
                twist=twist, covariance=np.zeros(36)
            ),
        )

    def path(self, stamp_ns: int, points: np.ndarray):
        header = self.header(stamp_ns, BASE_FRAME)
        poses = [
            self.t["geometry_msgs/msg/PoseStamped"](
                header=header, pose=self.pose((x, y, 0.0), yaw_to_quat_wxyz(heading))
            )
            for (x, y), heading in zip(points, path_headings(points, 0.0), strict=True)
        ]
        return self.t["nav_msgs/msg/Path"](header=header, poses=poses)


def _chain(nusc, token: str, keyframes_only: bool) -> list[dict]:
    """The sample_data chain from ``token`` to the end of its scene, in time order."""
    chain = []
    while token:
        data = nusc.get("sample_data", token)
        if data["is_key_frame"] or not keyframes_only:
            chain.append(data)
        token = data["next"]
    return chain


class _SceneWriter:
    def __init__(self, nusc, messages: _Messages, report: ConversionReport, keyframes_only: bool):
        self.nusc, self.messages, self.report = nusc, messages, report
        self.keyframes_only = keyframes_only
        self.can_bus = open_can_bus(Path(nusc.dataroot))
        self.offset_ns = 0  # added to every stamp of the scene (closing the gaps between scenes)

    def stamp_ns(self, timestamp_us) -> int:
        return int(timestamp_us) * 1000 + self.offset_ns

    def streams(self, scene: dict, records: list) -> list[Iterator[tuple[int, str, object]]]:
        """One (stamp_ns, topic, message) iterator per source, each in time order.

        Merged by stamp, equal stamps keep this order: the static transforms and the odometry of
        an instant come before its images, so a planner has the ego state when a set completes.
        """
        first = self.nusc.get("sample", scene["first_sample_token"])
        return [
            iter([self._static_transforms(first)]),
            self._odometry(first["data"][ODOMETRY_CHANNEL], scene["name"]),
            *(self._camera(first["data"][camera], camera) for camera in CAMERA_NAMES),
            self._lidar(first["data"][LIDAR_NAME]),
            self._ground_truth(records),
        ]

    def _camera(self, token: str, camera: str) -> Iterator[tuple[int, str, object]]:
        for data in _chain(self.nusc, token, self.keyframes_only):
            stamp_ns = self.stamp_ns(data["timestamp"])
            path = Path(self.nusc.dataroot, data["filename"])
            try:
                jpeg = read_jpeg_bytes(path)
                width, height = jpeg_size(jpeg, path)
            except DataError as error:
                self.report.skipped_images.append(str(error))
                LOGGER.warning("skipped: %s", error)
                continue
            calib = self.nusc.get("calibrated_sensor", data["calibrated_sensor_token"])
            yield (
                stamp_ns,
                camera_image_topic(camera),
                self.messages.compressed_image(stamp_ns, camera, jpeg),
            )
            yield (
                stamp_ns,
                camera_info_topic(camera),
                self.messages.camera_info(
                    stamp_ns, camera, width, height, calib["camera_intrinsic"]
                ),
            )

    def _lidar(self, token: str) -> Iterator[tuple[int, str, object]]:
        for data in _chain(self.nusc, token, self.keyframes_only):
            path = Path(self.nusc.dataroot, data["filename"])
            try:
                points, fields_per_point = read_point_cloud(path)
            except DataError as error:
                self.report.skipped_clouds.append(str(error))
                LOGGER.warning("skipped: %s", error)
                continue
            stamp_ns = self.stamp_ns(data["timestamp"])
            yield (
                stamp_ns,
                LIDAR_TOPIC,
                self.messages.point_cloud(stamp_ns, LIDAR_NAME, points, fields_per_point),
            )

    def _odometry(self, token: str, scene_name: str) -> Iterator[tuple[int, str, object]]:
        chain = _chain(self.nusc, token, keyframes_only=False)
        can_table = can_pose_table(self.can_bus, scene_name) if self.can_bus else None
        _, speed, yaw_rate, _ = odometry_stream(self.nusc, chain, can_table)
        for index, data in enumerate(chain):
            pose = self.nusc.get("ego_pose", data["ego_pose_token"])
            stamp_ns = self.stamp_ns(data["timestamp"])
            if np.isfinite(speed[index]):  # the first pose has no twist: pose on /tf only
                yield (
                    stamp_ns,
                    ODOMETRY_TOPIC,
                    self.messages.odometry(
                        stamp_ns,
                        pose["translation"],
                        pose["rotation"],
                        speed[index],
                        yaw_rate[index],
                    ),
                )
            yield (
                stamp_ns,
                "/tf",
                self.messages.tf(
                    [
                        self.messages.transform(
                            stamp_ns, MAP_FRAME, BASE_FRAME, pose["translation"], pose["rotation"]
                        )
                    ]
                ),
            )

    def _ground_truth(self, records: list) -> Iterator[tuple[int, str, object]]:
        for record in records:
            if record.future_mask.any():
                stamp_ns = self.stamp_ns(record.timestamp_us)
                points = record.future_ego[record.future_mask]
                yield stamp_ns, GROUND_TRUTH_TOPIC, self.messages.path(stamp_ns, points)

    def _static_transforms(self, first_sample: dict) -> tuple[int, str, object]:
        stamp_ns = self.stamp_ns(first_sample["timestamp"])
        transforms = []
        for channel in (*CAMERA_NAMES, LIDAR_NAME):
            data = self.nusc.get("sample_data", first_sample["data"][channel])
            calib = self.nusc.get("calibrated_sensor", data["calibrated_sensor_token"])
            transforms.append(
                self.messages.transform(
                    stamp_ns, BASE_FRAME, channel, calib["translation"], calib["rotation"]
                )
            )
        return stamp_ns, "/tf_static", self.messages.tf(transforms)


TOPIC_TYPES = {
    **{camera_image_topic(c): "sensor_msgs/msg/CompressedImage" for c in CAMERA_NAMES},
    **{camera_info_topic(c): "sensor_msgs/msg/CameraInfo" for c in CAMERA_NAMES},
    ODOMETRY_TOPIC: "nav_msgs/msg/Odometry",
    "/tf": "tf2_msgs/msg/TFMessage",
    "/tf_static": "tf2_msgs/msg/TFMessage",
    GROUND_TRUTH_TOPIC: "nav_msgs/msg/Path",
    LIDAR_TOPIC: "sensor_msgs/msg/PointCloud2",
}


def read_point_cloud(path: Path) -> tuple[bytes, int]:
    """A .pcd.bin file's bytes and its float32 values per point (5, or 4 without the ring);
    :class:`DataError` naming it when missing, empty or not a whole number of points."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read point cloud {path}: {error.strerror or error}") from error
    for fields_per_point in (len(LIDAR_FIELDS), len(LIDAR_FIELDS) - 1):
        if data and len(data) % (FLOAT32_SIZE * fields_per_point) == 0:
            return data, fields_per_point
    raise DataError(
        f"point cloud {path} holds {len(data)} bytes: not a whole number of points of "
        f"{len(LIDAR_FIELDS)} or {len(LIDAR_FIELDS) - 1} float32 values"
    )


def missing_blob_folders(nusc, scenes: Sequence[dict], keyframes_only: bool) -> list[str]:
    """The blob folders (``samples/<channel>``, ``sweeps/<channel>``) the scenes' sample_data
    name but the dataroot lacks, relative to it."""
    channels = {*CAMERA_NAMES, LIDAR_NAME}
    folders = set()
    for scene in scenes:
        first = nusc.get("sample", scene["first_sample_token"])
        for channel in channels:
            for data in _chain(nusc, first["data"][channel], keyframes_only):
                folders.add(str(Path(data["filename"]).parent))
    return sorted(f for f in folders if not Path(nusc.dataroot, f).is_dir())


def _offered_qos(topic: str) -> list:
    """What the bag records as the publisher's QoS: reliable; /tf_static latched (as tf2 does)."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    infinite = QosTime(sec=2_147_483_647, nsec=4_294_967_295)  # rosbag2's "no limit"
    latched = topic == "/tf_static"
    return [
        Qos(
            history=QosHistory.KEEP_LAST,
            depth=1 if latched else 10,
            reliability=QosReliability.RELIABLE,
            durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
            deadline=infinite,
            lifespan=infinite,
            liveliness=QosLiveliness.AUTOMATIC,
            liveliness_lease_duration=infinite,
            avoid_ros_namespace_conventions=False,
        )
    ]


def convert(
    dataroot: str | Path,
    version: str,
    out: str | Path,
    *,
    scene_names: Sequence[str] | None = None,
    storage: str = "mcap",
    humble: bool = False,
    keyframes_only: bool = False,
    compression: str | None = None,
    close_gaps_s: float | None = None,
    progress: bool = False,
) -> ConversionReport:
    """Write the scenes (all of the version's when ``scene_names`` is None) into one bag.

    ``humble``: rosbag2 format 8 and the Humble message definitions (with sqlite3 storage, what
    Humble's ``ros2 bag play`` reads); otherwise format 9 with Jazzy's. ``compression``: "zstd"
    (MCAP chunks; the default for MCAP) or "none" (the default for sqlite3). ``close_gaps_s``:
    start each scene this many seconds after the previous one ends.
    """
    if storage not in STORAGES:
        raise ConfigError(f"unknown storage {storage!r}; expected one of {STORAGES}")
    compression = compression or ("zstd" if storage == "mcap" else "none")
    if compression not in COMPRESSIONS:
        raise ConfigError(f"unknown compression {compression!r}; expected one of {COMPRESSIONS}")
    if compression == "zstd" and storage != "mcap":
        raise ConfigError("zstd compression is for MCAP chunks: use --storage mcap")
    if close_gaps_s is not None and not close_gaps_s > 0:
        raise ConfigError(f"the gap between scenes must be positive, got {close_gaps_s}")
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} exists already: choose a new bag directory")
    dataroot = Path(dataroot)
    nusc = open_nuscenes(dataroot, version)
    available = [scene["name"] for scene in nusc.scene]
    unknown = sorted(set(scene_names or ()) - set(available))
    if unknown:
        raise ConfigError(f"no scene(s) {unknown} in {dataroot / version}; it has {available}")
    scenes = [s for s in nusc.scene if scene_names is None or s["name"] in scene_names]
    missing = missing_blob_folders(nusc, scenes, keyframes_only)
    if missing:
        raise DataError(
            f"{dataroot} lacks the blob folder(s) {', '.join(missing)} that the scenes' images "
            "and point clouds are in (download them, or --keyframes-only without sweeps/)"
        )
    records = load_records(
        dataroot, version, "all", LoaderOptions(), scene_names=[s["name"] for s in scenes],
        nusc=nusc,
    )  # fmt: skip
    # Written aside and renamed when complete: an interrupted run leaves no bag under `out`.
    aside = out.parent / f".{out.name}.partial"
    if aside.exists():
        LOGGER.info("removing %s, left by an interrupted conversion", aside)
        shutil.rmtree(aside)
    aside.mkdir(parents=True)
    try:
        report = _write_bag(
            nusc, scenes, records, aside / out.name, storage=storage, humble=humble,
            keyframes_only=keyframes_only, compression=compression, close_gaps_s=close_gaps_s,
            progress=progress,
        )  # fmt: skip
        (aside / out.name).rename(out)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return report


def _write_bag(
    nusc,
    scenes: list[dict],
    records: list,
    out: Path,
    *,
    storage: str,
    humble: bool,
    keyframes_only: bool,
    compression: str,
    close_gaps_s: float | None,
    progress: bool,
) -> ConversionReport:
    from rosbags.rosbag2 import (
        CompressionFormat,
        CompressionMode,
        StoragePlugin,
        Writer,
        WriterError,
    )
    from rosbags.typesys import Stores, get_typestore
    from tqdm import tqdm

    typestore = get_typestore(Stores.ROS2_HUMBLE if humble else Stores.ROS2_JAZZY)
    messages = _Messages(typestore)
    report = ConversionReport()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        writer = Writer(out, version=8 if humble else 9, storage_plugin=plugin)
    except WriterError as error:
        raise ConfigError(f"cannot write a bag at {out}: {error}") from error
    if compression == "zstd":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    durations = [_scene_duration_s(nusc, scene) for scene in scenes]
    bar = tqdm(total=round(sum(durations), 1), unit="s", desc="convert",
               disable=None if progress else True)  # fmt: skip
    with writer, bar:
        connections = {
            topic: writer.add_connection(
                topic, msgtype, typestore=typestore, offered_qos_profiles=_offered_qos(topic)
            )
            for topic, msgtype in TOPIC_TYPES.items()
        }
        scene_writer = _SceneWriter(nusc, messages, report, keyframes_only)
        end_ns = None  # the last stamp of the previous scene
        for scene, duration_s in zip(scenes, durations, strict=True):
            report.scenes.append(scene["name"])
            report.duration_s += duration_s
            start_ns = _scene_start_ns(nusc, scene)
            if close_gaps_s is not None and end_ns is not None:
                scene_writer.offset_ns = end_ns + int(close_gaps_s * 1e9) - start_ns
            scene_records = [r for r in records if r.scene_token == scene["token"]]
            report.keyframes += len(scene_records)
            streams = scene_writer.streams(scene, scene_records)
            shown_ns = start_ns + scene_writer.offset_ns
            for stamp_ns, topic, message in heapq.merge(*streams, key=lambda item: item[0]):
                data = typestore.serialize_cdr(message, TOPIC_TYPES[topic])
                writer.write(connections[topic], stamp_ns, data)
                report.messages[topic] += 1
                end_ns = stamp_ns
                if stamp_ns - shown_ns >= 100_000_000:  # the bar moves in 0.1 s of the scene
                    bar.update(round((stamp_ns - shown_ns) * 1e-9, 1))
                    shown_ns = stamp_ns
    return report


def _scene_start_ns(nusc, scene: dict) -> int:
    """The stamp of the scene's first message: its earliest first sample_data of a sensor."""
    first = nusc.get("sample", scene["first_sample_token"])
    channels = (*CAMERA_NAMES, LIDAR_NAME)
    return 1000 * min(nusc.get("sample_data", first["data"][c])["timestamp"] for c in channels)


def _scene_duration_s(nusc, scene: dict) -> float:
    first = nusc.get("sample", scene["first_sample_token"])["timestamp"]
    last = nusc.get("sample", scene["last_sample_token"])["timestamp"]
    return (last - first) * 1e-6
