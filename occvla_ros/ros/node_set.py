"""The system's nodes, declared once.

``launch/planner.launch.py`` (for ``ros2 launch``) and ``occvla launch`` (the plain-Python process
launcher for machines without ``launch``) both build their processes from this module, so the two
ways to start the system cannot drift apart. This module must not import rclpy or launch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "occvla_ros"
FASTDDS_PROFILE = "fastdds.xml"


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


def _is_true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def plan_nodes(share_dir: Path, arguments: dict[str, str]) -> list[PlannedNode]:
    """The nodes to start for the given launch-argument values (missing ones take defaults)."""
    values = {a.name: a.default for a in LAUNCH_ARGUMENTS}
    unknown = set(arguments) - set(values)
    if unknown:
        raise ValueError(f"unknown launch arguments: {sorted(unknown)}")
    values.update(arguments)
    config_dir = share_dir / "config"
    use_sim_time = _is_true(values["use_sim_time"])

    planner_parameters: dict = {"use_sim_time": use_sim_time}
    for argument in LAUNCH_ARGUMENTS:
        if argument.planner_parameter and values[argument.name]:
            planner_parameters[argument.planner_parameter] = values[argument.name]
    planner_file = (
        Path(values["config"]) if values["config"] else config_dir / PLANNER.parameters_file
    )
    nodes = [PlannedNode(PLANNER, (planner_file,), planner_parameters)]
    if _is_true(values["occupancy"]):
        nodes.append(
            PlannedNode(
                OCCUPANCY,
                (config_dir / OCCUPANCY.parameters_file,),
                {"use_sim_time": use_sim_time},
            )
        )
    return nodes


def dds_environment(share_dir: Path) -> dict[str, str]:
    """Environment that points Fast DDS (both variable names it reads) at the shipped profile."""
    profile = str(share_dir / "config" / FASTDDS_PROFILE)
    return {"FASTDDS_DEFAULT_PROFILES_FILE": profile, "FASTRTPS_DEFAULT_PROFILES_FILE": profile}
