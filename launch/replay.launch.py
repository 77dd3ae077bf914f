"""ros2 launch occvla_ros replay.launch.py bag:=DIR checkpoint:=DIR [occupancy:=false] ...

Replays a bag (`occvla bag play`, with /clock) into the planner and the occupancy node, which
follow the bag's clock (use_sim_time) and take the replay parameters (config/replay.yaml:
reliable, deep input queues). The player waits until the planner subscribes to every input, and
the launch ends when the bag has been played; a player or node that fails makes it exit
non-zero. The nodes come from planner.launch.py, with these defaults changed.
"""

import sys
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    RegisterEventHandler,
    Shutdown,
)
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription
from occvla_ros.constants import CAMERA_NAMES, ODOMETRY_TOPIC, camera_image_topic
from occvla_ros.ros.node_set import (
    LAUNCH_ARGUMENTS,
    PACKAGE,
    PLANNER,
    STOP_TIMEOUT_S,
    boolean_argument,
    stopped_cleanly,
)

PLAYER_WAIT_S = 300.0  # longest wait for the planner's subscriptions
REPLAY_DEFAULTS = {"use_sim_time": "true", "occupancy": "true", "config": "replay.yaml"}


class PlayerFailed(RuntimeError):
    """Raised from the exit handler: launch logs it, shuts down and returns 1."""


def _on_player_exit(event, context):
    if not stopped_cleanly(event.returncode, context.is_shutdown):
        raise PlayerFailed(f"the bag player exited with status {event.returncode}")
    return [Shutdown(reason="the bag has been played")]


def _player(context):
    inputs = [ODOMETRY_TOPIC, *(camera_image_topic(name) for name in CAMERA_NAMES)]
    command = [sys.executable, "-m", "occvla_ros.cli", "bag", "play"]
    # The planner loads its checkpoint before it subscribes: a large model on a busy machine
    # takes minutes, longer than the player's default wait.
    command += [LaunchConfiguration("bag").perform(context), "--wait-for", *inputs]
    command += ["--wait-timeout", str(PLAYER_WAIT_S)]
    command += ["--rate", LaunchConfiguration("rate").perform(context)]
    if boolean_argument("lockstep", LaunchConfiguration("lockstep").perform(context)):
        command += ["--lockstep", "--score", f"/{PLANNER.name}/trajectory"]
    player = ExecuteProcess(
        cmd=command, name="bag_player", output="screen", sigterm_timeout=str(STOP_TIMEOUT_S)
    )
    return [
        player,
        RegisterEventHandler(OnProcessExit(target_action=player, on_exit=_on_player_exit)),
    ]


def generate_launch_description():
    share_dir = Path(get_package_share_directory(PACKAGE))
    defaults = {**REPLAY_DEFAULTS, "config": str(share_dir / "config" / REPLAY_DEFAULTS["config"])}
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="bag directory (occvla bag convert)"),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback speed"),
            DeclareLaunchArgument(
                "lockstep",
                default_value="false",
                description="play one camera set at a time, waiting for each plan, and score them",
            ),
            *(
                DeclareLaunchArgument(
                    a.name, default_value=defaults.get(a.name, a.default), description=a.description
                )
                for a in LAUNCH_ARGUMENTS
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(share_dir / "launch" / "planner.launch.py")),
                launch_arguments={
                    a.name: LaunchConfiguration(a.name) for a in LAUNCH_ARGUMENTS
                }.items(),
            ),
            OpaqueFunction(function=_player),
        ]
    )
