"""ros2 launch occvla_ros planner.launch.py [checkpoint:=DIR] [device:=cuda] [occupancy:=true] ...

The node set, parameter files and remappings come from occvla_ros.ros.node_set, which the
plain-Python launcher (`occvla launch`) reads too. As with `occvla launch`, a node that exits
shuts the whole launch down instead of leaving the others running, and a node that fails (a
startup failure such as a missing checkpoint, or a crash) makes `ros2 launch` exit non-zero.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    Shutdown,
)
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from occvla_ros.ros.node_set import (
    LAUNCH_ARGUMENTS,
    PACKAGE,
    STOP_TIMEOUT_S,
    dds_environment,
    plan_nodes,
    stopped_cleanly,
)


class NodeFailed(RuntimeError):
    """Raised from the exit handler: launch logs it, shuts down and returns 1."""


def _on_exit(name: str):
    def handle(event, context):
        if not stopped_cleanly(event.returncode, context.is_shutdown):
            raise NodeFailed(f"{name} exited with status {event.returncode}")
        return [Shutdown(reason=f"{name} exited")]

    return handle


def _nodes(context):
    share_dir = Path(get_package_share_directory(PACKAGE))
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}
    entities = []
    for planned in plan_nodes(share_dir, values):
        node = Node(
            package=PACKAGE,
            executable=planned.spec.executable,
            name=planned.spec.name,
            parameters=[*map(str, planned.parameters_files), planned.parameters],
            remappings=list(planned.spec.remappings),
            output="screen",
            emulate_tty=True,
            # launch's 5 s default escalates SIGINT to SIGTERM for a planner still finishing its
            # last plan on a loaded machine.
            sigterm_timeout=str(STOP_TIMEOUT_S),
        )
        handler = OnProcessExit(target_action=node, on_exit=_on_exit(planned.spec.name))
        entities += [node, RegisterEventHandler(handler)]
    return entities


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
