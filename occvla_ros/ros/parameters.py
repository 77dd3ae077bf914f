"""The planner node's parameters: defaults, descriptions and validation (no rclpy import).

``config/planner.yaml`` lists the same names and defaults; a test checks they agree.
"""

from __future__ import annotations

import math

from occvla_ros.constants import (
    CAMERA_NAMES,
    ODOMETRY_TOPIC,
    camera_image_topic,
    camera_info_topic,
)
from occvla_ros.model.device import DEVICE_HELP
from occvla_ros.runtime.heap import TRIM_THRESHOLD_BYTES
from occvla_ros.runtime.planner import DTYPES

IMAGE_TRANSPORTS = ("compressed", "raw")
MISSING_CAMERA_POLICIES = ("skip", "blank")
TRAJECTORY_FRAMES = ("base_link", "odometry")


def camera_topic_parameter(camera: str, kind: str) -> str:
    """``cameras.<CAMERA>.topic`` or ``cameras.<CAMERA>.info_topic``."""
    return f"cameras.{camera}.{kind}"


# name -> (default, description, read_only). Read-only ones are fixed at startup.
PLANNER_PARAMETERS: dict[str, tuple[object, str, bool]] = {
    "checkpoint": ("", "checkpoint directory written by save_checkpoint (required)", True),
    "preset": ("", "expected model preset (tiny, paligemma2-3b-224); empty: any", True),
    "device": ("auto", DEVICE_HELP, True),
    "dtype": ("auto", "auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16", True),
    "image_transport": ("compressed", "compressed (sensor_msgs/CompressedImage JPEG) or raw", True),
    **{
        camera_topic_parameter(name, "topic"): (
            camera_image_topic(name),
            f"image topic feeding the model's {name} slot",
            True,
        )
        for name in CAMERA_NAMES
    },
    **{
        camera_topic_parameter(name, "info_topic"): (
            camera_info_topic(name),
            f"sensor_msgs/CameraInfo of the {name} camera (field-of-view check)",
            True,
        )
        for name in CAMERA_NAMES
    },
    "odometry_topic": (ODOMETRY_TOPIC, "nav_msgs/Odometry: ego speed, yaw rate and pose", True),
    "command_topic": (
        "~/command",
        "std_msgs/String navigation command; used only by checkpoints trained with commands",
        True,
    ),
    "sync_slop_s": (0.05, "largest stamp spread within one camera set (s)", False),
    "sync_queue_size": (10, "messages kept per camera while waiting for a match", True),
    "loop_reset_s": (1.0, "stamps going back further than this reset the sync (bag loop)", True),
    "odometry_tolerance_s": (0.1, "largest |odometry stamp - camera set stamp| (s)", True),
    "camera_timeout_s": (0.5, "a camera silent this long is stale (s)", False),
    "odometry_timeout_s": (0.5, "odometry silent this long is reported (s)", False),
    "missing_camera_policy": (
        "skip",
        "stale camera: skip (no output) or blank (blank view, output flagged degraded)",
        False,
    ),
    "base_frame": ("base_link", "ego frame id of the outputs", True),
    "trajectory_frame": (
        "base_link",
        "base_link (ego frame at the input stamp) or odometry (the odometry message's frame)",
        False,
    ),
    "publish_occupancy": (
        True,
        "compute ~/occupancy (only while it has a subscriber)",
        False,
    ),
    "cpu_threads": (
        0,
        "CPU threads for PyTorch and image decoding; 0: one per core (fewer where other "
        "processes keep cores busy, docs/ros-performance.md)",
        True,
    ),
    "fixed_malloc_thresholds": (
        True,
        "fix glibc's malloc thresholds so image buffers come from the heap, not fresh page-"
        "faulting mmaps (docs/ros-performance.md, Page faults)",
        True,
    ),
    "heap_reserve_mib": (
        48,
        "with fixed_malloc_thresholds: free memory written into the heap at start-up, so the "
        "frames' working set is resident before the first set and the memory does not grow "
        "with the input (MiB, 0 to 63; docs/ros-performance.md, Heap reserve)",
        True,
    ),
    "fov_tolerance_deg": (10.0, "warn when a camera's horizontal FOV differs more (deg)", True),
    "diagnostics_period_s": (1.0, "period of the /diagnostics status (s)", True),
    "startup_error_linger_s": (
        3.0,
        "how long a startup error is repeated on /diagnostics before exiting (s)",
        True,
    ),
}

_CHOICES = {
    "image_transport": IMAGE_TRANSPORTS,
    "missing_camera_policy": MISSING_CAMERA_POLICIES,
    "trajectory_frame": TRAJECTORY_FRAMES,
    "dtype": tuple(DTYPES),
}
_POSITIVE = {
    "sync_queue_size",
    "loop_reset_s",
    "odometry_tolerance_s",
    "camera_timeout_s",
    "odometry_timeout_s",
    "fov_tolerance_deg",
    "diagnostics_period_s",
}


def validate_planner_parameter(name: str, value: object) -> str | None:
    """A message naming the parameter and value when it is invalid, else None."""
    if name not in PLANNER_PARAMETERS:
        return None  # use_sim_time and other standard parameters
    default = PLANNER_PARAMETERS[name][0]
    if type(value) is not type(default):
        return f"{name}={value!r} must be a {type(default).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name}={value!r} must be a finite number"
    if name in _CHOICES and value not in _CHOICES[name]:
        return f"{name}={value!r} must be one of {_CHOICES[name]}"
    if name in _POSITIVE and not value > 0:
        return f"{name}={value!r} must be > 0"
    if name in ("sync_slop_s", "startup_error_linger_s", "cpu_threads") and not value >= 0:
        return f"{name}={value!r} must be >= 0"
    if name == "heap_reserve_mib" and not 0 <= value < TRIM_THRESHOLD_BYTES >> 20:
        return f"{name}={value!r} must be >= 0 and < {TRIM_THRESHOLD_BYTES >> 20}"
    if (name.endswith("topic") or name == "base_frame") and not str(value).strip():
        return f"{name} must not be empty"
    return None
