"""The ``occvla`` command.

Each subcommand lives next to the code it drives, in a module that defines
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``occvla --help`` stays fast and one subcommand's heavy imports (torch, the
nuScenes devkit, rclpy) never slow down another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from occvla_ros.errors import OccvlaError

# name -> (module, one-line summary)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("occvla_ros.doctor", "check the environment and print what is installed"),
    "synth": ("occvla_ros.data.synth.command", "generate a synthetic nuScenes-format dataset"),
    "index": ("occvla_ros.data.index", "build or check the keyframe index of a dataset split"),
    "contact-sheet": (
        "occvla_ros.data.contact_sheet",
        "draw one keyframe: 6 cameras, occupancy BEV, future trajectory, agent boxes",
    ),
    "evaluate": ("occvla_ros.evaluation.command", "score a checkpoint on a split; write a report"),
    "model-info": ("occvla_ros.model.info", "parameter counts of an OccVLA preset or config"),
    "launch": ("occvla_ros.ros.launcher", "start the ROS 2 nodes (without ros2 launch)"),
    "bag": ("occvla_ros.bags.command", "convert nuScenes to a rosbag2 bag; play a bag into ROS 2"),
    "replay-report": (
        "occvla_ros.evaluation.replay_report",
        "video and summary table of a recorded replay (occvla bag play --record)",
    ),
    "train-ego-baseline": (
        "occvla_ros.evaluation.baselines",
        "train the ego-status-only MLP planning baseline",
    ),
}


def _top_level_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<20}{summary}" for name, (_, summary) in SUBCOMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="occvla",
        description="OccVLA for ROS 2: data, model, evaluation and nodes.",
        epilog=f"commands:\n{listing}\n\nRun `occvla COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(SUBCOMMANDS), metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        _top_level_parser().parse_args(argv[:1])  # prints help or a clear error, then exits
    name, rest = argv[0], argv[1:]
    module_name, summary = SUBCOMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"occvla {name}", description=summary)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    module = importlib.import_module(module_name)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(module.run(args) or 0)
    except OccvlaError as error:
        logging.getLogger("occvla").error("%s", error)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
