"""Replays a rosbag2 bag into ROS 2 in real time, for machines without ``ros2 bag play``.

Reads MCAP or sqlite3 bags with ``rosbags`` and publishes each message's serialised CDR bytes
as recorded (no deserialisation) at its log time, scaled by ``rate``, with ``/clock`` following
the bag (for nodes started with ``use_sim_time:=true``), like ``ros2 bag play --clock``. A topic
whose message type has no Python class here (``tf2_msgs`` on machines without a ROS install) is
skipped with one log line; the planner needs only the cameras and odometry. Each topic keeps the
reliability and durability recorded in the bag (``occvla bag convert`` records reliable, and
transient-local for ``/tf_static``); without a record it is reliable and volatile.
With ``loop`` the bag restarts at its end: stamps go backwards, as in ``ros2 bag play --loop``.
With ``score_topic`` (the planner's ``~/trajectory``) the plans published on it during the replay
are scored against the bag's ``/gt_trajectory`` (:mod:`occvla_ros.evaluation.replay`).
Unlike ``ros2 bag play``, a pause longer than ``max_gap_s`` between two messages (the time
between two nuScenes scenes of one bag: minutes to days) is shortened to ``max_gap_s`` of wall
time; the stamps and ``/clock`` jump forward.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from occvla_ros.constants import GROUND_TRUTH_TOPIC
from occvla_ros.errors import ConfigError, DataError
from occvla_ros.evaluation.replay import ReplayScore, StampedPath, score_replay

if TYPE_CHECKING:
    from rclpy.qos import QoSProfile

LOGGER = logging.getLogger(__name__)
CLOCK_PERIOD_S = 0.02  # /clock ticks at least this often while waiting for the next message
# Messages a reliable publisher keeps for slow subscribers: 100 per topic is over 8 s of 12 Hz
# images (each topic is one camera), so a subscriber held up by a loaded CPU catches up instead of
# losing images.
PUBLISHER_DEPTH = 100
FLUSH_TIMEOUT_S = 2.0  # longest wait per topic for reliable subscribers to acknowledge the end


@dataclass
class PlaybackReport:
    published: Counter = field(default_factory=Counter)  # topic -> messages
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why
    loops: int = 0
    score: ReplayScore | None = None


def path_to_stamped(message) -> StampedPath:
    from occvla_ros.ros.conversions import stamp_to_ns

    points = [(pose.pose.position.x, pose.pose.position.y) for pose in message.poses]
    return StampedPath(
        stamp_to_ns(message.header.stamp),
        message.header.frame_id,
        np.array(points, dtype=np.float64).reshape(-1, 2),
    )


class _PlanCollector:
    """Receives the planner's Paths on a helper thread while the main thread plays the bag."""

    def __init__(self, node, topic: str) -> None:
        from nav_msgs.msg import Path as PathMessage
        from rclpy.executors import SingleThreadedExecutor

        self.plans: list[StampedPath] = []
        node.create_subscription(
            PathMessage, topic, lambda m: self.plans.append(path_to_stamped(m)), 100
        )
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.thread = threading.Thread(target=self._spin, name="occvla_plan_collector", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException):
            self.executor.spin()

    def stop(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10.0)


def message_class(msgtype: str):
    """The rclpy message class of ``pkg/msg/Name``, or None when it is not installed."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def recorded_qos(profiles: Sequence) -> QoSProfile:
    """The publisher QoS for a topic: the reliability and durability recorded for its first
    publisher, else reliable and volatile; depth PUBLISHER_DEPTH."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    qos = QoSProfile(depth=PUBLISHER_DEPTH)
    if profiles:
        # rosbags' enums carry rmw's values, which rclpy's policies share.
        recorded = profiles[0]
        if recorded.reliability.value in (
            ReliabilityPolicy.RELIABLE,
            ReliabilityPolicy.BEST_EFFORT,
        ):
            qos.reliability = ReliabilityPolicy(recorded.reliability.value)
        if recorded.durability.value in (
            DurabilityPolicy.TRANSIENT_LOCAL,
            DurabilityPolicy.VOLATILE,
        ):
            qos.durability = DurabilityPolicy(recorded.durability.value)
    return qos


def play(
    bag: str | Path,
    *,
    rate: float = 1.0,
    loop: bool = False,
    delay_s: float = 0.5,
    max_gap_s: float = 1.0,
    wait_for: Sequence[str] = (),
    wait_timeout_s: float = 30.0,
    score_topic: str | None = None,
    score_tolerance_s: float = 0.05,
    score_wait_s: float = 2.0,
    should_stop: Callable[[], bool] = lambda: False,
) -> PlaybackReport:
    """Publish the bag (rclpy must be initialised); returns what was published.

    ``score_topic``: collect the Paths published there until ``score_wait_s`` after the bag's
    end and score them against the bag's ground truth (``report.score``)."""
    from rclpy.duration import Duration
    from rclpy.node import Node
    from rosbags.rosbag2 import Reader, ReaderError
    from rosgraph_msgs.msg import Clock

    if not rate > 0 or not max_gap_s > 0:
        raise ConfigError(f"rate and max gap must be positive, got {rate} and {max_gap_s}")
    bag = Path(bag)
    if not (bag / "metadata.yaml").is_file():
        raise DataError(f"{bag} is not a rosbag2 directory (no metadata.yaml)")
    try:
        reader = Reader(bag)
        reader.open()
    except ReaderError as error:
        raise DataError(f"cannot read bag {bag}: {error}") from error
    report = PlaybackReport()
    node = Node("occvla_bag_player")
    collector = None
    try:
        publishers = {}
        for connection in reader.connections:
            kind = message_class(connection.msgtype)
            if kind is None:
                why = f"no Python class for {connection.msgtype}"
                report.skipped_topics[connection.topic] = why
                LOGGER.info("not publishing %s: %s", connection.topic, why)
                continue
            qos = recorded_qos(getattr(connection.ext, "offered_qos_profiles", ()))
            publisher = node.create_publisher(kind, connection.topic, qos)
            publishers[connection.id] = (publisher, connection.topic)
        clock = node.create_publisher(Clock, "/clock", 10)
        playback = _Playback(publishers, clock, rate, max_gap_s, bool(score_topic))
        collector = _PlanCollector(node, score_topic) if score_topic else None
        _wait_for_subscribers(publishers, wait_for, wait_timeout_s)
        time.sleep(delay_s)  # let subscribers discover the publishers
        while not should_stop():
            playback.once(reader, report, should_stop)
            playback.collect_ground_truth = False
            if not loop or should_stop():
                break
            report.loops += 1
        # Reliable subscribers may not have acknowledged the last messages yet; destroying the
        # publishers now would lose them.
        for publisher, _ in publishers.values():
            publisher.wait_for_all_acked(Duration(seconds=FLUSH_TIMEOUT_S))
        if collector is not None:
            deadline = time.monotonic() + score_wait_s
            while time.monotonic() < deadline and not should_stop():
                time.sleep(0.05)  # the last sets are still being planned
            collector.stop()
            report.score = score_replay(
                list(collector.plans), playback.ground_truths, int(score_tolerance_s * 1e9)
            )
    finally:
        if collector is not None:
            collector.stop()  # before the node goes: its executor may still be spinning it
        reader.close()
        node.destroy_node()
    return report


def play_until_shutdown(bag: str | Path, **options) -> PlaybackReport:
    """``play`` in this process's default rclpy context, stopping at Ctrl-C (the CLI's entry)."""
    import rclpy

    rclpy.init()
    try:
        return play(bag, should_stop=lambda: not rclpy.ok(), **options)
    finally:
        rclpy.try_shutdown()


def _wait_for_subscribers(publishers: dict, topics: Sequence[str], timeout_s: float) -> None:
    by_topic = {topic: publisher for publisher, topic in publishers.values()}
    unknown = sorted(set(topics) - set(by_topic))
    if unknown:
        raise ConfigError(f"cannot wait for {unknown}: not published from this bag")
    deadline = time.monotonic() + timeout_s
    waiting = list(topics)
    while waiting := [t for t in waiting if by_topic[t].get_subscription_count() == 0]:
        if time.monotonic() > deadline:
            raise DataError(f"no subscriber on {waiting} within {timeout_s:.0f} s")
        time.sleep(0.05)


class _Playback:
    def __init__(
        self, publishers: dict, clock, rate: float, max_gap_s: float, collect_ground_truth: bool
    ) -> None:
        self.publishers, self.clock, self.rate = publishers, clock, rate
        self.max_gap_ns = int(max_gap_s * 1e9)
        # Kept only for scoring, and from one pass: a looping bag repeats the same instants.
        self.collect_ground_truth = collect_ground_truth
        self.ground_truths: list[StampedPath] = []

    def tick(self, stamp_ns: int) -> None:
        from rosgraph_msgs.msg import Clock

        from occvla_ros.ros.conversions import ns_to_stamp

        self.clock.publish(Clock(clock=ns_to_stamp(stamp_ns)))

    def once(self, reader, report: PlaybackReport, should_stop: Callable[[], bool]) -> None:
        """Publish the whole bag once, on its own timeline scaled by the rate."""
        start_wall = time.monotonic()
        start_ns = previous_ns = None  # the bag time that start_wall stands for; the last stamp
        for connection, stamp_ns, data in reader.messages():
            if start_ns is None:
                start_ns = previous_ns = stamp_ns
            if stamp_ns - previous_ns > self.max_gap_ns:
                start_ns += stamp_ns - previous_ns - self.max_gap_ns
                LOGGER.info("a %.1f s gap in the bag: shortened", (stamp_ns - previous_ns) * 1e-9)
            previous_ns = stamp_ns
            due = start_wall + (stamp_ns - start_ns) * 1e-9 / self.rate
            while (wait := due - time.monotonic()) > 0:
                if should_stop():
                    return
                # /clock keeps moving between sparse messages (timers under use_sim_time).
                self.tick(start_ns + int((time.monotonic() - start_wall) * self.rate * 1e9))
                time.sleep(min(wait, CLOCK_PERIOD_S))
            self.tick(stamp_ns)
            if (
                self.collect_ground_truth
                and connection.topic == GROUND_TRUTH_TOPIC
                and connection.msgtype == "nav_msgs/msg/Path"
            ):
                from nav_msgs.msg import Path as PathMessage
                from rclpy.serialization import deserialize_message

                self.ground_truths.append(path_to_stamped(deserialize_message(data, PathMessage)))
            if connection.id in self.publishers:
                publisher, topic = self.publishers[connection.id]
                publisher.publish(bytes(data))
                report.published[topic] += 1
