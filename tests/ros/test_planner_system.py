"""The node set started through the process launcher (`occvla launch`), driven from this process.

One launched system serves the whole module (startup costs ~20 s on 2 cores); tests run in file
order and each ends with the system healthy again.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from occvla_ros.constants import NUM_WAYPOINTS
from occvla_ros.meta_action import MetaActionVocabulary
from occvla_ros.ros.conversions import stamp_to_ns
from tests.ros.rig import SECOND, CameraRig, Outputs, drive
from tests.support.ros import ProcessHandle, RosProbe, python_module_command

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TEST_PARAMETERS = """\
/**:
  ros__parameters:
    camera_timeout_s: 1.0
    missing_camera_policy: blank
    diagnostics_period_s: 0.5
"""


@pytest.fixture(scope="module")
def system(installed_share_dir, tiny_checkpoint, tmp_path_factory):
    directory = tmp_path_factory.mktemp("planner_system")
    config = directory / "planner_test.yaml"
    config.write_text(TEST_PARAMETERS)
    probe = RosProbe()
    outputs = Outputs(probe)
    markers = []
    from visualization_msgs.msg import MarkerArray

    probe.node.create_subscription(MarkerArray, "/occvla_occupancy/markers", markers.append, 5)
    launcher = ProcessHandle(
        [
            *python_module_command("occvla_ros.cli", "launch"),
            f"checkpoint:={tiny_checkpoint}",
            f"config:={config}",
            "device:=cpu",
            "occupancy:=true",
        ],
        directory / "launch.log",
    )
    rig = CameraRig(probe)
    assert rig.wait_for_node(), launcher.log_text()
    assert probe.spin_until(lambda: "ready:" in launcher.log_text(), 60.0), launcher.log_text()
    yield probe, rig, outputs, markers, launcher
    assert launcher.returncode is None, "a node died:\n" + launcher.log_text()
    code = launcher.stop()
    probe.close()
    assert code == 0, launcher.log_text()
    # Fast DDS is given its profile once, under its current variable name: no deprecation
    # warning, no failed second load of the profile's transports.
    assert "XMLPARSER" not in launcher.log_text()
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in launcher.log_text()


def stamps(start_s: float, count: int, step_s: float = 0.5) -> list[int]:
    return [int((start_s + i * step_s) * SECOND) for i in range(count)]


def stamped_in(paths, published: list[int]) -> list:
    """Paths for the given input stamps (a path of an earlier test may still be in flight)."""
    return [path for path in paths if stamp_to_ns(path.header.stamp) in published]


def test_end_to_end_path_meta_action_and_markers(system):
    probe, rig, outputs, markers, _ = system
    published = stamps(1000.0, 20)
    assert drive(probe, rig, published, lambda: outputs.paths and outputs.actions and markers)
    path = outputs.paths[-1]
    assert len(path.poses) == NUM_WAYPOINTS
    assert path.header.frame_id == "base_link"
    assert stamp_to_ns(path.header.stamp) in published
    xy = np.array([[p.pose.position.x, p.pose.position.y] for p in path.poses])
    quaternions = np.array([[p.pose.orientation.z, p.pose.orientation.w] for p in path.poses])
    assert np.isfinite(xy).all() and np.allclose(np.hypot(*quaternions.T), 1.0, atol=1e-6)
    assert outputs.actions[-1].data in MetaActionVocabulary().texts
    marker_array = markers[-1]
    assert marker_array.markers[0].action == 3  # DELETEALL first
    assert stamp_to_ns(marker_array.markers[0].header.stamp) in published
    assert marker_array.markers[0].header.frame_id == "base_link"
    assert probe.spin_until(lambda: outputs.status_with("ok") or outputs.statuses, 5.0)
    values = {kv.key: kv.value for kv in outputs.statuses[-1].values}
    assert {"inference ms", "end-to-end ms", "dropped_sets", "device"} <= set(values)
    assert int(values["cpu threads"]) >= 1
    assert float(values["heap in use (MiB)"]) > 50  # the tiny model alone holds more
    # Reported, but not bounded here: how much of the start-up reserve is still free depends on
    # the allocator's state (32.1 MiB on one fresh clone, 40+ on others). What the reserve does
    # is shown in tests/runtime/test_heap.py and docs/ros-performance.md (Memory at rest).
    assert float(values["heap free (MiB)"]) >= 0.0


def test_stale_camera_gives_a_degraded_blank_view_plan(system):
    probe, rig, outputs, _, launcher = system
    published = stamps(2000.0, 30)
    assert drive(
        probe, rig, published,
        lambda: outputs.status_with("degraded output: blank view for CAM_BACK")
        and stamped_in(outputs.paths, published),
        skip=("CAM_BACK",),
    )  # fmt: skip
    assert outputs.status_with("stale camera(s): CAM_BACK").level == b"\x01"
    assert "camera(s) silent for more than 1.0 s: ['CAM_BACK']" in launcher.log_text()


def test_corrupt_jpeg_is_reported_and_skipped(system):
    from sensor_msgs.msg import CompressedImage

    probe, rig, outputs, _, launcher = system
    corrupt = CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0" + b"\x00" * 400)
    published = stamps(3000.0, 6)
    expected = "bad image on CAM_FRONT: image CAM_FRONT has no readable JPEG frame header"
    assert drive(
        probe, rig, published, lambda: outputs.status_with(expected),
        replace={"CAM_FRONT": corrupt},
    )  # fmt: skip
    assert expected in launcher.log_text()
    # Reported as it is decoded, whether or not a set holding it gets planned (under load the
    # camera can be blanked first: test_a_camera_sending_only_unusable_images...).


def test_wrong_compressed_format_is_reported(system):
    from sensor_msgs.msg import CompressedImage

    probe, rig, outputs, _, launcher = system
    png = CompressedImage(format="png", data=b"\x89PNG....")
    assert drive(
        probe, rig, stamps(3100.0, 4), lambda: outputs.status_with("bad image on CAM_BACK_LEFT"),
        replace={"CAM_BACK_LEFT": png},
    )  # fmt: skip
    assert "unsupported compressed format 'png'" in launcher.log_text()


def _png(rig, name):
    from sensor_msgs.msg import CompressedImage

    return CompressedImage(format="png", data=b"\x89PNG....")


def _truncated_jpeg(rig, name):
    from sensor_msgs.msg import CompressedImage

    # A valid start-of-image marker, so the node takes it; the decoder then fails on it. Every
    # set used to fail to decode, and the camera was never blanked: no output at all.
    return CompressedImage(format="jpeg", data=rig.jpegs[name][:600])


@pytest.mark.parametrize(
    ("camera", "unusable", "warning", "recovered"),
    [
        ("CAM_BACK_LEFT", _png, "camera(s) silent for more than 1.0 s", None),
        (
            "CAM_FRONT_RIGHT",
            _truncated_jpeg,
            "camera(s) whose images failed to decode for more than 1.0 s",
            "CAM_FRONT_RIGHT: images decode again",
        ),
    ],
    ids=["refused", "undecodable"],
)
def test_a_camera_sending_only_unusable_images_goes_stale_and_is_blanked(
    system, camera, unusable, warning, recovered
):
    probe, rig, outputs, _, launcher = system
    published = stamps(3500.0 if recovered is None else 3700.0, 30)
    assert drive(
        probe, rig, published,
        lambda: outputs.status_with(f"degraded output: blank view for {camera}")
        and stamped_in(outputs.paths, published),
        replace={camera: unusable(rig, camera)},
    )  # fmt: skip
    assert f"{warning}: ['{camera}']" in launcher.log_text()
    if recovered:  # its images are still tried: the first that decodes brings it back
        later = stamps(3800.0, 10)
        assert drive(probe, rig, later, lambda: recovered in launcher.log_text())


def test_nan_odometry_is_reported_and_never_planned(system):
    probe, rig, outputs, _, launcher = system
    bad_stamps = stamps(4000.0, 4)
    assert drive(
        probe, rig, bad_stamps, lambda: outputs.status_with("non-finite speed"), speed=math.nan
    )
    probe.spin_for(1.0)
    assert "bad odometry: odometry at stamp" in launcher.log_text()
    assert not stamped_in(outputs.paths, bad_stamps)


def test_stamps_going_backwards_reset_and_planning_resumes(system):
    probe, rig, outputs, _, launcher = system
    looped = stamps(10.0, 20)  # the bag started again
    # The looped instant itself is planned: its odometry, taken before its images, survives the
    # synchroniser reset. One set first, so a node still busy with an earlier plan keeps it
    # pending instead of replacing it with the next one.
    rig.publish_set(looped[0])
    first = probe.spin_until(
        lambda: (
            outputs.status_with("stamps went backwards") and stamped_in(outputs.paths, looped[:1])
        ),
        30.0,
    )
    last_status = outputs.statuses[-1] if outputs.statuses else "no status"
    assert first, (last_status, launcher.log_text()[-3000:])
    assert "synchroniser reset" in launcher.log_text()
    assert drive(probe, rig, looped[1:], lambda: stamped_in(outputs.paths, looped[1:]))


def test_after_a_loop_a_set_whose_odometry_comes_last_is_planned(system):
    probe, rig, outputs, _, _ = system
    from occvla_ros.constants import CAMERA_NAMES

    before = stamps(6000.0, 20)
    assert drive(probe, rig, before, lambda: stamped_in(outputs.paths, before))
    looped = int(5.0 * SECOND)  # the bag started again
    for name in CAMERA_NAMES:
        rig.cameras[name].publish(rig.camera_message(name, looped))
    # 20 ms, inside the node's 50 ms odometry grace. A sleep, not a spin: this probe's callbacks
    # (a large MarkerArray) could take longer than the grace.
    time.sleep(0.02)
    rig.publish_odometry(looped)  # after the images: the node waits for it
    assert probe.spin_until(lambda: stamped_in(outputs.paths, [looped]), 10.0)
