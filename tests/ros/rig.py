"""Test-side publishers of six cameras + odometry, and collectors of the planner's outputs."""

from __future__ import annotations

import math

import cv2
import numpy as np

from occvla_ros.constants import CAMERA_NAMES
from occvla_ros.ros.conversions import ns_to_stamp
from tests.support.ros import DISCOVERY_TIMEOUT_S

SECOND = 1_000_000_000


def jpeg_frames(width: int = 320, height: int = 180) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    frames = {}
    for name in CAMERA_NAMES:
        image = cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (width, height))
        frames[name] = cv2.imencode(".jpg", image)[1].tobytes()
    return frames


class CameraRig:
    """Publishes camera sets and odometry from a RosProbe (sensor-data QoS, like a driver)."""

    def __init__(self, probe, transport: str = "compressed") -> None:
        from nav_msgs.msg import Odometry
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        self.probe, self.transport = probe, transport
        kind, suffix = (
            (CompressedImage, "image_rect/compressed")
            if transport == "compressed"
            else (Image, "image_raw")
        )
        self.topics = {name: f"/{name}/{suffix}" for name in CAMERA_NAMES}
        self.cameras = {
            name: probe.node.create_publisher(kind, topic, qos_profile_sensor_data)
            for name, topic in self.topics.items()
        }
        self.odometry = probe.node.create_publisher(Odometry, "/odom", qos_profile_sensor_data)
        self.jpegs = jpeg_frames()
        self.raw = np.full((90, 160, 3), 90, np.uint8)

    def wait_for_node(self) -> bool:
        return all(
            self.probe.wait_for_subscribers(p, timeout_s=DISCOVERY_TIMEOUT_S * 3)
            for p in (*self.cameras.values(), self.odometry)
        )

    def camera_message(self, name: str, stamp_ns: int):
        from sensor_msgs.msg import CompressedImage, Image

        if self.transport == "compressed":
            message = CompressedImage(format="jpeg", data=self.jpegs[name])
        else:
            height, width, _ = self.raw.shape
            message = Image(
                height=height, width=width, encoding="rgb8", step=width * 3,
                data=bytearray(self.raw),
            )  # fmt: skip
        message.header.stamp = ns_to_stamp(stamp_ns)
        message.header.frame_id = name
        return message

    def publish_odometry(self, stamp_ns: int, speed: float = 5.0) -> None:
        from nav_msgs.msg import Odometry

        message = Odometry()
        message.header.stamp = ns_to_stamp(stamp_ns)
        message.header.frame_id = "odom"
        message.child_frame_id = "base_link"
        message.pose.pose.orientation.w = 1.0
        message.pose.pose.position.x = 0.5 * stamp_ns / SECOND
        message.twist.twist.linear.x = speed
        message.twist.twist.angular.z = 0.0 if math.isfinite(speed) else speed
        self.odometry.publish(message)

    def publish_set(self, stamp_ns: int, skip=(), replace=None, speed: float = 5.0) -> None:
        """Odometry then the six cameras (``replace``: name -> message used instead)."""
        self.publish_odometry(stamp_ns, speed)
        for name in CAMERA_NAMES:
            if name in skip:
                continue
            message = (replace or {}).get(name) or self.camera_message(name, stamp_ns)
            message.header.stamp = ns_to_stamp(stamp_ns)
            self.cameras[name].publish(message)


class Outputs:
    """Collects the planner's Path / meta-action / diagnostics in the probe."""

    def __init__(self, probe, node_name: str = "occvla_planner") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Path
        from std_msgs.msg import String

        self.paths, self.actions, self.statuses = [], [], []
        node = probe.node
        self.path_subscription = node.create_subscription(
            Path, f"/{node_name}/trajectory", self.paths.append, 10
        )
        node.create_subscription(String, f"/{node_name}/meta_action", self.actions.append, 10)
        node.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: self.statuses.extend(m.status), 50
        )

    def status_with(self, text: str):
        return next((s for s in reversed(self.statuses) if text in s.message), None)


# How long `drive` keeps waiting after the last set: a node still working through earlier sets on
# a loaded 2-core machine (beside a CPU hog and other test runs) needed more than 20 s.
SETTLE_TIMEOUT_S = 45.0


def drive(probe, rig, stamps_ns, until, period_s: float = 0.25, **publish) -> bool:
    """Publish one set per stamp (period_s apart), then keep spinning until ``until()``."""
    for stamp_ns in stamps_ns:
        rig.publish_set(stamp_ns, **publish)
        if probe.spin_until(until, period_s):
            return True
    return probe.spin_until(until, SETTLE_TIMEOUT_S)
