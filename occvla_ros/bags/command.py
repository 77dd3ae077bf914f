"""``occvla bag convert`` (nuScenes -> rosbag2) and ``occvla bag play`` (replay into ROS 2)."""

from __future__ import annotations

import sys


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
    convert.add_argument(
        "--compression", choices=("zstd", "none"),
        help="MCAP chunk compression (default: zstd for mcap, none for sqlite3)",
    )  # fmt: skip
    convert.add_argument(
        "--close-gaps", type=float, metavar="S",
        help="start each scene S seconds after the previous one ends (stamps shifted), so "
        "players do not wait through the hours between recordings",
    )  # fmt: skip
    play = actions.add_parser(
        "play", help="publish a bag in real time (or in lockstep with the planner), with /clock"
    )
    play.add_argument("bag", help="bag directory (MCAP or sqlite3)")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    play.add_argument("--loop", action="store_true", help="start again at the end")
    play.add_argument(
        "--delay", type=float, default=0.5, help="seconds between start-up and the first message"
    )
    play.add_argument(
        "--wait-for", nargs="+", default=(), metavar="TOPIC",
        help="wait until each of these topics has a subscriber before playing",
    )  # fmt: skip
    play.add_argument(
        "--wait-timeout", type=float, default=30.0, metavar="S",
        help="longest wait for --wait-for's subscribers and, in lockstep, for the planner",
    )  # fmt: skip
    play.add_argument(
        "--score", metavar="TOPIC",
        help="score the Paths published on TOPIC (the planner's, e.g. /occvla_planner/trajectory) "
        "against the bag's /gt_trajectory",
    )  # fmt: skip
    play.add_argument(
        "--lockstep", action="store_true",
        help="play one camera set at a time and wait for the planner's plan (on the --score "
        "topic, else /occvla_planner/trajectory) before the next: a score that does not depend "
        "on the machine's speed or load",
    )  # fmt: skip
    play.add_argument(
        "--lockstep-timeout", type=float, default=60.0, metavar="S",
        help="longest wait for the plan of one set in lockstep (counted when reached)",
    )  # fmt: skip
    play.add_argument(
        "--record", metavar="FILE.mcap",
        help="write the replay and everything the nodes publish into this new MCAP file",
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
            compression=args.compression, close_gaps_s=args.close_gaps, progress=True,
        )  # fmt: skip
        print(f"wrote {args.out}: {report.summary()}")
        return 0
    from occvla_ros.ros.bag_player import play_until_shutdown

    report = play_until_shutdown(
        args.bag, rate=args.rate, loop=args.loop, delay_s=args.delay, max_gap_s=args.max_gap,
        lockstep=args.lockstep, lockstep_timeout_s=args.lockstep_timeout, wait_for=args.wait_for,
        wait_timeout_s=args.wait_timeout,
        score_topic=args.score, record=args.record, progress=True,
    )  # fmt: skip
    total = sum(report.published.values())
    print(f"published {total} messages on {len(report.published)} topics, {report.loops} loop(s)")
    for topic, why in report.skipped_topics.items():
        print(f"  not published: {topic} ({why})")
    if args.lockstep:
        print(
            f"lockstep: {report.lockstep_sets} camera sets, {len(report.skipped_sets)} skipped by "
            f"the planner (see its /diagnostics), {report.lockstep_timeouts} not answered within "
            f"{args.lockstep_timeout:g} s, {report.incomplete_sets} incomplete in the bag"
        )
    if report.recording is not None:
        print(f"recorded {report.recording}")
    return _score_status(report, args)


def _score_status(report, args) -> int:
    """Exit status of a scored replay: 1 when nothing was scored, or in lockstep (where every
    set is answered) when a set timed out or a ground truth with a full future went unscored
    other than at a set the planner skipped for a counted reason."""
    score = report.score
    if score is None:
        return 0
    if score.matched == 0:
        print(
            f"error: no plan on {args.score} matched any of the {score.ground_truths} "
            f"ground-truth paths ({score.plans} plans received): nothing scored", file=sys.stderr,
        )  # fmt: skip
        return 1
    print(score.summary())
    scorable = score.ground_truths - report.unplannable_ground_truths
    if report.unplannable_ground_truths:
        print(f"  {report.unplannable_ground_truths} ground-truth paths fall at sets the planner "
              "skipped: not plannable")  # fmt: skip
    if args.lockstep and (score.matched < scorable or report.lockstep_timeouts):
        print(
            f"error: lockstep scored {score.matched} of {scorable} plannable ground-truth "
            f"paths, {report.lockstep_timeouts} sets unanswered", file=sys.stderr,
        )  # fmt: skip
        return 1
    return 0
