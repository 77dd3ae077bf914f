"""A real rclpy publisher in one process reaches a subscriber in another."""

from __future__ import annotations

import pytest

from tests.support.ros import DISCOVERY_TIMEOUT_S, python_module_command

pytestmark = pytest.mark.ros


def test_string_crosses_processes(ros_probe, node_process):
    from std_msgs.msg import String

    received: list[str] = []
    subscription = ros_probe.node.create_subscription(
        String, "smoke_chatter", lambda m: received.append(m.data), 10
    )
    talker = node_process(python_module_command("tests.support.talker", "smoke_chatter"), "talker")

    assert ros_probe.wait_for_publishers(subscription), talker.log_text()
    assert ros_probe.spin_until(lambda: len(received) >= 3, DISCOVERY_TIMEOUT_S), talker.log_text()
    assert all(text.startswith("hello ") for text in received)
    assert talker.returncode is None, "talker died"


def test_full_size_image_crosses_processes_with_the_fastdds_profile(ros_probe, node_process):
    from sensor_msgs.msg import Image

    frames: list[tuple[int, int, int]] = []
    subscription = ros_probe.node.create_subscription(
        Image, "smoke_image", lambda m: frames.append((m.height, m.width, len(m.data))), 10
    )
    talker = node_process(
        python_module_command("tests.support.talker", "smoke_image", "--image"), "image_talker"
    )

    assert ros_probe.wait_for_publishers(subscription), talker.log_text()
    assert ros_probe.spin_until(lambda: len(frames) >= 3, DISCOVERY_TIMEOUT_S), talker.log_text()
    assert frames[0] == (900, 1600, 900 * 1600 * 3)
    assert "error" not in talker.log_text().lower()
