"""The runtime Planner on a real (randomly initialised) tiny checkpoint."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

from occvla_ros.constants import CAMERA_NAMES, NUM_WAYPOINTS, OCC_GRID_SHAPE
from occvla_ros.errors import CheckpointError, ConfigError, DataError
from occvla_ros.runtime.ego import EgoStateEstimator, OdometrySample
from occvla_ros.runtime.planner import (
    JPEG,
    CameraFrame,
    Planner,
    horizontal_fov_deg,
    occupancy_points,
    select_device,
)


@pytest.fixture(scope="module")
def planner(tiny_checkpoint):
    return Planner(tiny_checkpoint, preset="tiny", device="cpu", warmup=False)


def camera_images(seed: int = 0, size=(360, 640)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Smooth images (so JPEG round trips stay close): random low-resolution blocks, upscaled.
    return [
        cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), size[::-1]) for _ in range(6)
    ]


def test_plan_has_the_documented_shapes_and_a_vocabulary_action(planner):
    frames = [CameraFrame(image, "rgb8") for image in camera_images()]
    plan = planner.plan(frames, (5.0, 0.2, 0.01))
    assert plan.waypoints.shape == (NUM_WAYPOINTS, 2) and plan.waypoints.dtype == np.float32
    assert np.isfinite(plan.waypoints).all()
    assert plan.meta_action in planner.config.meta_actions.actions
    assert plan.occupancy is None
    assert 0 < plan.timings.preprocess_ms < plan.timings.total_ms
    assert plan.timings.inference_ms <= plan.timings.total_ms


def test_occupancy_is_computed_only_when_asked_and_does_not_change_the_plan(planner):
    frames = [CameraFrame(image, "rgb8") for image in camera_images(1)]
    without = planner.plan(frames, (3.0, 0.0, 0.0))
    with_occupancy = planner.plan(frames, (3.0, 0.0, 0.0), with_occupancy=True)
    assert with_occupancy.occupancy.shape == OCC_GRID_SHAPE
    np.testing.assert_array_equal(without.waypoints, with_occupancy.waypoints)
    points, classes = occupancy_points(with_occupancy.occupancy)
    assert points.shape == (len(classes), 3) and points.dtype == np.float32
    assert (points[:, :2] > -40).all() and (points[:, :2] < 40).all()
    # Decoded later from the plan made without it (a node publishes the plan first): the same.
    np.testing.assert_array_equal(planner.decode_occupancy(without), with_occupancy.occupancy)


def test_bgr8_mono8_and_jpeg_inputs_match_the_rgb8_pixels(planner):
    images = camera_images(2)
    reference = planner.preprocess([CameraFrame(image, "rgb8") for image in images])
    bgr = planner.preprocess([CameraFrame(image[:, :, ::-1].copy(), "bgr8") for image in images])
    torch.testing.assert_close(bgr, reference)
    jpegs = [
        cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
        for image in images
    ]
    decoded = planner.preprocess([CameraFrame(data.tobytes(), JPEG) for data in jpegs])
    assert (decoded - reference).abs().mean() < 0.05  # JPEG loss only
    gray = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in images]
    mono = planner.preprocess([CameraFrame(g, "mono8") for g in gray])
    assert torch.equal(mono[:, :, 0], mono[:, :, 1]) and torch.equal(mono[:, :, 1], mono[:, :, 2])


def test_camera_order_is_by_name(planner):
    images = camera_images(3)
    by_model_order = planner.preprocess([CameraFrame(i, "rgb8") for i in images])
    reversed_names = list(reversed(CAMERA_NAMES))
    reversed_frames = [CameraFrame(i, "rgb8") for i in reversed(images)]
    torch.testing.assert_close(planner.preprocess(reversed_frames, reversed_names), by_model_order)


def test_views_prepared_ahead_plan_exactly_like_the_frames(planner):
    jpegs = [cv2.imencode(".jpg", image)[1].tobytes() for image in camera_images(5)]
    frames = {name: CameraFrame(data, JPEG) for name, data in zip(CAMERA_NAMES, jpegs, strict=True)}
    direct = planner.plan(frames, (4.0, 0.0, 0.0))
    # Started out of order from another thread, as the node's callbacks do.
    views = {}
    worker = threading.Thread(
        target=lambda: views.update(
            {name: planner.prepare_view(name, frames[name]) for name in reversed(CAMERA_NAMES)}
        )
    )
    worker.start()
    worker.join()
    mixed = {**views, "CAM_BACK": frames["CAM_BACK"]}  # prepared views and frames together
    prepared = planner.plan(mixed, (4.0, 0.0, 0.0))
    np.testing.assert_array_equal(prepared.waypoints, direct.waypoints)
    assert prepared.meta_action == direct.meta_action
    corrupt = planner.prepare_view("CAM_FRONT", CameraFrame(b"\xff\xd8\xff\xe0" * 50, JPEG))
    with pytest.raises(DataError, match="CAM_FRONT"):
        planner.plan({**views, "CAM_FRONT": corrupt}, (4.0, 0.0, 0.0))


@pytest.mark.parametrize(
    ("frames", "ego", "message"),
    [
        ("five", (1.0, 0.0, 0.0), "expected 6 frames"),
        ("ok", (float("nan"), 0.0, 0.0), "finite"),
        ("ok", (1.0, float("inf"), 0.0), "finite"),
        ("corrupt_jpeg", (1.0, 0.0, 0.0), "image CAM_FRONT (could not be decoded|has no readable)"),
        ("wrong_encoding", (1.0, 0.0, 0.0), "unsupported encoding 'rgba8'"),
        ("float_pixels", (1.0, 0.0, 0.0), "must be uint8"),
    ],
)
def test_bad_inputs_raise_data_errors_naming_the_problem(planner, frames, ego, message):
    good = [CameraFrame(image, "rgb8") for image in camera_images(4)]
    bad = {
        "five": good[:5],
        "ok": good,
        "corrupt_jpeg": [CameraFrame(b"\xff\xd8\xff\xe0garbage" * 20, JPEG), *good[1:]],
        "wrong_encoding": [CameraFrame(good[0].data, "rgba8"), *good[1:]],
        "float_pixels": [CameraFrame(good[0].data.astype(np.float32), "rgb8"), *good[1:]],
    }[frames]
    with pytest.raises(DataError, match=message):
        planner.plan(bad, ego)


def test_checkpoint_and_device_errors_are_clear(tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Planner(tmp_path / "missing", device="cpu")
    with pytest.raises(CheckpointError, match="expected 'paligemma2-3b-224'"):
        Planner(tiny_checkpoint, preset="paligemma2-3b-224", device="cpu", warmup=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda:0"):
            select_device("cuda:0", "auto")
    with pytest.raises(ConfigError, match="tpu"):
        select_device("tpu", "auto")
    assert select_device("cpu", "auto") == (torch.device("cpu"), torch.float32)


def test_ego_state_from_odometry_samples():
    estimator = EgoStateEstimator(tolerance_ns=100_000_000)

    def sample(t_s, speed):
        return OdometrySample(int(t_s * 1e9), speed, 0.1, (0.0, 0.0, 0.0), (1.0, 0, 0, 0), "odom")

    for t_s, speed in ((0.0, 2.0), (0.5, 3.0), (1.0, 3.5)):
        estimator.add(sample(t_s, speed))
    state = estimator.state_at(int(0.52e9))
    assert state.as_array() == pytest.approx([3.0, 2.0, 0.1])
    assert estimator.state_at(int(2.0e9)) is None  # beyond tolerance
    with pytest.raises(DataError, match="speed"):
        estimator.add(sample(1.5, float("nan")))
    assert estimator.newest_stamp_ns() == int(1.0e9)
    estimator.add(sample(0.1, 1.0))  # went backwards: history restarts, no huge acceleration
    assert estimator.state_at(int(0.1e9)).acceleration == 0.0
    assert estimator.newest_stamp_ns() == int(0.1e9)
    assert estimator.state_at(int(1.0e9)) is None  # the samples before the loop are gone


def test_field_of_view_of_the_nuscenes_front_camera():
    assert horizontal_fov_deg(1266.4, 1600) == pytest.approx(64.5, abs=0.1)


def test_a_command_conditioned_checkpoint_warms_up_and_requires_a_command(tmp_path):
    from occvla_ros.model.checkpoint import save_checkpoint
    from occvla_ros.model.configuration import OccVLAConfig
    from occvla_ros.model.occvla import OccVLA

    config = OccVLAConfig.from_preset("tiny")
    config.prompt.use_command = True
    torch.manual_seed(0)
    directory = save_checkpoint(OccVLA(config), tmp_path / "with_command")
    planner = Planner(directory, device="cpu")  # the warm-up plan needs a command too
    assert planner.uses_command
    blank = CameraFrame(np.zeros((64, 64, 3), np.uint8), "rgb8")
    plan = planner.plan([blank] * 6, (3.0, 0.0, 0.0), command="turn left")
    assert plan.waypoints.shape == (6, 2)
    with pytest.raises(ConfigError, match="no driving command"):
        planner.plan([blank] * 6, (3.0, 0.0, 0.0))


def test_cpu_threads_set_pytorch_threads_and_decoding_workers(tiny_checkpoint):
    default = torch.get_num_threads()
    try:
        planner = Planner(tiny_checkpoint, device="cpu", warmup=False, cpu_threads=1)
        assert torch.get_num_threads() == 1 and planner._view_workers._max_workers == 1
        planner.close()
    finally:
        torch.set_num_threads(default)
    for bad in (-1, 1.5):
        with pytest.raises(ConfigError, match="cpu_threads"):
            Planner(tiny_checkpoint, device="cpu", warmup=False, cpu_threads=bad)
