"""ros2 launch occvla_ros planner.launch.py [checkpoint:=DIR] [device:=cuda] [occupancy:=true] ...

The node set, parameter files and remappings come from occvla_ros.ros.node_set, which the
plain-Python launcher (`occvla launch`) reads too. As with `occvla launch`, a node that exits
(a startup failure, a crash) shuts the whole launch down instead of leaving the others running.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from occvla_ros.ros.node_set import LAUNCH_ARGUMENTS, PACKAGE, dds_environment, plan_nodes


def _nodes(context):
    share_dir = Path(get_package_share_directory(PACKAGE))
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}
    return [
        Node(
            package=PACKAGE,
            executable=planned.spec.executable,
            name=planned.spec.name,
            parameters=[*map(str, planned.parameters_files), planned.parameters],
            remappings=list(planned.spec.remappings),
            output="screen",
            emulate_tty=True,
            on_exit=Shutdown(reason=f"{planned.spec.name} exited"),
        )
        for planned in plan_nodes(share_dir, values)
    ]


def generate_launch_description():
    share_dir = Path(get_package_share_directory(PACKAGE))
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in LAUNCH_ARGUMENTS
            ),
            *(
                SetEnvironmentVariable(name, value)
                for name, value in dds_environment(share_dir).items()
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
