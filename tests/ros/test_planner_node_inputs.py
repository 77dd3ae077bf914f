"""planner_node started directly (python -m): raw-image inputs, QoS mismatch, startup failures."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from occvla_ros.constants import CAMERA_NAMES
from occvla_ros.ros.conversions import stamp_to_ns
from tests.ros.rig import SECOND, CameraRig, Outputs, drive
from tests.support.ros import ProcessHandle, RosProbe, python_module_command

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def planner_command(*parameters: str) -> list[str]:
    arguments = ["--ros-args", "-r", "__node:=occvla_planner"]
    for parameter in parameters:
        arguments += ["-p", parameter]
    return python_module_command("occvla_ros.ros.planner_node", *arguments)


@pytest.fixture(scope="module")
def raw_node(tiny_checkpoint, tmp_path_factory):
    directory = tmp_path_factory.mktemp("raw_node")
    probe = RosProbe()
    outputs = Outputs(probe)
    node = ProcessHandle(
        planner_command(
            f"checkpoint:={tiny_checkpoint}",
            "device:=cpu",
            "image_transport:=raw",
            "diagnostics_period_s:=0.5",
            *(f"cameras.{name}.topic:=/{name}/image_raw" for name in CAMERA_NAMES),
        ),
        directory / "planner.log",
    )
    rig = CameraRig(probe, transport="raw")
    assert rig.wait_for_node(), node.log_text()
    assert probe.spin_until(lambda: "ready:" in node.log_text(), 60.0), node.log_text()
    yield probe, rig, outputs, node
    assert node.returncode is None, "the node died:\n" + node.log_text()
    assert node.stop() == 0, node.log_text()
    probe.close()


def test_raw_images_of_different_sizes_give_a_path(raw_node):
    probe, rig, outputs, _ = raw_node
    published = [int((100 + 0.5 * i) * SECOND) for i in range(10)]
    small = rig.camera_message("CAM_BACK", 0)
    small.height, small.width, small.step = 30, 40, 120
    small.data = bytearray(np.zeros((30, 40, 3), np.uint8))
    assert drive(
        probe, rig, published,
        lambda: any(stamp_to_ns(p.header.stamp) in published for p in outputs.paths),
        replace={"CAM_BACK": small},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("encoding", "rgba8", "unsupported image encoding 'rgba8'"),
        ("height", 999, "carries"),  # data size does not match width x height
    ],
)
def test_bad_raw_images_are_reported(raw_node, field, value, expected):
    probe, rig, outputs, node = raw_node
    bad = rig.camera_message("CAM_FRONT_LEFT", 0)
    setattr(bad, field, value)
    stamps = [int((200 + 0.5 * i) * SECOND) for i in range(4)]
    assert drive(
        probe, rig, stamps, lambda: outputs.status_with(expected),
        replace={"CAM_FRONT_LEFT": bad},
    )  # fmt: skip
    line = next(text for text in node.log_text().splitlines() if expected in text)
    assert "bad image on CAM_FRONT_LEFT" in line
    assert not any(stamp_to_ns(p.header.stamp) in stamps for p in outputs.paths)


def test_incompatible_qos_subscriber_is_reported(raw_node):
    from nav_msgs.msg import Path
    from rclpy.qos import DurabilityPolicy, QoSProfile

    probe, _, outputs, node = raw_node
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.node.create_subscription(Path, "/occvla_planner/trajectory", lambda _: None, latched)
    assert probe.spin_until(lambda: outputs.status_with("QoS mismatch"), 20.0), node.log_text()
    # The topic and the policy, not an event object's repr.
    assert (
        "QoS mismatch: a subscriber of /occvla_planner/trajectory requests QoS this output does "
        "not offer (policy DURABILITY)" in node.log_text()
    )
    assert " object at 0x" not in node.log_text()


def test_an_incompatible_command_publisher_is_reported(raw_node):
    from rclpy.qos import qos_profile_sensor_data
    from std_msgs.msg import String

    probe, _, _, node = raw_node
    # A route planner publishing best effort to the node's reliable command subscription: no
    # command ever arrives, and nothing but this warning says why.
    probe.node.create_publisher(String, "/occvla_planner/command", qos_profile_sensor_data)
    expected = (
        "QoS mismatch: a publisher of /occvla_planner/command offers QoS incompatible with this "
        "subscription (policy RELIABILITY)"
    )
    assert probe.spin_until(lambda: expected in node.log_text(), 20.0), node.log_text()


def test_silent_odometry_is_reported(raw_node):
    probe, rig, outputs, node = raw_node
    start_s = 300.0
    rig.publish_set(int(start_s * SECOND))  # odometry has been heard from
    expected = "odometry silent for more than 0.5 s"

    def cameras_only_until_reported() -> bool:
        for name in CAMERA_NAMES:
            rig.cameras[name].publish(rig.camera_message(name, int(start_s * SECOND)))
        return expected in node.log_text()

    assert probe.spin_until(cameras_only_until_reported, 20.0), node.log_text()
    assert probe.spin_until(lambda: outputs.status_with(expected), 5.0)
    rig.publish_set(int((start_s + 1.0) * SECOND))  # healthy again for the next test


def test_a_node_hearing_nothing_says_so(tiny_checkpoint, tmp_path):
    probe = RosProbe()
    node = ProcessHandle(
        planner_command(f"checkpoint:={tiny_checkpoint}", "device:=cpu", "camera_timeout_s:=0.5"),
        tmp_path / "planner.log",
    )
    expected = "no camera or odometry message in 0.5 s: check the topics and their QoS"
    try:
        assert probe.spin_until(lambda: expected in node.log_text(), 60.0), node.log_text()
        assert node.returncode is None
    finally:
        assert node.stop() == 0, node.log_text()
        probe.close()


def test_camera_info_is_checked_once_per_camera_against_the_training_rig(raw_node):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo

    from occvla_ros.constants import camera_info_topic

    probe, _, outputs, node = raw_node

    def info(fx: float) -> CameraInfo:
        message = CameraInfo(width=1600, height=900)
        message.k[0] = message.k[4] = fx
        return message

    # CAM_FRONT: fx 500 px at 1600 px is 116 deg wide (nuScenes: 64.5); CAM_BACK: nuScenes' own.
    sent = {"CAM_FRONT": info(500.0), "CAM_BACK": info(809.0)}
    publishers = {
        name: probe.node.create_publisher(
            CameraInfo, camera_info_topic(name), qos_profile_sensor_data
        )
        for name in sent
    }
    assert all(probe.wait_for_subscribers(p) for p in publishers.values()), node.log_text()

    def both_checked() -> bool:
        for name, publisher in publishers.items():
            publisher.publish(sent[name])
        return all(p.get_subscription_count() == 0 for p in publishers.values())

    # The node drops each camera's CameraInfo subscription once it has checked one message.
    assert probe.spin_until(both_checked, 30.0), node.log_text()
    assert probe.spin_until(lambda: outputs.status_with("horizontal field of view"), 10.0)
    warnings = [line for line in node.log_text().splitlines() if "field of view" in line]
    assert len(warnings) == 1, warnings  # once, however many were sent before the check
    assert "CAM_FRONT: horizontal field of view 116.0 deg" in warnings[0]
    assert "64.5 deg" in warnings[0]


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (("checkpoint:=/does/not/exist",), "checkpoint directory /does/not/exist does not exist"),
        (
            ("checkpoint:={checkpoint}/model.safetensors",),
            "parameter 'checkpoint' is a file ({checkpoint}/model.safetensors), not a checkpoint "
            "directory",
        ),
        (("preset:=paligemma2-3b-224",), "model, expected 'paligemma2-3b-224'"),
        (("missing_camera_policy:=guess",), "missing_camera_policy='guess' must be one of"),
        (("loop_reset_s:=.inf",), "loop_reset_s=inf must be a finite number"),
    ],
)
def test_startup_failures_log_report_and_exit_non_zero(
    tiny_checkpoint, tmp_path, parameters, expected
):
    from diagnostic_msgs.msg import DiagnosticArray

    parameters = [text.format(checkpoint=tiny_checkpoint) for text in parameters]
    expected = expected.format(checkpoint=tiny_checkpoint)
    probe = RosProbe()
    statuses = []
    probe.node.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10
    )
    node = ProcessHandle(
        planner_command(
            f"checkpoint:={tiny_checkpoint}", "device:=cpu", "startup_error_linger_s:=6.0",
            *parameters,
        ),
        tmp_path / "planner.log",
    )  # fmt: skip
    try:
        assert probe.spin_until(lambda: any(expected in s.message for s in statuses), 60.0), (
            node.log_text()
        )
        assert next(s for s in statuses if expected in s.message).level == b"\x02"
        assert node.wait(30.0) == 1
        log = node.log_text()
        assert f"startup failed: {expected}" in log or expected in log
        assert "Traceback" not in log
    finally:
        node.stop()
        probe.close()


@pytest.mark.parametrize(
    ("module", "parameter"),
    [
        ("occvla_ros.ros.planner_node", "sync_slop_s:=fast"),
        ("occvla_ros.ros.occupancy_node", "max_voxels:=many"),
    ],
)
def test_a_wrongly_typed_parameter_exits_with_a_clear_error(tmp_path, module, parameter):
    command = python_module_command(module, "--ros-args", "-p", parameter)
    node = ProcessHandle(command, tmp_path / "node.log")
    assert node.wait(60.0) == 2
    log = node.log_text()
    assert "startup failed" in log and parameter.split(":=")[0] in log
    assert "Traceback" not in log


def test_an_unexpected_startup_failure_is_one_line_and_exit_one(tiny_checkpoint, tmp_path):
    # Fault injection: nothing here makes the model load fail outside OccvlaError (on a GPU,
    # CUDA running out of memory during warm-up does).
    code = (
        "import sys\n"
        "import occvla_ros.runtime.planner as planner\n"
        "def out_of_memory(*args, **kwargs):\n"
        "    raise RuntimeError('CUDA out of memory (injected)')\n"
        "planner.Planner.__init__ = out_of_memory\n"
        "from occvla_ros.ros.planner_node import main\n"
        "sys.exit(main())\n"
    )
    command = [sys.executable, "-c", code, "--ros-args", "-p", f"checkpoint:={tiny_checkpoint}"]
    node = ProcessHandle([*command, "-p", "startup_error_linger_s:=0.5"], tmp_path / "node.log")
    assert node.wait(60.0) == 1
    log = node.log_text()
    assert "startup failed: RuntimeError: CUDA out of memory (injected)" in log
    assert "Traceback" not in log


def test_a_raising_callback_is_reported_and_the_callbacks_go_on():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from occvla_ros.ros.planner_node import _spin_then_stop

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("occvla_raising_callback", context=context)
    calls, failures, stopped = [], [], []

    def callback() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise ValueError("a message no callback expected")
        if len(calls) == 3:
            context.shutdown()

    node.create_timer(0.01, callback)
    node.callback_failed, node.stop = failures.append, lambda: stopped.append(True)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        _spin_then_stop(executor, node)  # returns once the context is shut down
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
    assert len(calls) == 3  # the callbacks went on after the first one raised
    assert [str(error) for error in failures] == ["a message no callback expected"]
    assert stopped == [True]  # and the inference loop is released at the end


def test_the_plan_is_published_before_the_occupancy_is_decoded(tiny_checkpoint, tmp_path):
    from sensor_msgs.msg import PointCloud2

    # Fault injection: an occupancy decode that never ends. The Path and the meta-action used to
    # wait for it (the plan and the occupancy were one call).
    code = (
        "import sys, threading\n"
        "import occvla_ros.model.occupancy as occupancy\n"
        "occupancy.OccupancyBranch.predict = lambda self, visual: threading.Event().wait()\n"
        "from occvla_ros.ros.planner_node import main\n"
        "sys.exit(main())\n"
    )
    probe = RosProbe()
    outputs = Outputs(probe)
    clouds = []
    # A subscriber to the occupancy output is what makes the node decode it.
    probe.node.create_subscription(PointCloud2, "/occvla_planner/occupancy", clouds.append, 2)
    node = ProcessHandle(
        [sys.executable, "-c", code, "--ros-args", "-r", "__node:=occvla_planner",
         "-p", f"checkpoint:={tiny_checkpoint}", "-p", "device:=cpu"],
        tmp_path / "planner.log",
    )  # fmt: skip
    try:
        rig = CameraRig(probe)
        assert rig.wait_for_node(), node.log_text()
        published = [int((400 + 0.5 * i) * SECOND) for i in range(10)]
        assert drive(probe, rig, published, lambda: outputs.paths and outputs.actions), (
            node.log_text()
        )
        assert not clouds  # the decode is still "running"
    finally:
        node.stop()  # SIGKILL in the end: its inference thread never returns
        probe.close()
