"""Message <-> numpy conversions as small pure functions (no sensor_msgs_py or cv_bridge here).

Lists of numbers go into messages as ``array.array``/``bytearray``, never as ndarrays assigned
element by element (hundreds of times slower for images and clouds).
"""

from __future__ import annotations

import array
import math
from typing import TYPE_CHECKING

import numpy as np
from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from occvla_ros.constants import NUM_OCC_CLASSES, OCC3D_CLASS_COLORS, OCC3D_CLASS_NAMES
from occvla_ros.errors import DataError
from occvla_ros.geometry import (
    path_headings,
    quat_wxyz_to_yaw,
    ros_xyzw_to_quat_wxyz,
    yaw_to_quat_wxyz,
)
from occvla_ros.ros.stamps import ns_to_stamp, stamp_to_ns  # noqa: F401 - re-exported
from occvla_ros.runtime.ego import OdometrySample

if TYPE_CHECKING:
    from occvla_ros.runtime.planner import CameraFrame

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
# PointCloud2 layout of the occupancy cloud: x, y, z float32 + class uint8, padded to 16 bytes.
OCCUPANCY_CLOUD_DTYPE = np.dtype(
    {"names": ["x", "y", "z", "class"], "formats": ["<f4", "<f4", "<f4", "u1"], "itemsize": 16}
)


def image_to_frame(message: Image) -> CameraFrame:
    """rgb8/bgr8/mono8 sensor_msgs/Image -> CameraFrame (a view on the message's buffer)."""
    # Imported here: runtime.planner brings torch, which the occupancy node and the bag player,
    # importing this module for clouds, markers and stamps, must not load.
    from occvla_ros.runtime.planner import CameraFrame

    channels = _CHANNELS.get(message.encoding)
    if channels is None:
        raise DataError(
            f"unsupported image encoding {message.encoding!r}; expected {tuple(_CHANNELS)}"
        )
    height, width, step = message.height, message.width, message.step
    if width == 0 or height == 0 or step < width * channels or len(message.data) != step * height:
        raise DataError(
            f"{message.encoding} image {width}x{height} step {step} carries {len(message.data)} "
            f"bytes; expected step >= {width * channels} and step * height bytes"
        )
    rows = np.frombuffer(message.data, np.uint8).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    return CameraFrame(pixels[:, :, 0] if channels == 1 else pixels, message.encoding)


def compressed_to_frame(message: CompressedImage) -> CameraFrame:
    """JPEG sensor_msgs/CompressedImage -> CameraFrame holding the bytes (decoded later)."""
    from occvla_ros.runtime.planner import JPEG, CameraFrame  # torch: see image_to_frame

    if "jpeg" not in message.format.lower() and "jpg" not in message.format.lower():
        raise DataError(f"unsupported compressed format {message.format!r}; expected jpeg")
    return CameraFrame(bytes(message.data), JPEG)


def odometry_to_sample(message: Odometry) -> OdometrySample:
    pose, twist = message.pose.pose, message.twist.twist
    q = pose.orientation
    return OdometrySample(
        stamp_ns=stamp_to_ns(message.header.stamp),
        speed=twist.linear.x,
        yaw_rate=twist.angular.z,
        position=(pose.position.x, pose.position.y, pose.position.z),
        orientation_wxyz=tuple(float(v) for v in ros_xyzw_to_quat_wxyz(q.x, q.y, q.z, q.w)),
        frame_id=message.header.frame_id,
    )


def odometry_yaw(sample: OdometrySample) -> float:
    """The sample's heading; DataError for a zero quaternion (a driver that fills only the twist
    may leave the pose all zero: fine for base_link outputs, no heading for the odometry frame)."""
    if math.hypot(*sample.orientation_wxyz) < 1e-6:
        raise DataError(
            f"odometry at stamp {sample.stamp_ns} ns has a zero orientation quaternion: no "
            "heading to express the trajectory in the odometry frame"
        )
    return quat_wxyz_to_yaw(sample.orientation_wxyz)


def waypoints_to_frame(waypoints: np.ndarray, sample: OdometrySample) -> np.ndarray:
    """Ego-frame waypoints [N, 2] -> odometry-frame [N, 2] using the sample's planar pose."""
    yaw = odometry_yaw(sample)
    rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    return waypoints @ rotation.T + np.asarray(sample.position[:2])


def path_message(
    waypoints: np.ndarray, header: Header, sample: OdometrySample | None = None
) -> Path:
    """6 waypoints (ego frame) -> nav_msgs/Path; in the odometry frame when ``sample`` is given."""
    start_heading = 0.0
    points = np.asarray(waypoints, dtype=np.float64)
    z = 0.0
    if sample is not None:
        origin = np.asarray(sample.position[:2])
        points = waypoints_to_frame(points, sample)
        start_heading = odometry_yaw(sample)
        z = sample.position[2]
    else:
        origin = np.zeros(2)
    headings = path_headings(points - origin, start_heading)
    path = Path(header=header)
    for (x, y), heading in zip(points, headings, strict=True):
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = float(x), float(y), z
        w, qx, qy, qz = yaw_to_quat_wxyz(heading)
        orientation = pose.pose.orientation
        orientation.w, orientation.x, orientation.y, orientation.z = (
            float(w), float(qx), float(qy), float(qz)
        )  # fmt: skip
        path.poses.append(pose)
    return path


def occupancy_cloud(points: np.ndarray, classes: np.ndarray, header: Header) -> PointCloud2:
    """Points float32 [N, 3] + classes uint8 [N] -> PointCloud2 (x, y, z float32, class uint8)."""
    records = np.zeros(len(points), dtype=OCCUPANCY_CLOUD_DTYPE)
    records["x"], records["y"], records["z"] = points[:, 0], points[:, 1], points[:, 2]
    records["class"] = classes
    fields = [
        PointField(name=name, offset=OCCUPANCY_CLOUD_DTYPE.fields[name][1], datatype=kind, count=1)
        for name, kind in (
            ("x", PointField.FLOAT32),
            ("y", PointField.FLOAT32),
            ("z", PointField.FLOAT32),
            ("class", PointField.UINT8),
        )
    ]
    return PointCloud2(
        header=header,
        height=1,
        width=len(points),
        fields=fields,
        is_bigendian=False,
        point_step=OCCUPANCY_CLOUD_DTYPE.itemsize,
        row_step=OCCUPANCY_CLOUD_DTYPE.itemsize * len(points),
        data=array.array("B", records.tobytes()),
        is_dense=True,
    )


def cloud_to_points(message: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    """A PointCloud2 with float32 x, y, z and uint8 class fields -> points [N, 3], classes [N]."""
    offsets = {field.name: (field.offset, field.datatype) for field in message.fields}
    expected = {
        "x": PointField.FLOAT32,
        "y": PointField.FLOAT32,
        "z": PointField.FLOAT32,
        "class": PointField.UINT8,
    }
    sizes = {PointField.FLOAT32: 4, PointField.UINT8: 1}
    wrong = [
        name
        for name, kind in expected.items()
        if offsets.get(name, (0, None))[1] != kind
        or not 0 <= offsets[name][0] <= message.point_step - sizes[kind]
    ]
    count = message.width * message.height
    if wrong or message.is_bigendian or len(message.data) < count * message.point_step:
        raise DataError(
            f"point cloud must have little-endian float32 x, y, z and uint8 class fields and "
            f"{count} x {message.point_step} bytes; wrong fields {wrong}, {len(message.data)} bytes"
        )
    layout = np.dtype(
        {
            "names": list(expected),
            "formats": ["<f4", "<f4", "<f4", "u1"],
            "offsets": [offsets[name][0] for name in expected],
            "itemsize": message.point_step,
        }
    )
    records = np.frombuffer(message.data, dtype=layout, count=count)
    points = np.stack([records["x"], records["y"], records["z"]], axis=1)  # [N, 3]
    classes = records["class"].copy()
    if count and (classes.max() >= NUM_OCC_CLASSES or not np.isfinite(points).all()):
        raise DataError(
            f"point cloud holds classes up to {classes.max()} (Occ3D has {NUM_OCC_CLASSES}) "
            "or non-finite coordinates"
        )
    return points, classes


def class_markers(
    points: np.ndarray,
    classes: np.ndarray,
    header: Header,
    voxel_size: float,
    namespace: str = "occupancy",
) -> MarkerArray:
    """DELETEALL, then one CUBE_LIST per class present (Occ3D colours; id = class index)."""
    markers = MarkerArray()
    markers.markers.append(Marker(header=header, ns=namespace, action=Marker.DELETEALL))
    for class_id in np.unique(classes):
        selected = points[classes == class_id]
        red, green, blue = OCC3D_CLASS_COLORS[int(class_id)]
        marker = Marker(
            header=header,
            ns=namespace,
            id=int(class_id),
            type=Marker.CUBE_LIST,
            action=Marker.ADD,
            color=ColorRGBA(r=red / 255.0, g=green / 255.0, b=blue / 255.0, a=1.0),
            text=OCC3D_CLASS_NAMES[int(class_id)],
        )
        marker.pose.orientation.w = 1.0
        marker.scale.x = marker.scale.y = marker.scale.z = voxel_size
        marker.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in selected]
        markers.markers.append(marker)
    return markers


def filter_voxels(
    points: np.ndarray,
    classes: np.ndarray,
    class_filter: set[int] | None,
    z_range: tuple[float, float],
    max_voxels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the given classes (None: all), z within ``z_range``, at most ``max_voxels`` (the
    lowest-z first are dropped last: ground-level structure matters most for driving)."""
    keep = (points[:, 2] >= z_range[0]) & (points[:, 2] <= z_range[1])
    if class_filter is not None:
        keep &= np.isin(classes, list(class_filter))
    points, classes = points[keep], classes[keep]
    if len(points) > max_voxels:
        order = np.argsort(points[:, 2], kind="stable")[:max_voxels]
        points, classes = points[order], classes[order]
    return points, classes
