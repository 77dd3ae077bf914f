"""nuScenes scenes -> a rosbag2 bag the planner can be replayed from (no rclpy needed).

Read with the real nuScenes devkit, written with ``rosbags`` (MCAP, rosbag2 format 9, for
Jazzy / Kilted; or sqlite3 with format 8, which Humble's ``ros2 bag play`` reads). Per scene:

- ``/<CAM>/image_rect/compressed`` (``sensor_msgs/CompressedImage``): every camera sample_data,
  keyframes and sweeps, with the JPEG bytes as stored;
- ``/<CAM>/camera_info`` (``sensor_msgs/CameraInfo``): calibrated_sensor intrinsics, one per image;
- ``/odom`` (``nav_msgs/Odometry``): the ego pose of every CAM_FRONT sample_data, ``map`` ->
  ``base_link``, and the same poses on ``/tf`` (``tf2_msgs/TFMessage``);
- ``/tf_static``: ``base_link`` -> each camera and LIDAR_TOP, once per scene;
- ``/gt_trajectory`` (``nav_msgs/Path``): each keyframe's ground-truth future, the loader's
  ``future_ego`` in ``base_link``, stamped with the keyframe's time.

Message stamps and log times are the nuScenes timestamps. The odometry twist (speed along the
heading, yaw rate) is the loader's causal odometry stream (:func:`odometry_stream`): the CAN bus
expansion's newest ``pose`` message at or before the time when it covers it, else the backward
difference of the ego poses (the scene's first pose, without a predecessor, goes on ``/tf`` only,
with no ``/odom`` message). The node's ego state from this stream is the loader's. nuScenes
images are undistorted, so CameraInfo carries ``plumb_bob`` with zero distortion. A missing or
truncated image is skipped, counted and logged; the bag is still written.
"""

from __future__ import annotations

import heapq
import logging
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


@dataclass
class ConversionReport:
    scenes: list[str] = field(default_factory=list)
    messages: Counter = field(default_factory=Counter)  # topic -> count
    skipped_images: list[str] = field(default_factory=list)  # why, one line each

    def summary(self) -> str:
        lines = [f"{len(self.scenes)} scene(s): {', '.join(self.scenes)}"]
        lines += [f"  {topic}: {count}" for topic, count in sorted(self.messages.items())]
        lines.append(f"  skipped images: {len(self.skipped_images)}")
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
            self._ground_truth(records),
        ]

    def _camera(self, token: str, camera: str) -> Iterator[tuple[int, str, object]]:
        for data in _chain(self.nusc, token, self.keyframes_only):
            stamp_ns = int(data["timestamp"]) * 1000
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

    def _odometry(self, token: str, scene_name: str) -> Iterator[tuple[int, str, object]]:
        chain = _chain(self.nusc, token, keyframes_only=False)
        can_table = can_pose_table(self.can_bus, scene_name) if self.can_bus else None
        _, speed, yaw_rate, _ = odometry_stream(self.nusc, chain, can_table)
        for index, data in enumerate(chain):
            pose = self.nusc.get("ego_pose", data["ego_pose_token"])
            stamp_ns = int(data["timestamp"]) * 1000
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
                stamp_ns = record.timestamp_us * 1000
                points = record.future_ego[record.future_mask]
                yield stamp_ns, GROUND_TRUTH_TOPIC, self.messages.path(stamp_ns, points)

    def _static_transforms(self, first_sample: dict) -> tuple[int, str, object]:
        stamp_ns = int(first_sample["timestamp"]) * 1000
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
}


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
) -> ConversionReport:
    """Write the scenes (all of the version's when ``scene_names`` is None) into one bag.

    ``humble``: rosbag2 format 8 and the Humble message definitions (with sqlite3 storage, what
    Humble's ``ros2 bag play`` reads); otherwise format 9 with Jazzy's.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
    from rosbags.typesys import Stores, get_typestore

    if storage not in STORAGES:
        raise ConfigError(f"unknown storage {storage!r}; expected one of {STORAGES}")
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
    records = load_records(
        dataroot, version, "all", LoaderOptions(), scene_names=[s["name"] for s in scenes],
        nusc=nusc,
    )  # fmt: skip
    typestore = get_typestore(Stores.ROS2_HUMBLE if humble else Stores.ROS2_JAZZY)
    messages = _Messages(typestore)
    report = ConversionReport()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        writer = Writer(out, version=8 if humble else 9, storage_plugin=plugin)
    except WriterError as error:
        raise ConfigError(f"cannot write a bag at {out}: {error}") from error
    with writer:
        connections = {
            topic: writer.add_connection(
                topic, msgtype, typestore=typestore, offered_qos_profiles=_offered_qos(topic)
            )
            for topic, msgtype in TOPIC_TYPES.items()
        }
        scene_writer = _SceneWriter(nusc, messages, report, keyframes_only)
        for scene in scenes:
            report.scenes.append(scene["name"])
            scene_records = [r for r in records if r.scene_token == scene["token"]]
            streams = scene_writer.streams(scene, scene_records)
            for stamp_ns, topic, message in heapq.merge(*streams, key=lambda item: item[0]):
                data = typestore.serialize_cdr(message, TOPIC_TYPES[topic])
                writer.write(connections[topic], stamp_ns, data)
                report.messages[topic] += 1
    return report
