"""The system's nodes, declared once.

``launch/planner.launch.py`` (for ``ros2 launch``) and ``occvla launch`` (the plain-Python process
launcher for machines without ``launch``) both build their processes from this module, so the two
ways to start the system cannot drift apart. This module must not import rclpy or launch.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "occvla_ros"
FASTDDS_PROFILE = "fastdds.xml"
# How long a node has to stop after SIGINT before it is killed (the planner finishes the plan in
# progress first, which on a loaded CPU takes longer than launch's 5 s default).
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name (parameters files address it as /<name>)
    executable: str  # console script installed in lib/occvla_ros (ros2 launch / ros2 run)
    module: str  # `python -m <module>` (the plain launcher)
    parameters_file: str  # file name under share/occvla_ros/config
    remappings: tuple[tuple[str, str], ...] = ()


PLANNER = NodeSpec(
    name="occvla_planner",
    executable="planner_node",
    module="occvla_ros.ros.planner_node",
    parameters_file="planner.yaml",
)
OCCUPANCY = NodeSpec(
    name="occvla_occupancy",
    executable="occupancy_node",
    module="occvla_ros.ros.occupancy_node",
    parameters_file="occupancy.yaml",
    remappings=(("voxels", f"/{PLANNER.name}/occupancy"),),
)


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str
    # Parameter of the planner node this argument overrides when non-empty (None: not a parameter).
    planner_parameter: str | None = None


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("config", "", "planner parameters file (default: the installed planner.yaml)"),
    LaunchArgument("checkpoint", "", "checkpoint directory (overrides the file)", "checkpoint"),
    LaunchArgument("device", "", "auto, cpu, cuda or cuda:N (overrides the file)", "device"),
    LaunchArgument("use_sim_time", "false", "follow /clock (bag replay)"),
    LaunchArgument("occupancy", "false", "also start the occupancy MarkerArray node"),
)


@dataclass(frozen=True)
class PlannedNode:
    """One node to start, with everything resolved to plain values."""

    spec: NodeSpec
    parameters_files: tuple[Path, ...]
    parameters: dict = field(default_factory=dict)


_BOOLEAN_TEXTS = {"true": True, "1": True, "false": False, "0": False}


def boolean_argument(name: str, value: str) -> bool:
    """A boolean launch argument's value; ValueError naming it for anything else (a typo such as
    ``occupancy:=ture`` must not silently mean false)."""
    try:
        return _BOOLEAN_TEXTS[value.strip().lower()]
    except KeyError:
        raise ValueError(
            f"launch argument {name}:={value!r} is not a boolean: expected true or false"
        ) from None


def plan_nodes(share_dir: Path, arguments: dict[str, str]) -> list[PlannedNode]:
    """The nodes to start for the given launch-argument values (missing ones take defaults)."""
    values = {a.name: a.default for a in LAUNCH_ARGUMENTS}
    unknown = set(arguments) - set(values)
    if unknown:
        raise ValueError(f"unknown launch arguments: {sorted(unknown)}")
    values.update(arguments)
    config_dir = share_dir / "config"
    use_sim_time = boolean_argument("use_sim_time", values["use_sim_time"])

    planner_parameters: dict = {"use_sim_time": use_sim_time}
    for argument in LAUNCH_ARGUMENTS:
        if argument.planner_parameter and values[argument.name]:
            planner_parameters[argument.planner_parameter] = values[argument.name]
    planner_file = (
        Path(values["config"]) if values["config"] else config_dir / PLANNER.parameters_file
    )
    nodes = [PlannedNode(PLANNER, (planner_file,), planner_parameters)]
    if boolean_argument("occupancy", values["occupancy"]):
        nodes.append(
            PlannedNode(
                OCCUPANCY,
                (config_dir / OCCUPANCY.parameters_file,),
                {"use_sim_time": use_sim_time},
            )
        )
    return nodes


def dds_environment(share_dir: Path) -> dict[str, str]:
    """Environment that points Fast DDS at the shipped profile.

    Only the current variable: Fast DDS 3 also reads the deprecated FASTRTPS_DEFAULT_PROFILES_FILE,
    and given both it warns about the old one and loads the file twice, which fails on the
    transport ids it already has (``[XMLPARSER Error] ... same id``) at every node start.
    """
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(share_dir / "config" / FASTDDS_PROFILE)}


def restore_default_sigint() -> None:
    """Let SIGINT stop this node process even when it was started with SIGINT ignored.

    A process started in the background by a non-interactive shell (``occvla launch ... &`` in a
    script or CI job) begins with SIGINT ignored, and so does every process it starts: a node
    would then ignore a launcher's SIGINT until rclpy installs its own handler, seconds later.
    Each node calls this first thing, before its slow imports.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def ignore_further_sigint() -> None:
    """A node's shutdown has begun: let no second SIGINT break into its cleanup.

    Ctrl-C in a terminal reaches the nodes directly and again through the launcher; once rclpy
    has shut down, its handler is gone and that second SIGINT would end the process with a
    KeyboardInterrupt traceback and status -2 in the middle of destroying the node. Main thread
    only.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stopped_cleanly(returncode: int, shutting_down: bool) -> bool:
    """Whether a process of the set ended as intended: exit 0, or SIGINT's own status while the
    launch is shutting down (a node interrupted before rclpy took over SIGINT)."""
    return returncode == 0 or (shutting_down and returncode == -signal.SIGINT)
