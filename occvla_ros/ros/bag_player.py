"""Replays a rosbag2 bag into ROS 2, for machines without ``ros2 bag play``.

Reads MCAP or sqlite3 bags with ``rosbags`` and publishes each message's serialised CDR bytes
as recorded (no deserialisation), with ``/clock`` following the bag (for nodes started with
``use_sim_time:=true``), like ``ros2 bag play --clock``. Two pacings:

- real time (the default, for watching): each message at its log time, scaled by ``rate``. Unlike
  ``ros2 bag play``, a pause longer than ``max_gap_s`` between two messages (the time between two
  nuScenes scenes of one bag: minutes to days) is shortened to ``max_gap_s`` of wall time; the
  stamps and ``/clock`` jump forward. With ``loop`` the bag restarts at its end: stamps go
  backwards, as in ``ros2 bag play --loop``.
- ``lockstep`` (for scoring): the messages of one synchronised instant (up to the image that
  completes a set of the six cameras) are published at once, then playback waits for the
  planner's answer on ``plan_topic`` (or ``lockstep_timeout_s``, counted) before the next. No set
  is dropped for a busy CPU, so the score does not depend on the machine's load or speed.

A topic whose message type has no Python class here (``tf2_msgs`` where it is not built) is
skipped with one log line; the planner needs only the cameras and odometry. Each topic keeps the
reliability and durability recorded in the bag (``occvla bag convert`` records reliable, and
transient-local for ``/tf_static``); without a record it is reliable and volatile.
With ``score_topic`` (the planner's ``~/trajectory``) the plans published on it during the replay
are scored against the bag's ``/gt_trajectory`` (:mod:`occvla_ros.evaluation.replay`). With
``record`` the replay and every node's output go into one MCAP file
(:mod:`occvla_ros.ros.recorder`).

Everything the playback loop needs is imported before its clock starts: an import inside the
loop (torch through the conversions module took 4.7 s) would hold the first messages back and
publish them in one burst.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from occvla_ros.constants import (
    CAMERA_NAMES,
    GROUND_TRUTH_TOPIC,
    NUM_WAYPOINTS,
    camera_image_topic,
)
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
DEFAULT_PLAN_TOPIC = "/occvla_planner/trajectory"
DISCOVERY_PERIOD_S = 1.0  # how often a recording looks for new topics on the graph
# The planner's /diagnostics counters of finished camera sets: each set it completes ends in one.
SET_OUTCOMES = ("plans", "dropped_sets", "failed_plans", "no_odometry", "no_command")


@dataclass
class PlaybackReport:
    published: Counter = field(default_factory=Counter)  # topic -> messages
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why
    loops: int = 0
    score: ReplayScore | None = None
    lockstep_sets: int = 0  # camera sets played one at a time
    lockstep_timeouts: int = 0  # of those, sets the planner did not answer in time
    incomplete_sets: int = 0  # camera sets of the bag missing an image (not waited for)
    skipped_sets: list[int] = field(default_factory=list)  # newest stamps of sets the planner
    # answered with a counted skip instead of a plan (e.g. no odometry yet at the bag's start)
    unplannable_ground_truths: int = 0  # scorable ground truths at those sets
    recording: Path | None = None


def path_to_stamped(message) -> StampedPath:
    from occvla_ros.ros.stamps import stamp_to_ns

    points = [(pose.pose.position.x, pose.pose.position.y) for pose in message.poses]
    return StampedPath(
        stamp_to_ns(message.header.stamp),
        message.header.frame_id,
        np.array(points, dtype=np.float64).reshape(-1, 2),
    )


class _PlanCollector:
    """Receives the planner's Paths on a helper thread while the main thread plays the bag."""

    def __init__(self, node, topic: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Path as PathMessage
        from rclpy.executors import SingleThreadedExecutor

        self.plans: list[StampedPath] = []
        self.arrived = threading.Condition()
        self.subscription = node.create_subscription(PathMessage, topic, self._on_plan, 100)
        # The planner's periodic status: once one arrives, the planner has discovered this
        # node's subscriptions (created together). Its counters say how many sets it has
        # finished with (planned or skipped for a counted reason).
        self.status_heard = threading.Event()
        self.outcomes: int | None = None
        self.status = node.create_subscription(DiagnosticArray, "/diagnostics", self._on_status, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.thread = threading.Thread(target=self._spin, name="occvla_plan_collector", daemon=True)
        self.thread.start()

    def _on_plan(self, message) -> None:
        with self.arrived:
            self.plans.append(path_to_stamped(message))
            self.arrived.notify_all()

    def _on_status(self, message) -> None:
        for status in message.status:
            if status.name.endswith(": planner"):
                values = {kv.key: kv.value for kv in status.values}
                if all(key in values for key in SET_OUTCOMES):
                    with self.arrived:
                        self.outcomes = sum(int(values[key]) for key in SET_OUTCOMES)
                        self.arrived.notify_all()
        self.status_heard.set()

    def wait_for_answer(self, min_stamp_ns: int, outcomes: int | None, timeout_s: float):
        """ "plan" once a plan stamped ``min_stamp_ns`` or later arrives, "skipped" once the
        planner's status counts ``outcomes`` finished sets without one; None at the timeout."""

        def answer():
            if any(plan.stamp_ns >= min_stamp_ns for plan in self.plans[-5:]):
                return "plan"
            if None not in (outcomes, self.outcomes) and self.outcomes >= outcomes:
                return "skipped"
            return None

        with self.arrived:
            return self.arrived.wait_for(answer, timeout_s)

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


def _create_publishers(node, connections, report: PlaybackReport) -> dict:
    """connection id -> (publisher, topic); topics without a message class are skipped, with
    one log line per missing type."""
    publishers, missing = {}, defaultdict(list)
    for connection in connections:
        kind = message_class(connection.msgtype)
        if kind is None:
            missing[connection.msgtype].append(connection.topic)
            continue
        qos = recorded_qos(getattr(connection.ext, "offered_qos_profiles", ()))
        publisher = node.create_publisher(kind, connection.topic, qos)
        publishers[connection.id] = (publisher, connection.topic)
    for msgtype, topics in missing.items():
        why = f"no Python class for {msgtype}"
        report.skipped_topics |= dict.fromkeys(topics, why)
        LOGGER.warning("not publishing %s: %s (%s.msg is not importable)",
                       ", ".join(topics), why, msgtype.split("/")[0])  # fmt: skip
    return publishers


@dataclass(frozen=True)
class Pacing:
    """How the player times the messages (see the module docstring)."""

    rate: float = 1.0
    max_gap_s: float = 1.0
    lockstep: bool = False
    lockstep_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.rate > 0 or not self.max_gap_s > 0 or not self.lockstep_timeout_s > 0:
            raise ConfigError(
                f"rate, max gap and lockstep timeout must be positive, got {self.rate}, "
                f"{self.max_gap_s} and {self.lockstep_timeout_s}"
            )


def play(
    bag: str | Path,
    *,
    rate: float = 1.0,
    loop: bool = False,
    delay_s: float = 0.5,
    max_gap_s: float = 1.0,
    lockstep: bool = False,
    lockstep_timeout_s: float = 60.0,
    wait_for: Sequence[str] = (),
    wait_timeout_s: float = 30.0,
    score_topic: str | None = None,
    plan_topic: str = DEFAULT_PLAN_TOPIC,
    score_tolerance_s: float = 0.05,
    score_wait_s: float = 2.0,
    record: str | Path | None = None,
    progress: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> PlaybackReport:
    """Publish the bag (rclpy must be initialised); returns what was published.

    ``score_topic``: collect the Paths published there until ``score_wait_s`` after the bag's
    end (in lockstep: as each set is answered) and score them against the bag's ground truth
    (``report.score``). ``lockstep`` waits for the plans on ``score_topic``, else on
    ``plan_topic``, and fails when nothing publishes there within ``wait_timeout_s``.
    ``record``: write the replay and the nodes' outputs into this new .mcap file.
    """
    from rclpy.duration import Duration
    from rclpy.node import Node
    from rosbags.rosbag2 import Reader, ReaderError
    from rosgraph_msgs.msg import Clock

    pacing = Pacing(rate, max_gap_s, lockstep, lockstep_timeout_s)
    if record is not None and loop:
        raise ConfigError("a looping replay cannot be recorded: drop --loop or --record")
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
    collector = recorder = None
    try:
        publishers = _create_publishers(node, reader.connections, report)
        clock = node.create_publisher(Clock, "/clock", 10)
        if lockstep or score_topic:
            collector = _PlanCollector(node, score_topic or plan_topic)
        if record is not None:  # before the waits: a bad path fails at once
            from occvla_ros.ros.recorder import ReplayRecorder

            recorder = ReplayRecorder(record, node, {c.topic for c in reader.connections})
        _wait_for_subscribers(publishers, wait_for, wait_timeout_s)
        if lockstep:
            _wait_for_planner(collector, wait_timeout_s)
        if recorder is not None:
            recorder.discover()
        playback = _Playback(
            publishers, clock, pacing, collector=collector, recorder=recorder,
            collect_ground_truth=bool(score_topic),
        )  # fmt: skip
        time.sleep(delay_s)  # let subscribers discover the publishers
        while not should_stop():
            playback.once(reader, report, should_stop, progress)
            playback.collect_ground_truth = False
            if not loop or should_stop():
                break
            report.loops += 1
        # Reliable subscribers may not have acknowledged the last messages yet; destroying the
        # publishers now would lose them.
        for publisher, _ in publishers.values():
            publisher.wait_for_all_acked(Duration(seconds=FLUSH_TIMEOUT_S))
        if (score_topic and not lockstep) or recorder is not None:
            deadline = time.monotonic() + score_wait_s
            while time.monotonic() < deadline and not should_stop():
                time.sleep(0.05)  # the last sets are still being planned; the last diagnostics
        if collector is not None:
            collector.stop()
            if score_topic:
                tolerance_ns = int(score_tolerance_s * 1e9)
                report.score = score_replay(
                    list(collector.plans), playback.ground_truths, tolerance_ns
                )
                report.unplannable_ground_truths = sum(
                    len(gt.points) == NUM_WAYPOINTS
                    and any(
                        abs(gt.stamp_ns - stamp) <= tolerance_ns for stamp in report.skipped_sets
                    )
                    for gt in playback.ground_truths
                )
        if recorder is not None:
            report.recording = recorder.close()
            recorder = None
    finally:
        if collector is not None:
            collector.stop()  # before the node goes: its executor may still be spinning it
        if recorder is not None:
            recorder.abort()
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


def _wait_for_planner(collector: _PlanCollector, timeout_s: float) -> None:
    """Until the planner publishes plans and its status has reached this node.

    Seeing the planner's publisher here does not mean the planner has matched this node's
    subscription yet: under load a first plan was published before it had, and lost. Its
    ``/diagnostics`` status (about once a second) arriving means it has."""
    subscription = collector.subscription
    deadline = time.monotonic() + timeout_s
    while subscription.get_publisher_count() == 0:
        if time.monotonic() > deadline:
            raise DataError(
                f"no planner: nothing publishes {subscription.topic_name} within "
                f"{timeout_s:.0f} s (start it first, e.g. occvla launch use_sim_time:=true ...)"
            )
        time.sleep(0.05)
    if not collector.status_heard.wait(max(0.0, deadline - time.monotonic())):
        raise DataError(f"no planner status on /diagnostics within {timeout_s:.0f} s")


class _Playback:
    def __init__(
        self, publishers: dict, clock, pacing: Pacing, *, collector, recorder, collect_ground_truth
    ) -> None:
        from nav_msgs.msg import Path as PathMessage
        from rclpy.serialization import deserialize_message
        from rosgraph_msgs.msg import Clock

        from occvla_ros.ros.stamps import ns_to_stamp

        self.publishers, self.clock, self.pacing = publishers, clock, pacing
        self.collector, self.recorder = collector, recorder
        self.max_gap_ns = int(pacing.max_gap_s * 1e9)
        # Kept only for scoring, and from one pass: a looping bag repeats the same instants.
        self.collect_ground_truth = collect_ground_truth
        self.ground_truths: list[StampedPath] = []
        self._clock_message = lambda stamp_ns: Clock(clock=ns_to_stamp(stamp_ns))
        self._ground_truth = lambda data: path_to_stamped(deserialize_message(data, PathMessage))
        published = {topic for _, topic in publishers.values()}
        self.camera_topics = {camera_image_topic(c) for c in CAMERA_NAMES} & published
        self._next_discovery = 0.0
        self.outcomes_before: int | None = None  # lockstep: the planner's finished sets at start

    def tick(self, stamp_ns: int) -> None:
        self.clock.publish(self._clock_message(stamp_ns))
        if self.recorder is not None:
            self.recorder.advance(stamp_ns)
            if time.monotonic() > self._next_discovery:
                self.recorder.discover()  # nodes may start publishing late
                self._next_discovery = time.monotonic() + DISCOVERY_PERIOD_S

    def once(
        self, reader, report: PlaybackReport, should_stop: Callable[[], bool], progress: bool
    ) -> None:
        """Publish the whole bag once, paced in real time or in lockstep."""
        from tqdm import tqdm

        start_wall = time.monotonic()
        start_ns = previous_ns = None  # the bag time that start_wall stands for; the last stamp
        camera_set: dict[str, int] = {}  # lockstep: camera topic -> stamp, of the set being built
        bar = tqdm(
            total=reader.message_count, unit="msg", desc="play", disable=None if progress else True
        )
        with bar:
            for connection, stamp_ns, data in reader.messages():
                if start_ns is None:
                    start_ns = previous_ns = stamp_ns
                if stamp_ns - previous_ns > self.max_gap_ns:
                    start_ns += stamp_ns - previous_ns - self.max_gap_ns
                    LOGGER.info(
                        "a %.1f s gap in the bag: shortened", (stamp_ns - previous_ns) * 1e-9
                    )
                previous_ns = stamp_ns
                if not self.pacing.lockstep and not self._wait_until(
                    start_wall + (stamp_ns - start_ns) * 1e-9 / self.pacing.rate,
                    start_wall, start_ns, should_stop,
                ):  # fmt: skip
                    return
                if should_stop():
                    return
                self.tick(stamp_ns)
                self._publish(connection, stamp_ns, data, report)
                bar.update()
                if self.pacing.lockstep and connection.topic in self.camera_topics:
                    self._lockstep(connection.topic, stamp_ns, camera_set, report)

    def _wait_until(self, due: float, start_wall: float, start_ns: int, should_stop) -> bool:
        """Sleep until the wall time ``due``, ticking /clock; False when asked to stop."""
        while (wait := due - time.monotonic()) > 0:
            if should_stop():
                return False
            # /clock keeps moving between sparse messages (timers under use_sim_time).
            self.tick(start_ns + int((time.monotonic() - start_wall) * self.pacing.rate * 1e9))
            time.sleep(min(wait, CLOCK_PERIOD_S))
        return True

    def _publish(self, connection, stamp_ns: int, data, report: PlaybackReport) -> None:
        if (
            self.collect_ground_truth
            and connection.topic == GROUND_TRUTH_TOPIC
            and connection.msgtype == "nav_msgs/msg/Path"
        ):
            self.ground_truths.append(self._ground_truth(data))
        if connection.id in self.publishers:
            publisher, topic = self.publishers[connection.id]
            publisher.publish(bytes(data))
            report.published[topic] += 1
        if self.recorder is not None:  # every input, published here or not (/tf without tf2)
            self.recorder.write_input(connection, stamp_ns, data)

    def _lockstep(self, topic: str, stamp_ns: int, camera_set: dict, report) -> None:
        """After the image completing a camera set, wait for the planner's answer to it."""
        if topic in camera_set:  # a camera's next image before the set completed
            report.incomplete_sets += 1
            camera_set.clear()
        camera_set[topic] = stamp_ns
        if len(camera_set) < len(self.camera_topics):
            return
        report.lockstep_sets += 1
        if self.outcomes_before is None:  # the planner's count before the first set
            self.outcomes_before = self.collector.outcomes
        outcomes = (
            None if self.outcomes_before is None else self.outcomes_before + report.lockstep_sets
        )
        # The plan carries the set's newest camera stamp: any plan from the set's oldest stamp on
        # answers it (in lockstep no later set exists yet). A set the planner skips (counted on
        # /diagnostics, e.g. no odometry yet) is answered by its next status.
        answer = self.collector.wait_for_answer(
            min(camera_set.values()), outcomes, self.pacing.lockstep_timeout_s
        )
        if answer == "skipped":
            report.skipped_sets.append(max(camera_set.values()))
            LOGGER.info("the planner skipped the camera set at %.3f s (see its /diagnostics)",
                        stamp_ns * 1e-9)  # fmt: skip
        elif answer is None:
            report.lockstep_timeouts += 1
            LOGGER.warning("no plan for the camera set at %.3f s within %.0f s",
                           stamp_ns * 1e-9, self.pacing.lockstep_timeout_s)  # fmt: skip
            subscription = self.collector.subscription
            if subscription.get_publisher_count() == 0:
                raise DataError(f"the planner stopped: nothing publishes {subscription.topic_name}")
        camera_set.clear()
