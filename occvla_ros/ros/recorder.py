"""Records a replay into one MCAP file: the bag's inputs plus everything the nodes publish.

``occvla bag play --record FILE.mcap`` writes the messages it plays (their CDR bytes as read from
the bag) and, like ``ros2 bag record --all``, every other topic on the graph (the planner's Path,
meta-action, the occupancy node's MarkerArray, ``/diagnostics``), so Foxglove
or RViz users open a single file. A node's message is logged at the bag time the player had
reached when it arrived. Chunks are zstd-compressed. The file is written aside (a hidden sibling
directory) and moved into place only when complete, so an interrupted replay never leaves a
truncated recording under the requested name.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from occvla_ros.errors import ConfigError

LOGGER = logging.getLogger(__name__)
# Graph topics not recorded: ROS 2's own bookkeeping, the player's clock, and the planner's raw
# voxel cloud. The planner computes occupancy only while ~/occupancy has a subscriber, so
# recording it would change what is replayed (and it is ~9 MB per plan); when the occupancy node
# runs, its MarkerArray of the same voxels is recorded.
NOT_RECORDED = frozenset({"/clock", "/rosout", "/parameter_events", "/occvla_planner/occupancy"})
RECORD_DEPTH = 100  # messages a recording subscription keeps while the writer is busy


class ReplayRecorder:
    """Writes the played inputs (``write_input``) and the graph's other topics (``discover``)."""

    def __init__(self, out: str | Path, node, bag_topics: set[str]) -> None:
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.out = Path(out)
        if self.out.suffix != ".mcap":
            raise ConfigError(f"the recording must be an .mcap file, got {self.out}")
        if self.out.exists():
            raise ConfigError(f"{self.out} exists already: choose a new recording file")
        self.node = node
        self.typestore = get_typestore(Stores.ROS2_JAZZY)  # the nodes' message definitions
        self.aside = self.out.parent / f".{self.out.name}.partial"
        if self.aside.exists():  # left by an interrupted replay
            shutil.rmtree(self.aside)
        self.aside.mkdir(parents=True)
        self.writer = Writer(
            self.aside / self.out.stem, version=9, storage_plugin=StoragePlugin.MCAP
        )
        self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self.writer.open()
        self.lock = threading.Lock()  # inputs come from the player, outputs from the executor
        self.inputs: dict[int, object] = {}  # bag connection id -> recording connection
        self.outputs: dict[str, object] = {}  # topic -> recording connection
        self.ignored = set(bag_topics) | NOT_RECORDED  # the bag's topics come from the bag
        self.now_ns = 0  # the bag time the replay has reached
        self.recorded = 0

    def write_input(self, connection, stamp_ns: int, data) -> None:
        """One message of the bag, as read from it."""
        with self.lock:
            if connection.id not in self.inputs:
                self.inputs[connection.id] = self.writer.add_connection(
                    connection.topic,
                    connection.msgtype,
                    typestore=self.typestore,  # for bags recorded without a type hash
                    msgdef=connection.msgdef.data or None,
                    rihs01=connection.digest or None,
                    offered_qos_profiles=getattr(connection.ext, "offered_qos_profiles", ()),
                )
            self.now_ns = max(self.now_ns, stamp_ns)
            self.writer.write(self.inputs[connection.id], stamp_ns, bytes(data))
            self.recorded += 1

    def advance(self, stamp_ns: int) -> None:
        """The replay's clock moved on (between messages)."""
        self.now_ns = max(self.now_ns, stamp_ns)

    def discover(self) -> None:
        """Subscribe to every topic other nodes publish that is not recorded yet."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from occvla_ros.ros.bag_player import message_class

        for topic, types in self.node.get_topic_names_and_types():
            if topic in self.ignored or topic in self.outputs:
                continue
            msgtype = types[0]
            kind = message_class(msgtype)
            if kind is None or msgtype not in self.typestore.fielddefs:
                self.ignored.add(topic)
                LOGGER.info("not recording %s: no definition of %s here", topic, msgtype)
                continue
            offered = self.node.get_publishers_info_by_topic(topic)
            if not offered:
                continue
            # A reliable subscription would not match a best-effort publisher.
            best_effort = any(
                info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for info in offered
            )
            qos = QoSProfile(depth=RECORD_DEPTH)
            if best_effort:
                qos.reliability = ReliabilityPolicy.BEST_EFFORT
            with self.lock:
                self.outputs[topic] = self.writer.add_connection(
                    topic, msgtype, typestore=self.typestore
                )
            self.node.create_subscription(
                kind, topic, lambda data, topic=topic: self._write_output(topic, data), qos,
                raw=True,
            )  # fmt: skip
            LOGGER.info("recording %s (%s)", topic, msgtype)

    def _write_output(self, topic: str, data: bytes) -> None:
        with self.lock:
            if self.writer is not None:
                self.writer.write(self.outputs[topic], self.now_ns, data)
                self.recorded += 1

    def close(self) -> Path:
        """Finish the file and move it into place."""
        with self.lock:
            self.writer.close()
            self.writer = None
        (self.aside / self.out.stem / f"{self.out.stem}.mcap").replace(self.out)
        shutil.rmtree(self.aside)
        return self.out

    def abort(self) -> None:
        """Drop the partial recording (the replay failed or was interrupted)."""
        with self.lock:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        shutil.rmtree(self.aside, ignore_errors=True)
