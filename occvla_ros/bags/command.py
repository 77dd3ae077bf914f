"""``occvla bag convert`` (nuScenes -> rosbag2) and ``occvla bag play`` (replay into ROS 2)."""

from __future__ import annotations


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    convert = actions.add_parser("convert", help="write nuScenes scenes into a rosbag2 bag")
    convert.add_argument("--dataroot", required=True, help="nuScenes root (holds VERSION/)")
    convert.add_argument("--version", default="v1.0-mini")
    convert.add_argument("--scenes", nargs="+", help="scene names (default: every scene)")
    convert.add_argument("--out", required=True, help="new bag directory")
    convert.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    convert.add_argument(
        "--humble", action="store_true",
        help="rosbag2 format 8 with Humble's message definitions (use with --storage sqlite3)",
    )  # fmt: skip
    convert.add_argument(
        "--keyframes-only", action="store_true", help="2 Hz keyframe images only (no sweeps)"
    )
    play = actions.add_parser("play", help="publish a bag in real time, with /clock")
    play.add_argument("bag", help="bag directory (MCAP or sqlite3)")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    play.add_argument("--loop", action="store_true", help="start again at the end")
    play.add_argument(
        "--delay", type=float, default=0.5, help="seconds between start-up and the first message"
    )
    play.add_argument(
        "--wait-for", nargs="+", default=(), metavar="TOPIC",
        help="wait (up to 30 s) until each of these topics has a subscriber before playing",
    )  # fmt: skip
    play.add_argument(
        "--score", metavar="TOPIC",
        help="score the Paths published on TOPIC (the planner's, e.g. /occvla_planner/trajectory) "
        "against the bag's /gt_trajectory",
    )  # fmt: skip
    play.add_argument(
        "--max-gap", type=float, default=1.0,
        help="longest pause between two messages in seconds (longer ones, e.g. between scenes, "
        "are shortened)",
    )  # fmt: skip


def run(args) -> int:
    if args.action == "convert":
        from occvla_ros.bags.nuscenes_to_bag import convert
        from occvla_ros.output_dir import check_output_directory

        check_output_directory(args.out)

        report = convert(
            args.dataroot, args.version, args.out, scene_names=args.scenes,
            storage=args.storage, humble=args.humble, keyframes_only=args.keyframes_only,
        )  # fmt: skip
        print(f"wrote {args.out}: {report.summary()}")
        return 0
    from occvla_ros.ros.bag_player import play_until_shutdown

    report = play_until_shutdown(
        args.bag, rate=args.rate, loop=args.loop, delay_s=args.delay,
        max_gap_s=args.max_gap, wait_for=args.wait_for, score_topic=args.score,
    )  # fmt: skip
    total = sum(report.published.values())
    print(f"published {total} messages on {len(report.published)} topics, {report.loops} loop(s)")
    for topic, why in report.skipped_topics.items():
        print(f"  not published: {topic} ({why})")
    if report.score is not None:
        print(report.score.summary())
    return 0
