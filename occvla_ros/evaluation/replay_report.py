"""What a recorded replay shows: a video of the replay and a summary table of its published plans.

``occvla replay-report RECORDING.mcap --dataroot D --out DIR`` reads a recording written by
``occvla bag play --record`` (the bag's inputs plus the nodes' outputs) with the independent
``mcap`` reader and writes:

- ``summary.md``: the model's PUBLISHED plans (``/occvla_planner/trajectory``, matched to each
  keyframe's ground truth by stamp, as ``occvla bag play --score`` does) beside the ego-status
  MLP and constant velocity on the same keyframes: L2 and collision at 1 / 2 / 3 s (ST-P3's
  convention) and meta-action accuracy, with the planner's latency percentiles from its last
  ``/diagnostics`` status. The baselines' meta-action is the label their own path earns under the
  dataset's labelling rule (:func:`occvla_ros.data.labels.label_meta_action`).
- ``replay.mp4`` (and ``frame.png``, one frame of it): per plan, the six camera thumbnails with
  the plan projected into CAM_FRONT (through its CameraInfo and ``/tf_static``) and the published
  meta-action written on it, beside a bird's-eye view of the plan, the ground truth and the
  baselines' paths (from the latest keyframe, carried into the current ego frame by ``/odom``)
  over the predicted occupancy when the occupancy node ran (its MarkerArray).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from occvla_ros.constants import (
    CAMERA_NAMES,
    GROUND_TRUTH_TOPIC,
    NUM_WAYPOINTS,
    ODOMETRY_TOPIC,
    camera_image_topic,
    camera_info_topic,
)
from occvla_ros.errors import ConfigError, DataError
from occvla_ros.geometry import quat_wxyz_to_matrix, quat_wxyz_to_yaw

logger = logging.getLogger(__name__)

PLAN_TOPIC = "/occvla_planner/trajectory"
META_ACTION_TOPIC = "/occvla_planner/meta_action"
OCCUPANCY_TOPIC = "/occvla_occupancy/markers"
DIAGNOSTICS_TOPIC = "/diagnostics"
CAMERA_OF_IMAGE_TOPIC = {camera_image_topic(c): c for c in CAMERA_NAMES}
CAMERA_OF_INFO_TOPIC = {camera_info_topic(c): c for c in CAMERA_NAMES}
MATCH_TOLERANCE_NS = 50_000_000  # as occvla bag play --score
METHODS = ("model", "ego_mlp", "constant_velocity")
METHOD_NAMES = {"model": "OccVLA (published plans)", "ego_mlp": "ego-status MLP",
                "constant_velocity": "constant velocity"}  # fmt: skip
# BGR colours of the paths in the video.
COLOURS = {"model": (0, 215, 255), "gt": (80, 200, 60), "ego_mlp": (230, 140, 40),
           "constant_velocity": (160, 160, 160)}  # fmt: skip
THUMB_SIZE = (320, 180)  # width, height of one camera thumbnail
BEV_SIZE = 360  # pixels, square
BEV_RANGE_M = 40.0  # metres from the BEV's top to its bottom edge
BEV_EGO_ROW = 0.8  # the ego sits this far down the BEV, so most of it looks ahead
VIDEO_FPS = 12.0  # the bag's camera rate: one frame per camera set
# Camera thumbnails laid out as on the car, front row then back row.
LAYOUT = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
          ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))  # fmt: skip


@dataclass
class Recording:
    """The decoded messages of a replay recording that the report uses, in log-time order."""

    images: dict[str, list[tuple[int, bytes]]] = field(default_factory=lambda: defaultdict(list))
    intrinsics: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> K [3, 3]
    camera_from_base: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    odometry: list[tuple[int, float, float, float]] = field(default_factory=list)  # ns, x, y, yaw
    ground_truth: dict[int, np.ndarray] = field(default_factory=dict)  # stamp -> [N, 2]
    plans: list[tuple[int, np.ndarray]] = field(default_factory=list)  # stamp, [6, 2]
    meta_actions: list[str] = field(default_factory=list)  # one per plan, in the same order
    occupancy: dict[int, np.ndarray] = field(default_factory=dict)  # stamp -> [N, 5] x y b g r
    diagnostics: list[dict[str, str]] = field(default_factory=list)  # planner status values


def _stamp(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _wxyz(q) -> tuple[float, float, float, float]:
    return (q.w, q.x, q.y, q.z)


def read_recording(path: str | Path) -> Recording:
    """The report's messages from an MCAP recording; DataError when it is not one."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    path = Path(path)
    if not path.is_file():
        raise DataError(f"no recording at {path}")
    recording = Recording()
    try:
        with path.open("rb") as stream:
            reader = make_reader(stream, decoder_factories=[DecoderFactory()])
            for _, channel, _, decoded in reader.iter_decoded_messages(log_time_order=True):
                _add(recording, channel.topic, decoded)
    except (McapError, ValueError, EOFError) as error:
        raise DataError(f"cannot read the recording {path}: {error}") from error
    if not recording.plans:
        raise DataError(f"{path} holds no plans on {PLAN_TOPIC}: was the planner running?")
    return recording


def _add(recording: Recording, topic: str, decoded) -> None:
    if topic in CAMERA_OF_IMAGE_TOPIC:
        recording.images[CAMERA_OF_IMAGE_TOPIC[topic]].append(
            (_stamp(decoded.header), bytes(decoded.data))
        )
    elif topic in CAMERA_OF_INFO_TOPIC and CAMERA_OF_INFO_TOPIC[topic] not in recording.intrinsics:
        recording.intrinsics[CAMERA_OF_INFO_TOPIC[topic]] = np.reshape(
            np.asarray(decoded.k), (3, 3)
        )
    elif topic == "/tf_static":
        for transform in decoded.transforms:
            t = transform.transform
            recording.camera_from_base[transform.child_frame_id] = (
                np.array([t.translation.x, t.translation.y, t.translation.z]),
                quat_wxyz_to_matrix(_wxyz(t.rotation)),
            )
    elif topic == ODOMETRY_TOPIC:
        pose = decoded.pose.pose
        recording.odometry.append(
            (
                _stamp(decoded.header),
                pose.position.x,
                pose.position.y,
                quat_wxyz_to_yaw(_wxyz(pose.orientation)),
            )
        )
    elif topic == GROUND_TRUTH_TOPIC:
        recording.ground_truth[_stamp(decoded.header)] = _path_points(decoded)
    elif topic == PLAN_TOPIC:
        recording.plans.append((_stamp(decoded.header), _path_points(decoded)))
    elif topic == META_ACTION_TOPIC:
        recording.meta_actions.append(decoded.data)
    elif topic == OCCUPANCY_TOPIC:
        if decoded.markers:
            recording.occupancy[_stamp(decoded.markers[0].header)] = _marker_points(decoded)
    elif topic == DIAGNOSTICS_TOPIC:
        for status in decoded.status:
            if status.name.endswith(": planner"):
                recording.diagnostics.append({kv.key: kv.value for kv in status.values})


def _path_points(path) -> np.ndarray:
    return np.array(
        [(p.pose.position.x, p.pose.position.y) for p in path.poses], dtype=np.float64
    ).reshape(-1, 2)


def _marker_points(markers) -> np.ndarray:
    """x, y, b, g, r [N, 5] of the occupancy node's cube lists (one colour per class)."""
    rows = [
        np.array([(p.x, p.y, m.color.b * 255, m.color.g * 255, m.color.r * 255) for p in m.points])
        for m in markers.markers
        if m.points
    ]
    return np.vstack(rows) if rows else np.zeros((0, 5))


# ---- the summary table ----


@dataclass(frozen=True)
class Keyframe:
    """A scored keyframe: its record and every method's waypoints [6, 2] and meta-action."""

    record: object  # KeyframeRecord
    predictions: dict[str, np.ndarray]
    meta_actions: dict[str, str]


def match_keyframes(recording: Recording, records, ego_baseline) -> list[Keyframe]:
    """The keyframes with a full future whose published plan lies within the tolerance."""
    from occvla_ros.data.labels import label_meta_action
    from occvla_ros.evaluation.baselines import constant_velocity
    from occvla_ros.evaluation.sources import fill_past

    stamps = np.array([stamp for stamp, _ in recording.plans], dtype=np.int64)
    keyframes = []
    for record in records:
        if not record.future_mask.all():
            continue
        nearest = int(np.argmin(np.abs(stamps - record.timestamp_us * 1000)))
        if abs(stamps[nearest] - record.timestamp_us * 1000) > MATCH_TOLERANCE_NS:
            continue
        ego = record.ego_state[None]
        past = fill_past(record.past_ego[None], record.past_mask[None])
        predictions = {
            "model": recording.plans[nearest][1],
            "ego_mlp": ego_baseline.predict(ego, past, commands=[record.command])[0],
            "constant_velocity": constant_velocity(ego)[0],
        }
        full = np.ones(NUM_WAYPOINTS, dtype=bool)
        meta_actions = {
            method: label_meta_action(waypoints, full, float(record.ego_state[0])).text
            for method, waypoints in predictions.items()
            if method != "model"
        }
        if nearest < len(recording.meta_actions):
            meta_actions["model"] = recording.meta_actions[nearest]
        keyframes.append(Keyframe(record, predictions, meta_actions))
    return keyframes


def summary_table(keyframes: list[Keyframe], dataroot: Path, version: str) -> dict:
    """{method: {"l2": {1s, 2s, 3s, avg}, "collision": {...}, "meta_action": accuracy}}."""
    from occvla_ros.evaluation.evaluator import Evaluator
    from occvla_ros.evaluation.samples import NuScenesContext
    from occvla_ros.meta_action import MetaActionParseError, MetaActionVocabulary

    evaluator = Evaluator(METHODS, conventions=("stp3",), figure_samples=1)
    context = NuScenesContext(dataroot, version)
    vocabulary = MetaActionVocabulary()
    correct = defaultdict(int)
    for keyframe in keyframes:
        record = keyframe.record
        evaluator.add_sample(
            context(record.token), record.future_ego, record.future_mask, keyframe.predictions
        )
        for method, text in keyframe.meta_actions.items():
            try:
                correct[method] += vocabulary.parse(text) == vocabulary.parse(record.meta_action)
            except MetaActionParseError:
                logger.warning("unparsable meta-action %r of %s: counted wrong", text, method)
    planning = evaluator.results()["planning"]
    return {
        method: {
            "l2": planning[method]["stp3"]["table"]["l2"],
            "collision": planning[method]["stp3"]["table"]["collision"],
            "meta_action": correct[method] / len(keyframes) if keyframes else math.nan,
        }
        for method in METHODS
    }


def summary_markdown(
    table: dict, keyframes: int, scorable: int, recording: Recording, ego_label: str
) -> str:
    horizons = ("1s", "2s", "3s")
    names = {**METHOD_NAMES, "ego_mlp": ego_label}  # what the baseline MLP reads
    lines = [
        "# Replay summary",
        "",
        f"{keyframes} of {scorable} keyframes with a full 3 s ground truth scored, on the plans "
        f"the planner published ({len(recording.plans)} plans). L2 (m) and collision rate (%) "
        "at 1 / 2 / 3 s, ST-P3's convention; meta-action: joint (speed, direction) accuracy.",
        "",
        "| method | L2 1s | L2 2s | L2 3s | collision 1s | collision 2s | collision 3s "
        "| meta-action |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, row in table.items():
        l2 = " | ".join(f"{row['l2'][h]:.3f}" for h in horizons)
        collision = " | ".join(f"{100 * row['collision'][h]:.2f}" for h in horizons)
        lines.append(f"| {names[method]} | {l2} | {collision} | {100 * row['meta_action']:.1f} % |")
    if recording.diagnostics:
        last = recording.diagnostics[-1]
        lines += [
            "",
            "Planner latency from its last `/diagnostics` status (ms, p50 / p90 / p99):",
            "",
            f"- inference: {last.get('inference ms', 'n/a')}",
            f"- end-to-end (set complete to plan published): {last.get('end-to-end ms', 'n/a')}",
            f"- plans {last.get('plans', 'n/a')}, dropped sets {last.get('dropped_sets', 'n/a')}, "
            f"device {last.get('device', 'n/a')}, CPU threads {last.get('cpu threads', 'n/a')}",
        ]
    return "\n".join(lines) + "\n"


# ---- the video ----


def _pose_at(odometry: list, stamp_ns: int) -> tuple[float, float, float]:
    """The odometry pose (x, y, yaw) nearest in stamp."""
    stamps = np.array([o[0] for o in odometry])
    return odometry[int(np.argmin(np.abs(stamps - stamp_ns)))][1:]


def _carry(points: np.ndarray, source: tuple, target: tuple) -> np.ndarray:
    """Ego-frame points [N, 2] at pose ``source`` -> the ego frame at pose ``target``."""
    (sx, sy, syaw), (tx, ty, tyaw) = source, target
    c, s = math.cos(syaw), math.sin(syaw)
    world = points @ np.array([[c, s], [-s, c]]) + (sx, sy)
    c, s = math.cos(tyaw), math.sin(tyaw)
    return (world - (tx, ty)) @ np.array([[c, -s], [s, c]])


def _project(points: np.ndarray, intrinsic, camera_from_base) -> np.ndarray:
    """Ground points [N, 2] in base_link -> pixels [M, 2] of those in front of the camera."""
    translation, rotation = camera_from_base
    xyz = np.column_stack([points, np.zeros(len(points))])
    in_camera = (xyz - translation) @ rotation  # R^T (p - t), row-wise
    ahead = in_camera[:, 2] > 0.5
    pixels = in_camera[ahead] @ np.asarray(intrinsic).T
    return pixels[:, :2] / pixels[:, 2:]


def _bev_pixel(points: np.ndarray) -> np.ndarray:
    """Ego (x forward, y left) metres -> BEV pixels, x up the image, the ego low in the middle."""
    scale = BEV_SIZE / BEV_RANGE_M
    return np.column_stack(
        [BEV_SIZE / 2 - points[:, 1] * scale, BEV_EGO_ROW * BEV_SIZE - points[:, 0] * scale]
    )


class _FrameDrawer:
    def __init__(self, recording: Recording, keyframes: list[Keyframe]) -> None:
        self.recording = recording
        self.keyframes = {k.record.timestamp_us * 1000: k for k in keyframes}
        self.keyframe_stamps = np.array(sorted(self.keyframes), dtype=np.int64)
        self.image_stamps = {
            camera: np.array([s for s, _ in images], dtype=np.int64)
            for camera, images in recording.images.items()
        }

    def draw(self, index: int) -> np.ndarray:
        import cv2

        stamp, plan = self.recording.plans[index]
        meta_action = (
            self.recording.meta_actions[index] if index < len(self.recording.meta_actions) else ""
        )
        rows = []
        for row in LAYOUT:
            rows.append(np.hstack([self._thumbnail(camera, stamp, plan, meta_action)
                                   for camera in row]))  # fmt: skip
        cameras = np.vstack(rows)
        bev = self._bev(stamp, plan)
        bev = cv2.copyMakeBorder(bev, 0, cameras.shape[0] - BEV_SIZE, 0, 0, cv2.BORDER_CONSTANT)
        return np.hstack([cameras, bev])

    def _thumbnail(self, camera: str, stamp: int, plan, meta_action: str) -> np.ndarray:
        import cv2

        width, height = THUMB_SIZE
        stamps = self.image_stamps.get(camera)
        canvas = np.zeros((height, width, 3), np.uint8)
        if stamps is None or not len(stamps) or stamps[0] > stamp:
            return canvas
        jpeg = self.recording.images[camera][int(np.searchsorted(stamps, stamp, "right")) - 1][1]
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return canvas
        scale_x, scale_y = width / image.shape[1], height / image.shape[0]
        canvas = cv2.resize(image, THUMB_SIZE, interpolation=cv2.INTER_AREA)
        if camera == "CAM_FRONT" and camera in self.recording.intrinsics:
            pixels = _project(
                plan, self.recording.intrinsics[camera], self.recording.camera_from_base[camera]
            )
            pixels = np.round(pixels * (scale_x, scale_y)).astype(np.int32)
            cv2.polylines(canvas, [pixels.reshape(-1, 1, 2)], False, COLOURS["model"], 2)
            for point in pixels:
                cv2.circle(canvas, tuple(int(v) for v in point), 3, COLOURS["model"], -1)
            _text(canvas, meta_action, (6, height - 10), 0.5)
        _text(canvas, camera, (6, 16), 0.45)
        return canvas

    def _bev(self, stamp: int, plan: np.ndarray) -> np.ndarray:
        import cv2

        bev = np.full((BEV_SIZE, BEV_SIZE, 3), 40, np.uint8)
        occupancy = self.recording.occupancy.get(stamp)
        if occupancy is not None and len(occupancy):
            pixels = _bev_pixel(occupancy[:, :2]).astype(np.int32)
            inside = ((pixels >= 0) & (pixels < BEV_SIZE)).all(axis=1)
            bev[pixels[inside, 1], pixels[inside, 0]] = occupancy[inside, 2:].astype(np.uint8)
        lines = {}
        # The ground truth and the baselines of the latest keyframe, carried to this instant.
        latest = np.searchsorted(self.keyframe_stamps, stamp, "right") - 1
        if latest >= 0 and self.recording.odometry:
            key_stamp = int(self.keyframe_stamps[latest])
            keyframe = self.keyframes[key_stamp]
            source = _pose_at(self.recording.odometry, key_stamp)
            target = _pose_at(self.recording.odometry, stamp)
            lines["gt"] = _carry(keyframe.record.future_ego, source, target)
            for method in ("ego_mlp", "constant_velocity"):
                lines[method] = _carry(keyframe.predictions[method], source, target)
        lines["model"] = plan
        for name, points in lines.items():
            pixels = _bev_pixel(np.vstack([np.zeros((1, 2)), points])).astype(np.int32)
            width = 4 if name == "gt" else 2  # drawn first and wider: visible under the others
            cv2.polylines(bev, [pixels.reshape(-1, 1, 2)], False, COLOURS[name], width)
            for point in pixels[1:]:
                cv2.circle(bev, tuple(int(v) for v in point), width, COLOURS[name], -1)
        ego = _bev_pixel(np.array([[1.0, 0.9], [1.0, -0.9], [-3.0, -0.9], [-3.0, 0.9]]))
        cv2.fillPoly(bev, [ego.astype(np.int32).reshape(-1, 1, 2)], (255, 255, 255))
        legend = (("model", "OccVLA"), ("gt", "ground truth"), ("ego_mlp", "ego MLP"),
                  ("constant_velocity", "const. velocity"))  # fmt: skip
        for row, (name, label) in enumerate(legend):
            _text(bev, label, (8, 18 + 16 * row), 0.42, COLOURS[name])
        return bev


def _text(image, text: str, origin, scale: float, colour=(255, 255, 255)) -> None:
    import cv2

    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def write_video(recording: Recording, keyframes: list[Keyframe], out_dir: Path) -> Path:
    """``replay.mp4`` (one frame per plan) and ``frame.png`` (the frame of the middle keyframe)."""
    import cv2

    drawer = _FrameDrawer(recording, keyframes)
    first = drawer.draw(0)
    path = out_dir / "replay.mp4"
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (width, height))
    if not writer.isOpened():
        raise DataError(f"OpenCV cannot write an MP4 video at {path}")
    plan_stamps = [stamp for stamp, _ in recording.plans]
    shown = keyframes[len(keyframes) // 2].record.timestamp_us * 1000 if keyframes else None
    shown_index = int(np.argmin(np.abs(np.array(plan_stamps) - shown))) if shown is not None else 0
    try:
        for index in range(len(recording.plans)):
            frame = first if index == 0 else drawer.draw(index)
            writer.write(frame)
            if index == shown_index:
                cv2.imwrite(str(out_dir / "frame.png"), frame)
    finally:
        writer.release()
    return path


# ---- `occvla replay-report` ----


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", type=Path, help="MCAP file from occvla bag play --record")
    parser.add_argument("--dataroot", required=True, type=Path, help="the replayed dataset")
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument(
        "--baseline-checkpoint", required=True, type=Path,
        help="ego-status MLP from `occvla train-ego-baseline`",
    )  # fmt: skip
    parser.add_argument("--out", required=True, type=Path, help="directory for the report")


def run(args: argparse.Namespace) -> int:
    from occvla_ros.data.nuscenes_loader import load_records
    from occvla_ros.evaluation.baselines import EgoStatusBaseline

    if not args.baseline_checkpoint.is_dir():
        raise ConfigError(f"baseline checkpoint {args.baseline_checkpoint} does not exist")
    ego_baseline = EgoStatusBaseline.load(args.baseline_checkpoint)
    recording = read_recording(args.recording)
    gt_stamps = set(recording.ground_truth)
    records = [
        r
        for r in load_records(args.dataroot, args.version, "all")
        if r.timestamp_us * 1000 in gt_stamps
    ]
    if not records:
        raise DataError(f"no keyframe of {args.dataroot} has a ground truth in {args.recording}")
    scorable = sum(bool(r.future_mask.all()) for r in records)
    keyframes = match_keyframes(recording, records, ego_baseline)
    table = summary_table(keyframes, args.dataroot, args.version)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = summary_markdown(table, len(keyframes), scorable, recording, ego_baseline.label)
    (args.out / "summary.md").write_text(summary)
    video = write_video(recording, keyframes, args.out)
    print(summary)
    print(f"wrote {args.out / 'summary.md'}, {video} and {args.out / 'frame.png'}")
    return 0
