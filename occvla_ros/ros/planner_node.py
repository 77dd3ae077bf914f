"""planner_node: six cameras + odometry -> trajectory, meta-action, occupancy, diagnostics.

Startup follows a configure-then-run flow: the node comes up, validates its parameters and loads
the checkpoint; any failure (missing/mismatched checkpoint, bad parameter, unavailable device) is
logged as one clear line, published as an ERROR on /diagnostics for ``startup_error_linger_s``
(so monitors see it), and the process exits with status 1. A plain node (not a managed lifecycle
node) keeps the process launcher and ``ros2 launch`` identical; the exit status is the signal.
"""

from __future__ import annotations

# Before anything imports numpy, torch or rclpy: their threads (OpenBLAS's at numpy's import,
# rclpy's at its own) take malloc arenas, and glibc fixes its arena limit when the first thread
# does; a cap set after that, even first thing in main(), is ignored.
from occvla_ros.runtime.heap import limit_malloc_arenas

limit_malloc_arenas()  # MALLOC_ARENA_MAX in the environment overrides

from occvla_ros.ros.node_set import ignore_further_sigint, restore_default_sigint

restore_default_sigint()

import sys
import threading
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path as FilePath

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSPolicyKind, QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String

from occvla_ros.constants import CAMERA_NAMES
from occvla_ros.errors import OccvlaError
from occvla_ros.ros.conversions import (
    compressed_to_frame,
    image_to_frame,
    ns_to_stamp,
    occupancy_cloud,
    odometry_to_sample,
    path_message,
    stamp_to_ns,
)
from occvla_ros.ros.diagnostics import IssueBoard, Percentiles, RateMeter, status_message
from occvla_ros.ros.parameters import (
    PLANNER_PARAMETERS,
    camera_topic_parameter,
    validate_planner_parameter,
)
from occvla_ros.runtime.ego import EgoStateEstimator
from occvla_ros.runtime.heap import heap_usage, keep_frame_buffers_in_heap
from occvla_ros.runtime.planner import (
    NUSCENES_HFOV_DEG,
    CameraFrame,
    Planner,
    horizontal_fov_deg,
    occupancy_points,
)
from occvla_ros.runtime.sync import ApproximateTimeSynchronizer, SyncedSet

WARN, ERROR = 1, 2
ODOMETRY_GRACE_S = 0.05  # how long a set waits for its odometry message (s)
# Sensor data QoS, two deep instead of five. The synchroniser keeps its own queue and only the
# newest set is planned, so older images waiting in DDS are decoded for nothing. And every slot
# of depth becomes a frame-sized buffer Fast DDS keeps once a stall has filled it: five deep,
# the node's memory grew in steps for minutes (docs/ros-performance.md, What holds it).
CAMERA_QOS = QoSProfile(
    history=qos_profile_sensor_data.history,
    depth=2,
    reliability=qos_profile_sensor_data.reliability,
    durability=qos_profile_sensor_data.durability,
)


@dataclass
class _Pending:
    synced: SyncedSet
    completed_at: float  # monotonic time the set was completed (end-to-end latency start)


class PlannerNode(Node):
    def __init__(self) -> None:
        super().__init__("occvla_planner")
        for name, (default, description, read_only) in PLANNER_PARAMETERS.items():
            self.declare_parameter(
                name, default, ParameterDescriptor(description=description, read_only=read_only)
            )
        self.params = {name: self.get_parameter(name).value for name in PLANNER_PARAMETERS}
        self.issues = IssueBoard()
        self.planner: Planner | None = None
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.camera_rates = {name: RateMeter() for name in CAMERA_NAMES}
        self.odometry_rate = RateMeter()
        self.inference_ms, self.latency_ms = Percentiles(), Percentiles()
        self.counts = {"sets": 0, "dropped_sets": 0, "plans": 0, "degraded_plans": 0}
        self.counts |= {"bad_images": 0, "bad_odometry": 0, "no_odometry": 0, "no_command": 0}
        self.counts |= {"failed_plans": 0, "callback_errors": 0}
        # One slot between the input callbacks and the inference loop: the newest set only.
        self._pending: _Pending | None = None
        self._pending_ready = threading.Condition()
        self._stopping = False

    # ---- configure -----------------------------------------------------------------------
    def configure(self) -> None:
        """Validate parameters, load the model, create the ROS interfaces (OccvlaError on bad)."""
        from occvla_ros.errors import ConfigError

        problems = [p for n, v in self.params.items() if (p := validate_planner_parameter(n, v))]
        if problems:
            raise ConfigError("invalid parameters: " + "; ".join(problems))
        p = self.params
        if not p["checkpoint"]:
            raise ConfigError("parameter 'checkpoint' is empty: set it to a checkpoint directory")
        if FilePath(p["checkpoint"]).is_file():
            raise ConfigError(
                f"parameter 'checkpoint' is a file ({p['checkpoint']}), not a checkpoint "
                f"directory: give the directory holding model.safetensors and config.yaml"
            )
        self.planner = Planner(
            p["checkpoint"],
            preset=p["preset"],
            device=p["device"],
            dtype=p["dtype"],
            cpu_threads=p["cpu_threads"],
        )
        # Only after loading: the loading's one-off buffers (a 3B checkpoint's staging copies)
        # keep glibc's defaults, which hand them back to the system.
        if p["fixed_malloc_thresholds"] and not keep_frame_buffers_in_heap(
            p["heap_reserve_mib"] << 20
        ):
            self.get_logger().warning(
                "fixed_malloc_thresholds: this C library takes no glibc mallopt thresholds; "
                "allocator defaults kept (image buffers may page-fault, docs/ros-performance.md)"
            )
        self.sync = ApproximateTimeSynchronizer(
            CAMERA_NAMES,
            slop_ns=int(p["sync_slop_s"] * 1e9),
            queue_size=p["sync_queue_size"],
            reset_ns=int(p["loop_reset_s"] * 1e9),
            on_discard=Future.cancel,  # its decoding, unless a worker has started it
        )
        self.ego = EgoStateEstimator(tolerance_ns=int(p["odometry_tolerance_s"] * 1e9))
        self.command: str | None = None
        self.last_arrival: dict[str, float] = {}
        self.started_s = self._now_s()
        self.stale: set[str] = set()
        # Camera -> when its images started failing to decode (cleared by one that decodes): a
        # camera sending only undecodable images is as useless as a silent one.
        self.undecodable_since: dict[str, float] = {}
        self._camera_info_subscriptions: dict[str, object] = {}  # until each camera is checked
        self.fov_warning: str | None = None
        self.command_notice_given = False
        self._create_interfaces()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"ready: {self.planner.config.preset} on {self.planner.device} "
            f"({str(self.planner.dtype).removeprefix('torch.')}), "
            f"{p['image_transport']} cameras, trajectory in {self._trajectory_frame_text()}"
        )

    def _create_interfaces(self) -> None:
        p = self.params
        # Every callback is short (check a JPEG marker, hand the decoding to the planner's
        # workers, match stamps), so one executor thread runs them in arrival order and they
        # share the synchroniser without locks. Inference runs on the main thread
        # (run_inference) and reads the ego history through snapshots; sets reach it through
        # the one-slot hand-over (_submit).
        compressed = p["image_transport"] == "compressed"
        # Sensor data (best effort) by default, so any driver's stream is received; ROS 2's
        # standard overrides (qos_overrides.<topic>.subscription.reliability: reliable, ...)
        # make a replay lossless.
        overrides = QoSOverridingOptions.with_default_policies()
        # Created first: the executor takes ready messages in creation order, so a set's
        # odometry is taken before the camera image that completes the set.
        self._subscribe(
            Odometry, p["odometry_topic"], self._on_odometry, qos_profile_sensor_data,
            qos_overriding_options=overrides,
        )  # fmt: skip
        for name in CAMERA_NAMES:
            self._subscribe(
                CompressedImage if compressed else Image,
                self.get_parameter(camera_topic_parameter(name, "topic")).value,
                lambda message, name=name: self._on_image(name, message),
                CAMERA_QOS,
                qos_overriding_options=overrides,
            )
            self._camera_info_subscriptions[name] = self._subscribe(
                CameraInfo,
                self.get_parameter(camera_topic_parameter(name, "info_topic")).value,
                lambda message, name=name: self._on_camera_info(name, message),
                qos_profile_sensor_data,
            )
        self._subscribe(String, p["command_topic"], self._on_command, 10)
        self.trajectory_publisher = self._advertise(Path, "~/trajectory", 10)
        self.meta_action_publisher = self._advertise(String, "~/meta_action", 10)
        self.occupancy_publisher = self._advertise(PointCloud2, "~/occupancy", 2)
        self.create_timer(0.25, self._check_inputs)

    def _subscribe(self, message_type, topic: str, callback, qos, **options):
        """A subscription whose QoS mismatches are reported with its topic."""
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda event: self._qos_issue(
                f"a publisher of {self.resolve_topic_name(topic)} offers QoS incompatible with "
                f"this subscription ({_policy_name(event)}): nothing is received from it"
            )
        )
        return self.create_subscription(
            message_type, topic, callback, qos, event_callbacks=events, **options
        )

    def _advertise(self, message_type, topic: str, qos):
        """A publisher whose QoS mismatches are reported with its topic."""
        events = PublisherEventCallbacks(
            incompatible_qos=lambda event: self._qos_issue(
                f"a subscriber of {self.resolve_topic_name(topic)} requests QoS this output does "
                f"not offer ({_policy_name(event)}): it receives nothing"
            )
        )
        return self.create_publisher(message_type, topic, qos, event_callbacks=events)

    def start_diagnostics(self) -> None:
        # On the steady clock: under use_sim_time the status keeps coming while a bag is paused
        # or has ended (/clock stopped), stamped with the simulated time.
        self.create_timer(
            self.params["diagnostics_period_s"],
            self.publish_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )

    # ---- inputs --------------------------------------------------------------------------
    def _bad_input(self, key: str, message: str, counter: str) -> None:
        self.counts[counter] += 1
        self.issues.report(key, message, WARN, on_new=self.get_logger().warning)

    def _on_image(self, name: str, message) -> None:
        self.camera_rates[name].tick()
        try:
            frame = (
                compressed_to_frame(message)
                if isinstance(message, CompressedImage)
                else image_to_frame(message)
            )
            if frame.encoding == "jpeg" and not frame.data.startswith(b"\xff\xd8"):
                raise OccvlaError("not JPEG data (no start-of-image marker)")
        except OccvlaError as error:
            # Keyed by camera and the start of the message: each kind of problem is logged once
            # while it persists, not once per frame.
            key = f"image:{name}:{str(error)[:24]}"
            self._bad_input(key, f"bad image on {name}: {error}", "bad_images")
            return
        # Only usable images keep a camera live: one sending nothing else goes stale, and the
        # missing-camera policy applies to it.
        self.last_arrival[name] = self._now_s()
        # Decoding starts now, on the planner's workers, while the other cameras are in flight.
        view = self.planner.prepare_view(name, frame)
        view.add_done_callback(lambda done, name=name: self._on_view_decoded(name, done))
        if name in self.undecodable_since and name in self.stale:
            return  # decoded only to see whether it works again; planned without it meanwhile
        synced, was_reset = self.sync.add(name, stamp_to_ns(message.header.stamp), view)
        if was_reset:
            # The odometry history restarts on its own when its stamps go back; clearing it here
            # would drop the looped instant's odometry when it arrived before this image.
            text = f"camera stamps went backwards on {name} (bag loop?): synchroniser reset"
            self.issues.report("loop", text, WARN, on_new=self.get_logger().warning)
        if synced is not None:
            self.counts["sets"] += 1
            self._submit(_Pending(synced, time.monotonic()))

    def _on_view_decoded(self, name: str, view: Future) -> None:
        """On a decoding worker: note whether a camera's images decode (cancelled: unknown)."""
        if view.cancelled():
            return
        error = view.exception()
        if error is None:
            if self.undecodable_since.pop(name, None) is not None:
                self.get_logger().info(f"{name}: images decode again")
        else:
            self.undecodable_since.setdefault(name, self._now_s())
            # Reported here, whether or not a set holding it is planned (one may never be).
            key = f"image:{name}:{str(error)[:24]}"
            self._bad_input(key, f"bad image on {name}: {error}", "bad_images")

    def _on_camera_info(self, name: str, message: CameraInfo) -> None:
        if name not in self._camera_info_subscriptions or message.width == 0 or message.k[0] <= 0:
            return
        # Checked once: a driver repeats its CameraInfo with every image (72 messages a second
        # for six cameras at 12 Hz), and taking each costs the callbacks thread CPU.
        self.destroy_subscription(self._camera_info_subscriptions.pop(name))
        fov = horizontal_fov_deg(message.k[0], message.width)
        expected = NUSCENES_HFOV_DEG[name]
        if abs(fov - expected) > self.params["fov_tolerance_deg"]:
            text = (
                f"{name}: horizontal field of view {fov:.1f} deg differs from the training rig's "
                f"{expected:.1f} deg by more than {self.params['fov_tolerance_deg']} deg: "
                "expect degraded plans"
            )
            self.get_logger().warning(text)
            self.fov_warning = text

    def _on_odometry(self, message: Odometry) -> None:
        self.odometry_rate.tick()
        self.last_arrival["odometry"] = self._now_s()
        try:
            self.ego.add(odometry_to_sample(message))
        except OccvlaError as error:
            self._bad_input("odometry", f"bad odometry: {error}", "bad_odometry")

    def _on_command(self, message: String) -> None:
        self.command = message.data.strip() or None
        if self.command and not self.planner.uses_command and not self.command_notice_given:
            self.command_notice_given = True
            self.get_logger().info(
                "navigation commands are ignored: this checkpoint was trained without them"
            )

    def _check_inputs(self) -> None:
        """Silent inputs -> warnings; stale cameras -> the missing-camera policy."""
        now = self._now_s()
        if not self.started_s:  # use_sim_time: the clock starts with the first /clock message
            self.started_s = now
        timeout = self.params["camera_timeout_s"]
        # A camera never heard from counts from the node's start, so a slow driver gets the
        # same timeout as a silent one.
        silent = {
            name
            for name in CAMERA_NAMES
            if now - self.last_arrival.get(name, self.started_s) > timeout
        }
        undecodable = {
            name for name, since in dict(self.undecodable_since).items() if now - since > timeout
        }
        stale = silent | undecodable
        if not self.last_arrival and silent:
            text = f"no camera or odometry message in {timeout} s: check the topics and their QoS"
            self.issues.report("no_input", text, WARN, on_new=self.get_logger().warning)
        if stale != self.stale:
            policy = self.params["missing_camera_policy"]
            if silent:
                self.get_logger().warning(
                    f"camera(s) silent for more than {timeout} s: {sorted(silent)} "
                    f"(policy: {policy})"
                )
            if undecodable:
                self.get_logger().warning(
                    f"camera(s) whose images failed to decode for more than {timeout} s: "
                    f"{sorted(undecodable)} (policy: {policy})"
                )
            self.stale = stale
            live = [name for name in CAMERA_NAMES if name not in stale]
            blank = self.params["missing_camera_policy"] == "blank"
            self.sync.set_required(live if blank and live else CAMERA_NAMES)
        if stale:
            self.issues.report("stale", f"stale camera(s): {', '.join(sorted(stale))}", WARN)
        odometry_at = self.last_arrival.get("odometry")
        if odometry_at is not None and now - odometry_at > self.params["odometry_timeout_s"]:
            text = f"odometry silent for more than {self.params['odometry_timeout_s']} s"
            self.issues.report("odometry_silent", text, WARN, on_new=self.get_logger().warning)
        if self.fov_warning:
            self.issues.report("fov", self.fov_warning, WARN)

    def _qos_issue(self, text: str) -> None:
        self.get_logger().warning("QoS mismatch: " + text)  # before the status shows it
        self.issues.report("qos", "QoS mismatch: " + text, WARN)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        for parameter in parameters:
            problem = validate_planner_parameter(parameter.name, parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for parameter in parameters:
            self.params[parameter.name] = parameter.value
            if parameter.name == "sync_slop_s":
                self.sync.slop_ns = int(parameter.value * 1e9)
        self.stale = {"<re-evaluate>"}
        return SetParametersResult(successful=True)

    # ---- inference thread ----------------------------------------------------------------
    def _submit(self, pending: _Pending) -> None:
        with self._pending_ready:
            if self._pending is not None:
                self.counts["dropped_sets"] += 1  # inference is slower than input: keep newest
                for view in self._pending.synced.items.values():
                    view.cancel()
            self._pending = pending
            self._pending_ready.notify()

    def run_inference(self) -> None:
        """Plan the newest synchronised set until ``stop()``; blocks the calling thread.

        main() calls this on the process's main thread and spins the executor on another:
        PyTorch's CPU kernels launched from a secondary thread measured 1.4x slower for the tiny
        model here (OpenMP intra-op parallelism; docs/ros.md, Threads), so the callbacks move
        instead.
        """
        while True:
            with self._pending_ready:
                while self._pending is None and not self._stopping:
                    self._pending_ready.wait()
                if self._stopping:
                    return
                pending, self._pending = self._pending, None
            try:
                self._plan_and_publish(pending)
            except OccvlaError as error:
                self._bad_input("plan", f"planning failed: {error}", "failed_plans")
            except Exception as error:  # a bug or a device failure must not end planning
                self._bad_input(
                    f"plan_error:{type(error).__name__}",
                    f"planning raised {type(error).__name__}: {error}",
                    "failed_plans",
                )

    def _ego_state_at(self, stamp_ns: int):
        """The ego state for a set, waiting briefly for an odometry message still in flight.

        Cameras and odometry are separate topics that DDS does not order: the odometry message
        of a set's instant may be taken after its last camera image.
        """
        deadline = time.monotonic() + ODOMETRY_GRACE_S
        while (ego := self.ego.state_at(stamp_ns)) is None and time.monotonic() < deadline:
            newest = self.ego.newest_stamp_ns()
            if newest is not None and stamp_ns <= newest <= stamp_ns + self.sync.reset_ns:
                break  # odometry has moved past the set: nothing nearer is coming
            # (A newest stamp far ahead is the previous pass of a looping bag: keep waiting.)
            time.sleep(0.002)
        return ego

    def _plan_and_publish(self, pending: _Pending) -> None:
        synced = pending.synced
        ego = self._ego_state_at(synced.stamp_ns)
        if ego is None:
            self._bad_input(
                "no_odometry",
                f"no valid odometry within {self.params['odometry_tolerance_s']} s of the camera "
                f"set at {synced.stamp_ns * 1e-9:.3f} s: set skipped",
                "no_odometry",
            )
            return
        command = self.command  # the callbacks thread may replace it meanwhile
        if self.planner.uses_command and command is None:
            self._bad_input(
                "no_command",
                "this checkpoint was trained with navigation commands and none has arrived on "
                f"{self.params['command_topic']}: set skipped",
                "no_command",
            )
            return
        missing = [name for name in CAMERA_NAMES if name not in synced.items]
        size = self.planner.image_size
        frames = {
            name: synced.items.get(name, CameraFrame(np.zeros((size, size, 3), np.uint8), "rgb8"))
            for name in CAMERA_NAMES
        }
        with_occupancy = (
            self.params["publish_occupancy"]
            and self.planner.has_occupancy
            and self.occupancy_publisher.get_subscription_count() > 0
        )
        # The past trajectory from the odometry history, as the loader's past_ego (runtime.ego).
        past = ego.past_trajectory if self.planner.num_past else None
        plan = self.planner.plan(
            frames,
            ego.as_array(),
            command=command,
            past_trajectory=past,
            past_mask=ego.past_mask if past is not None else None,
        )
        odometry_frame = self.params["trajectory_frame"] == "odometry"
        header = Header(
            stamp=ns_to_stamp(synced.stamp_ns),
            frame_id=ego.odometry.frame_id if odometry_frame else self.params["base_frame"],
        )
        self.trajectory_publisher.publish(
            path_message(plan.waypoints, header, ego.odometry if odometry_frame else None)
        )
        self.meta_action_publisher.publish(String(data=plan.meta_action.text))
        latency_ms = (time.monotonic() - pending.completed_at) * 1e3  # until the plan is out
        # Decoded after the plan is published: the occupancy branch must not delay the trajectory.
        # Not once the node is stopping: it would only delay the exit (launch's stop timeout).
        if with_occupancy and not self._stopping:
            points, classes = occupancy_points(self.planner.decode_occupancy(plan))
            cloud_header = Header(stamp=header.stamp, frame_id=self.params["base_frame"])
            self.occupancy_publisher.publish(occupancy_cloud(points, classes, cloud_header))
        self.counts["plans"] += 1
        if missing:
            self.counts["degraded_plans"] += 1
            self.issues.report(
                "degraded", f"degraded output: blank view for {', '.join(missing)}", WARN
            )
        self.inference_ms.add(plan.timings.total_ms)
        self.latency_ms.add(latency_ms)

    # ---- diagnostics ---------------------------------------------------------------------
    def publish_diagnostics(self, startup_error: str | None = None) -> None:
        issues = self.issues.active()
        values: dict[str, object] = {"checkpoint": self.params["checkpoint"]}
        if startup_error:
            issues.append((ERROR, startup_error))
        if self.planner is not None:
            values |= {
                "preset": self.planner.config.preset,
                "device": str(self.planner.device),
                "dtype": str(self.planner.dtype).removeprefix("torch."),
                "cpu threads": torch.get_num_threads(),
                **{f"rate {name} (Hz)": f"{m.rate():.1f}" for name, m in self.camera_rates.items()},
                "rate odometry (Hz)": f"{self.odometry_rate.rate():.1f}",
                **self.counts,
                "sync late": self.sync.counters.late,
                "sync overflow": self.sync.counters.overflow,
                "sync resets": self.sync.counters.resets,
                "inference ms": self.inference_ms.summary(),
                "end-to-end ms": self.latency_ms.summary(),
                "missing camera policy": self.params["missing_camera_policy"],
            }
            if (heap := heap_usage()) is not None:
                values |= {
                    "heap in use (MiB)": f"{heap.in_use_bytes / 2**20:.1f}",
                    "heap free (MiB)": f"{heap.free_bytes / 2**20:.1f}",
                }
        status = status_message(
            f"{self.get_name()}: planner",
            str(self.planner.device) if self.planner else "none",
            issues,
            values,
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_publisher.publish(array)

    def callback_failed(self, error: Exception) -> None:
        """A callback raised (a bug): count it, ERROR on /diagnostics, log it once per kind."""
        self.counts["callback_errors"] += 1
        text = f"a callback raised {_describe(error)}"
        self.issues.report(
            f"callback:{type(error).__name__}",
            text,
            ERROR,
            on_new=lambda message: self.get_logger().error(f"{message}\n{traceback.format_exc()}"),
        )

    def destroy_node(self) -> None:
        if self.planner is not None:
            self.planner.close()
        super().destroy_node()

    def _trajectory_frame_text(self) -> str:
        if self.params["trajectory_frame"] == "odometry":
            return "the odometry frame"
        return self.params["base_frame"]

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def stop(self) -> None:
        """Make ``run_inference`` return after the plan in progress (any thread may call it)."""
        with self._pending_ready:
            self._stopping = True
            self._pending_ready.notify()


def _linger_with_error(node: PlannerNode, text: str) -> None:
    """Keep reporting the startup error on /diagnostics for a while, so monitors see it."""
    deadline = time.monotonic() + node.params["startup_error_linger_s"]
    while time.monotonic() < deadline and rclpy.ok():
        node.publish_diagnostics(startup_error=text)
        rclpy.spin_once(node, timeout_sec=0.25)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = PlannerNode()
        except ParameterException as error:  # a parameter of the wrong type in the YAML / -p
            rclpy.logging.get_logger("occvla_planner").error(f"startup failed: {error}")
            return 2
        try:
            node.configure()
        except Exception as error:  # any failure ends as one line and exit 1, no traceback
            # OccvlaError is the expected kind (bad checkpoint, parameter, device); anything
            # else (a CUDA error or out-of-memory during warm-up) is named by its type.
            detail = str(error) if isinstance(error, OccvlaError) else _describe(error)
            text = f"startup failed: {detail}"
            node.get_logger().error(text)
            _linger_with_error(node, text)
            return 1
        node.start_diagnostics()
        _run(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ignore_further_sigint()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _run(node: PlannerNode) -> None:
    """Callbacks on a helper thread, inference on this (the main) thread, until shutdown."""
    # Single-threaded on purpose: with rclpy's MultiThreadedExecutor a set of six 500 kB
    # JPEGs took 130-220 ms median (p90 1.3-1.9 s, mutually exclusive or reentrant group) to
    # reach the callbacks on this 2-core machine, against 1.4 ms single-threaded.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(
        target=_spin_then_stop, args=(executor, node), name="occvla_callbacks", daemon=True
    )
    spinner.start()
    try:
        node.run_inference()
    finally:
        ignore_further_sigint()
        node.stop()
        # The executor's thread must leave its wait before the node and the process go
        # (exiting with it inside rcl aborts the process).
        rclpy.try_shutdown()
        spinner.join(timeout=10.0)
        executor.shutdown()


def _policy_name(event) -> str:
    """The QoS policy an incompatibility event names (RELIABILITY, DURABILITY, ...)."""
    try:
        return f"policy {QoSPolicyKind(event.last_policy_kind).name}"
    except ValueError:
        return f"policy kind {event.last_policy_kind}"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _spin_then_stop(executor: SingleThreadedExecutor, node: PlannerNode) -> None:
    """Run the callbacks until shutdown (Ctrl-C, rclpy.shutdown), then release the main thread.

    rclpy's executor lets a callback's exception out of ``spin``; it is reported (once per kind,
    with its traceback) and the callbacks go on, so one bad message cannot stop the inputs.
    """
    try:
        while executor.context.ok():
            try:
                executor.spin()
            except ExternalShutdownException:
                return
            except Exception as error:  # see the docstring
                node.callback_failed(error)
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
