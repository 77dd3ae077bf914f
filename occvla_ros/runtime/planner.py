"""The Planner: camera frames + ego state -> meta-action, waypoints (+ occupancy), no ROS.

Views: the six frames are decoded and resized on a small pool of worker threads (OpenCV releases
the GIL), and a caller that receives cameras one by one, like the ROS node, can start each view
with :meth:`Planner.prepare_view` as it arrives, so decoding overlaps the wait for the others.

Device/dtype: ``device="auto"`` picks CUDA with bfloat16 when a GPU is present, else CPU with
float32 (CPU bf16 matmuls are slower than fp32 on most CPUs). An explicit ``"cpu"`` or
``"cuda:N"`` is honoured, with a ConfigError when that device does not exist.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from occvla_ros.constants import (
    CAMERA_NAMES,
    FREE_CLASS,
    NUM_CAMERAS,
    OCC_RANGE_MIN,
    OCC_VOXEL_SIZE,
)
from occvla_ros.data.images import FRAME_ENCODINGS, decode_jpeg, frame_to_rgb, normalize
from occvla_ros.data.labels import GO_STRAIGHT
from occvla_ros.errors import ConfigError, DataError
from occvla_ros.meta_action import MetaAction
from occvla_ros.model.device import resolve_device

logger = logging.getLogger(__name__)

JPEG = "jpeg"
ENCODINGS = (*FRAME_ENCODINGS, JPEG)
DTYPES = {
    "auto": None,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

# Horizontal field of view of the nuScenes rig the checkpoints are trained on (fx ~1260 px for
# five cameras and ~809 px for CAM_BACK, at 1600 px width).
NUSCENES_HFOV_DEG = {name: 64.5 for name in CAMERA_NAMES} | {"CAM_BACK": 89.3}


@dataclass(frozen=True)
class CameraFrame:
    """One camera image: a decoded uint8 array (rgb8/bgr8/mono8) or JPEG bytes (``"jpeg"``)."""

    data: np.ndarray | bytes
    encoding: str


@dataclass(frozen=True)
class PlanTimings:
    preprocess_ms: float
    inference_ms: float
    total_ms: float


@dataclass(frozen=True)
class Plan:
    meta_action: MetaAction
    waypoints: np.ndarray  # float32 [6, 2], ego frame (x forward, y left), metres
    occupancy: np.ndarray | None  # uint8 [200, 200, 16] Occ3D classes, when asked
    timings: PlanTimings
    visual_states: torch.Tensor | None = None  # for Planner.decode_occupancy


def select_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; expected one of {tuple(DTYPES)}")
    chosen = resolve_device(device)
    if DTYPES[dtype] is not None:
        return chosen, DTYPES[dtype]
    return chosen, torch.bfloat16 if chosen.type == "cuda" else torch.float32


def frame_to_model_rgb(frame: CameraFrame, size: int, name: str) -> np.ndarray:
    """RGB uint8 [size, size, 3]; DataError naming the camera on bad data."""
    if frame.encoding not in ENCODINGS:
        raise DataError(f"{name}: unsupported encoding {frame.encoding!r}; expected {ENCODINGS}")
    if frame.encoding == JPEG:  # decode_jpeg's errors name the camera already
        return frame_to_rgb(decode_jpeg(bytes(frame.data), size, name), "bgr8", size)
    try:
        return frame_to_rgb(frame.data, frame.encoding, size)
    except DataError as error:
        raise DataError(f"{name}: {error}") from error


def occupancy_points(occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Occupied voxel centres float32 [N, 3] (ego frame) and their classes uint8 [N]."""
    indices = np.argwhere(occupancy != FREE_CLASS)  # [N, 3]
    centres = np.asarray(OCC_RANGE_MIN, np.float32) + OCC_VOXEL_SIZE * (indices + 0.5)
    classes = occupancy[indices[:, 0], indices[:, 1], indices[:, 2]].astype(np.uint8)
    return centres.astype(np.float32), classes


def horizontal_fov_deg(fx: float, width: int) -> float:
    return math.degrees(2.0 * math.atan2(width / 2.0, fx))


class Planner:
    """Wraps a loaded OccVLA checkpoint.

    Call ``plan`` from one thread; ``prepare_view`` may be called from any thread.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        preset: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        *,
        warmup: bool = True,
        cpu_threads: int = 0,
    ) -> None:
        """``cpu_threads`` > 0 sets PyTorch's CPU threads for the whole process and caps the
        decoding workers at it; 0 keeps one per core. Fewer threads than cores pay where other
        processes keep cores busy: PyTorch's OpenMP threads then wait for descheduled peers
        (benchmarks/cpu_threads.py)."""
        from occvla_ros.model.checkpoint import load_checkpoint

        if not isinstance(cpu_threads, int) or cpu_threads < 0:
            raise ConfigError(f"cpu_threads must be an integer >= 0, got {cpu_threads!r}")
        if cpu_threads:
            torch.set_num_threads(cpu_threads)
        self.device, self.dtype = select_device(device, dtype)
        self.model = load_checkpoint(
            checkpoint, device=self.device, dtype=self.dtype, expected_preset=preset or None
        )
        self.config = self.model.config
        self.image_size = self.config.image_size
        self.checkpoint = Path(checkpoint)
        self.uses_command = self.model.uses_command
        self.num_past = self.config.planning.num_past
        self._view_workers = ThreadPoolExecutor(
            max_workers=min(NUM_CAMERAS, cpu_threads or os.cpu_count() or 1),
            thread_name_prefix="occvla_views",
        )
        logger.info(
            "planner: %s model from %s on %s (%s), %d CPU threads",
            self.config.preset,
            checkpoint,
            self.device,
            str(self.dtype).removeprefix("torch."),
            torch.get_num_threads(),
        )
        if warmup:
            blank = CameraFrame(np.zeros((self.image_size, self.image_size, 3), np.uint8), "rgb8")
            command = GO_STRAIGHT if self.uses_command else None
            self.plan([blank] * NUM_CAMERAS, (0.0, 0.0, 0.0), command=command)

    def close(self) -> None:
        """Stop the decoding workers; views not yet started are cancelled."""
        self._view_workers.shutdown(wait=True, cancel_futures=True)

    @property
    def has_occupancy(self) -> bool:
        return self.model.occupancy is not None

    def prepare_view(self, name: str, frame: CameraFrame) -> Future[np.ndarray]:
        """Start decoding and resizing one camera's frame on a worker thread.

        The future's result is RGB uint8 [S, S, 3]; it raises DataError naming the camera on bad
        data. Pass the future to ``plan`` in place of the frame, or cancel it when the view is no
        longer needed: the workers take views in submission order, so views nobody will use
        delay the ones that are.
        """
        return self._view_workers.submit(frame_to_model_rgb, frame, self.image_size, name)

    def preprocess(
        self,
        frames: Sequence[CameraFrame | Future[np.ndarray]],
        camera_order: Sequence[str] = CAMERA_NAMES,
    ) -> torch.Tensor:
        """float32 [1, 6, 3, S, S] in the model's camera order, from frames or prepared views."""
        if len(frames) != NUM_CAMERAS or sorted(camera_order) != sorted(CAMERA_NAMES):
            raise DataError(
                f"expected {NUM_CAMERAS} frames for cameras {CAMERA_NAMES}, got {len(frames)} "
                f"frames for {list(camera_order)}"
            )
        views = {
            name: frame if isinstance(frame, Future) else self.prepare_view(name, frame)
            for name, frame in zip(camera_order, frames, strict=True)
        }
        return normalize([views[name].result() for name in CAMERA_NAMES]).unsqueeze(0)

    def plan(
        self,
        frames: Sequence[CameraFrame | Future[np.ndarray]]
        | Mapping[str, CameraFrame | Future[np.ndarray]],
        ego_state: Sequence[float],
        *,
        camera_order: Sequence[str] = CAMERA_NAMES,
        command: str | None = None,
        past_trajectory: Sequence[Sequence[float]] | None = None,
        past_mask: Sequence[bool] | None = None,
        with_occupancy: bool = False,
    ) -> Plan:
        """Frames or prepared views in ``camera_order`` (or name -> either); ego = (speed, accel,
        yaw rate); ``past_trajectory`` [P, 2] the previous keyframes' positions in the current
        ego frame, oldest first, with ``past_mask`` [P] saying which exist (None: no history)."""
        start = time.perf_counter()
        if isinstance(frames, Mapping):
            camera_order, frames = list(frames), list(frames.values())
        ego = np.asarray(ego_state, dtype=np.float64)
        if ego.shape != (3,) or not np.isfinite(ego).all():
            raise DataError(
                f"ego state must be 3 finite numbers (speed, acceleration, yaw rate), "
                f"got {ego_state}"
            )
        if with_occupancy and not self.has_occupancy:
            raise ConfigError(f"checkpoint {self.checkpoint} has no occupancy branch")
        past = self._past_tensors(past_trajectory, past_mask)
        pixel_values = self.preprocess(frames, camera_order).to(self.device, self.dtype)
        ego_tensor = torch.from_numpy(ego).to(self.device, self.dtype).unsqueeze(0)  # [1, 3]
        preprocessed = time.perf_counter()
        commands = [command] if (command and self.uses_command) else None
        prediction = self.model.predict(
            pixel_values,
            ego_tensor,
            commands=commands,
            with_occupancy=with_occupancy,
            past_trajectory=None if past is None else past[0],
            past_mask=None if past is None else past[1],
        )
        waypoints = prediction.waypoints[0].float().cpu().numpy()  # [6, 2]
        occupancy = None
        if prediction.occupancy is not None:
            occupancy = prediction.occupancy[0].cpu().numpy()  # [200, 200, 16]
        done = time.perf_counter()
        if not np.isfinite(waypoints).all():
            raise DataError("the model produced non-finite waypoints (degraded checkpoint?)")
        return Plan(
            meta_action=prediction.meta_actions[0],
            waypoints=waypoints,
            occupancy=occupancy,
            timings=PlanTimings(
                preprocess_ms=(preprocessed - start) * 1e3,
                inference_ms=(done - preprocessed) * 1e3,
                total_ms=(done - start) * 1e3,
            ),
            visual_states=prediction.visual,
        )

    def decode_occupancy(self, plan: Plan) -> np.ndarray:
        """uint8 [200, 200, 16] Occ3D classes for a plan made without them: a caller can publish
        the plan first and the occupancy after (the branch costs as much as the plan on a CPU)."""
        if not self.has_occupancy:
            raise ConfigError(f"checkpoint {self.checkpoint} has no occupancy branch")
        return self.model.predict_occupancy(plan.visual_states)[0].cpu().numpy()

    def _past_tensors(self, past_trajectory, past_mask) -> tuple[torch.Tensor, torch.Tensor] | None:
        """([1, P, 2], bool [1, P]) on the model's device, or None without a history."""
        if past_trajectory is None:
            return None
        past = np.asarray(past_trajectory, dtype=np.float64)
        mask = np.ones(len(past), bool) if past_mask is None else np.asarray(past_mask, bool)
        if past.shape != (self.num_past, 2) or mask.shape != (self.num_past,):
            raise DataError(
                f"past trajectory must be [{self.num_past}, 2] with a [{self.num_past}] mask, got "
                f"{list(past.shape)} and {list(mask.shape)}"
            )
        if not np.isfinite(past[mask]).all():
            raise DataError(f"past trajectory must be finite where it exists, got {past.tolist()}")
        past = np.where(mask[:, None], past, 0.0)
        return (
            torch.from_numpy(past).to(self.device, self.dtype).unsqueeze(0),
            torch.from_numpy(mask).to(self.device).unsqueeze(0),
        )
