"""occupancy_node: the planner's voxel cloud (remap ``voxels``) -> ~/markers for RViz.

One CUBE_LIST per Occ3D class (Occ3D colours), preceded by a DELETEALL so classes absent from
the new frame disappear; the header (stamp, frame) is the input's.
"""

from __future__ import annotations

from occvla_ros.ros.node_set import ignore_further_sigint, restore_default_sigint

restore_default_sigint()  # before the slower imports

import sys

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from occvla_ros.constants import OCC3D_CLASS_NAMES, OCC_CLASS_ID, OCC_VOXEL_SIZE
from occvla_ros.errors import ConfigError, OccvlaError
from occvla_ros.ros.conversions import class_markers, cloud_to_points, filter_voxels

RCLError = rclpy_implementation.RCLError


class OccupancyNode(Node):
    def __init__(self) -> None:
        super().__init__("occvla_occupancy")
        declared = {
            "classes": ([""], "Occ3D class names to show; [''] or [] shows all"),
            "min_z": (-1.0, "lowest voxel centre shown (m, ego frame)"),
            "max_z": (5.4, "highest voxel centre shown (m, ego frame)"),
            "max_voxels": (60000, "at most this many voxels per frame (lowest first)"),
        }
        for name, (default, description) in declared.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        names = [n for n in self.get_parameter("classes").value if n]
        unknown = [n for n in names if n not in OCC_CLASS_ID]
        if unknown:
            raise ConfigError(f"unknown classes {unknown}; expected names from {OCC3D_CLASS_NAMES}")
        self.class_filter = {OCC_CLASS_ID[n] for n in names} or None
        self.z_range = (self.get_parameter("min_z").value, self.get_parameter("max_z").value)
        self.max_voxels = self.get_parameter("max_voxels").value
        if self.z_range[0] > self.z_range[1] or self.max_voxels <= 0:
            raise ConfigError(
                f"need min_z <= max_z and max_voxels > 0, got {self.z_range}, {self.max_voxels}"
            )
        self.publisher = self.create_publisher(MarkerArray, "~/markers", 2)
        self.create_subscription(PointCloud2, "voxels", self._on_cloud, 2)

    def _on_cloud(self, message: PointCloud2) -> None:
        try:
            points, classes = cloud_to_points(message)
        except OccvlaError as error:
            self.get_logger().warning(f"bad voxel cloud skipped: {error}")
            return
        points, classes = filter_voxels(
            points, classes, self.class_filter, self.z_range, self.max_voxels
        )
        self.publisher.publish(class_markers(points, classes, message.header, OCC_VOXEL_SIZE))


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = OccupancyNode()
        rclpy.spin(node)
    except ParameterException as error:  # a parameter of the wrong type in the YAML / -p
        rclpy.logging.get_logger("occvla_occupancy").error(f"startup failed: {error}")
        return 2
    except OccvlaError as error:
        rclpy.logging.get_logger("occvla_occupancy").error(f"startup failed: {error}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # A SIGINT just before spin() shuts the context down while spin builds its wait set
        # ("the given context is not valid"): a shutdown like any other.
        if rclpy.ok():
            raise
    finally:
        ignore_further_sigint()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
