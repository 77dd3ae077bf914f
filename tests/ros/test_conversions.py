"""Message <-> numpy conversions (real message classes, no middleware needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from occvla_ros.constants import OCC3D_CLASS_COLORS
from occvla_ros.errors import DataError
from occvla_ros.geometry import quat_wxyz_to_yaw
from occvla_ros.ros.conversions import (
    class_markers,
    cloud_to_points,
    compressed_to_frame,
    filter_voxels,
    image_to_frame,
    ns_to_stamp,
    occupancy_cloud,
    odometry_to_sample,
    path_message,
    stamp_to_ns,
)


def header(frame="base_link", stamp_ns=1_700_000_000_123_456_789):
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame)


def test_stamp_round_trip_is_exact():
    assert stamp_to_ns(ns_to_stamp(1_700_000_000_123_456_789)) == 1_700_000_000_123_456_789


def test_point_cloud_layout_and_round_trip():
    points = np.array([[1.0, 2.0, 0.5], [-3.0, 4.5, 2.2]], np.float32)
    classes = np.array([4, 11], np.uint8)
    cloud = occupancy_cloud(points, classes, header())
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32),
        ("y", 4, PointField.FLOAT32),
        ("z", 8, PointField.FLOAT32),
        ("class", 12, PointField.UINT8),
    ]
    assert (cloud.point_step, cloud.width, cloud.height, len(cloud.data)) == (16, 2, 1, 32)
    assert np.frombuffer(bytes(cloud.data[16:20]), "<f4")[0] == -3.0
    back_points, back_classes = cloud_to_points(cloud)
    np.testing.assert_array_equal(back_points, points)
    np.testing.assert_array_equal(back_classes, classes)
    cloud.fields[3].offset = 16  # past the end of a 16-byte point
    with pytest.raises(DataError, match=r"wrong fields \['class'\]"):
        cloud_to_points(cloud)
    cloud.fields[3].offset = 12
    cloud.fields[3].datatype = PointField.FLOAT32
    with pytest.raises(DataError, match="class"):
        cloud_to_points(cloud)


@pytest.mark.parametrize(
    ("points", "classes"),
    [([[1.0, 2.0, 0.5]], [200]), ([[np.nan, 2.0, 0.5]], [4])],
    ids=["class beyond Occ3D", "NaN coordinate"],
)
def test_clouds_with_values_no_marker_can_show_are_refused(points, classes):
    cloud = occupancy_cloud(np.array(points, np.float32), np.array(classes, np.uint8), header())
    with pytest.raises(DataError, match="classes up to"):
        cloud_to_points(cloud)


def test_path_orientations_follow_the_path_in_base_link():
    waypoints = np.array([[1, 0], [2, 1], [2, 1], [2, 3], [1, 3], [0, 3]], np.float32)
    path = path_message(waypoints, header())
    yaws = [
        quat_wxyz_to_yaw((p.pose.orientation.w, p.pose.orientation.x, p.pose.orientation.y,
                          p.pose.orientation.z))
        for p in path.poses
    ]  # fmt: skip
    # standing still (pose 3) keeps the previous heading
    assert yaws == pytest.approx([0, math.pi / 4, math.pi / 4, math.pi / 2, math.pi, math.pi])
    assert all(p.header.frame_id == "base_link" for p in path.poses)
    assert path.header.stamp == header().stamp
    assert [p.pose.position.x for p in path.poses] == [1, 2, 2, 2, 1, 0]


def test_path_in_the_odometry_frame_uses_the_pose():
    odometry = Odometry(header=header("odom"))
    odometry.pose.pose.position.x, odometry.pose.pose.position.y = 10.0, -5.0
    odometry.pose.pose.orientation.z = math.sin(math.pi / 4)  # yaw 90 deg
    odometry.pose.pose.orientation.w = math.cos(math.pi / 4)
    sample = odometry_to_sample(odometry)
    path = path_message(np.array([[1.0, 0.0]] + [[2.0, 0.0]] * 5), header("odom"), sample)
    first = path.poses[0].pose
    assert (first.position.x, first.position.y) == pytest.approx((10.0, -4.0))
    yaw = quat_wxyz_to_yaw((first.orientation.w, 0.0, 0.0, first.orientation.z))
    assert yaw == pytest.approx(math.pi / 2)


def test_a_twist_only_odometry_serves_base_link_paths_but_not_odometry_frame_ones():
    odometry = Odometry(header=header("odom"))
    odometry.pose.pose.orientation.w = 0.0  # an all-zero pose, as some drivers leave it
    sample = odometry_to_sample(odometry)
    waypoints = np.array([[1.0, 0.0]] * 6)
    assert len(path_message(waypoints, header(), None).poses) == 6
    with pytest.raises(DataError, match="zero orientation quaternion"):
        path_message(waypoints, header("odom"), sample)


def image(encoding, height, width, channels, *, step=None, fill=None):
    step = step or width * channels
    data = np.arange(step * height, dtype=np.uint8) if fill is None else fill
    return Image(encoding=encoding, height=height, width=width, step=step, data=bytearray(data))


def test_raw_images_decode_with_row_padding_and_mono8():
    padded = image("bgr8", 2, 3, 3, step=12)  # 3 bytes of padding per row
    frame = image_to_frame(padded)
    assert frame.data.shape == (2, 3, 3) and frame.encoding == "bgr8"
    assert frame.data[1, 0, 0] == 12  # second row starts after the padding
    mono = image_to_frame(image("mono8", 4, 5, 1))
    assert mono.data.shape == (4, 5) and mono.data[1, 0] == 5


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (image("rgba8", 2, 2, 4), "unsupported image encoding 'rgba8'"),
        (image("rgb8", 4, 4, 3, fill=np.zeros(40, np.uint8)), "carries 40 bytes"),
        (image("rgb8", 0, 4, 3), "0 step"),
    ],
)
def test_bad_raw_images_raise(message, error):
    with pytest.raises(DataError, match=error):
        image_to_frame(message)


def test_compressed_images_must_be_jpeg():
    assert (
        compressed_to_frame(CompressedImage(format="jpeg", data=b"\xff\xd8x")).data == b"\xff\xd8x"
    )
    with pytest.raises(DataError, match="png"):
        compressed_to_frame(CompressedImage(format="png", data=b"x"))


def test_markers_clear_then_one_cube_list_per_class():
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 2]], np.float32)
    classes = np.array([4, 4, 7], np.uint8)
    markers = class_markers(points, classes, header("base_link"), 0.4).markers
    assert markers[0].action == Marker.DELETEALL
    assert [(m.id, m.type, len(m.points)) for m in markers[1:]] == [
        (4, Marker.CUBE_LIST, 2),
        (7, Marker.CUBE_LIST, 1),
    ]
    red, green, _ = OCC3D_CLASS_COLORS[7]
    assert (markers[2].color.r, markers[2].color.g) == pytest.approx((red / 255, green / 255))
    assert markers[1].scale.x == pytest.approx(0.4)
    assert all(m.header.stamp == header().stamp for m in markers)


def test_voxel_filter_by_class_height_and_count():
    points = np.array([[0, 0, z] for z in (-0.8, 0.2, 1.0, 3.0)], np.float32)
    classes = np.array([11, 4, 4, 16], np.uint8)
    kept, kept_classes = filter_voxels(points, classes, {4, 16}, (0.0, 5.0), max_voxels=2)
    assert kept[:, 2].tolist() == pytest.approx([0.2, 1.0])
    assert kept_classes.tolist() == [4, 4]
