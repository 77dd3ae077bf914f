"""occupancy_node in its own process, fed a voxel cloud by this test's publisher."""

from __future__ import annotations

import numpy as np
import pytest

from occvla_ros.ros.conversions import occupancy_cloud
from tests.support.ros import ProcessHandle, RosProbe, python_module_command

pytestmark = [pytest.mark.ros]


def test_markers_from_a_cloud_without_loading_torch(tmp_path):
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from visualization_msgs.msg import MarkerArray

    probe = RosProbe()
    markers = []
    probe.node.create_subscription(MarkerArray, "/occvla_occupancy/markers", markers.append, 2)
    publisher = probe.node.create_publisher(PointCloud2, "/voxels", 2)
    node = ProcessHandle(
        python_module_command(
            "occvla_ros.ros.occupancy_node", "--ros-args", "-r", "__node:=occvla_occupancy"
        ),
        tmp_path / "occupancy.log",
    )
    try:
        assert probe.wait_for_subscribers(publisher), node.log_text()
        header = Header(frame_id="base_link")

        def published_and_drawn() -> bool:
            publisher.publish(occupancy_cloud(*_voxels(), header))
            return bool(markers)

        assert probe.spin_until(published_and_drawn, 20.0), node.log_text()
        assert markers[-1].markers[0].action == 3  # DELETEALL, then the classes' cube lists
        # The node turns a cloud into markers with numpy alone: torch (427 MB, seconds to import)
        # used to come in through the conversions module.
        with open(f"/proc/{node.process.pid}/maps") as maps:
            assert "libtorch" not in maps.read()
    finally:
        assert node.stop() == 0, node.log_text()
        probe.close()


def _voxels() -> tuple[np.ndarray, np.ndarray]:
    points = np.array([[1.0, 2.0, 0.2], [5.0, -3.0, 1.0]], np.float32)
    return points, np.array([1, 4], np.uint8)
