"""Open-loop planning metrics (L2 and collision) under the three published conventions.

One per-step core, :func:`step_metrics`, gives for every future step ``t`` of a sample

- ``L2[t] = || pred[t] - gt[t] ||`` in metres (absolute positions), 0 where the GT step is missing;
- ``collision[t]``: the ego footprint at ``pred[t]`` covers an occupied cell of the agent occupancy
  of step ``t`` AND the footprint at ``gt[t]`` does not. Steps where the GT itself collides are
  removed from the numerator only; the sample and step stay in every denominator.

Each :class:`PlanningConvention` then reduces these per-step values over samples; the presets
reproduce the public implementations, one table each (see ``docs/evaluation.md``):

- ``stp3`` (ST-P3, VAD, AD-MLP): LiDAR frame (x right, y forward); L2 and collision at k s are the
  per-sample means over steps 1..2k, averaged over valid samples (all 6 future keyframes exist);
  axis-aligned footprint; obstacles: vehicles and pedestrians annotated at the current keyframe,
  drawn at their future poses; 200 x 200 grid of 0.5 m drawn with the y axis up the image.
- ``uniad`` and ``uniad_stp3``: UniAD's code, which has one per-step definition and two
  ``planning_evaluation_strategy`` values: ``uniad`` reports the value AT step 2k, ``stp3`` (our
  ``uniad_stp3``) the mean of steps 1..2k; both sum the per-step values over every sample and
  divide by the sample count. LiDAR frame; a missing future step contributes 0 to the L2 sum and
  its frame is drawn fully occupied, so the GT collides there and the step never counts as a
  collision. Obstacles: every vehicle box of each future frame (UniAD's configurations keep
  invisible boxes: ``filter_invisible=False``). Their sample set (``sample_set``) is ``"all"``, as
  in UniAD's code; ``"valid"`` reduces the same per-step values over the ST-P3 valid samples
  only (all 6 future keyframes exist), to compare with tables over that set.
- ``omnidrive`` (OmniDrive, BEV-Planner): ego frame (x forward, y left); L2 as ST-P3; collision at
  k s = fraction of valid samples with ANY collision in steps 1..2k; 1000 x 1000 grid of 0.1 m;
  footprint centred 0.5 + 0.985793 m ahead and rotated to the step heading (0 under 1 m);
  vehicles annotated at the current keyframe only.

Columns "1s / 2s / 3s" read horizons of 2, 4, 6 steps; "avg" is the mean of those three columns.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from occvla_ros.constants import NUM_WAYPOINTS, WAYPOINT_DT_S
from occvla_ros.errors import ConfigError
from occvla_ros.evaluation.rasterize import (
    EGO_FRAME,
    FORWARD_AXIS,
    LIDAR_FRAME,
    BevGrid,
    EgoFootprint,
    FutureBoxes,
    footprint_cells,
    footprint_offsets,
    rasterize_boxes,
)

logger = logging.getLogger(__name__)

HORIZONS_S: tuple[int, ...] = (1, 2, 3)
TABLE_COLUMNS: tuple[str, ...] = ("1s", "2s", "3s", "avg")

# Reductions of per-step values [S, T] to one value per horizon.
MEAN_UNTIL = "mean_until"  # per sample the mean over steps 1..h, then the mean over samples
AT_STEP = "at_step"  # the value at step h summed over samples / number of samples
ANY_UNTIL = "any_until"  # per sample 1 if any of steps 1..h, then the mean over samples
REDUCTIONS = (MEAN_UNTIL, AT_STEP, ANY_UNTIL)
SAMPLE_SETS = ("valid", "all")
AGENT_SOURCES = ("tracked", "all")

# nuScenes category-name prefixes of the obstacles each public implementation draws.
VEHICLE_CATEGORIES: tuple[str, ...] = ("vehicle.",)
VEHICLE_AND_PEDESTRIAN_CATEGORIES: tuple[str, ...] = ("vehicle.", "human.pedestrian.")
# UniAD keeps the 7 vehicle detection classes; ambulances and police cars map to no class.
UNIAD_VEHICLE_CATEGORIES: tuple[str, ...] = (
    "vehicle.car",
    "vehicle.truck",
    "vehicle.bus.",
    "vehicle.construction",
    "vehicle.trailer",
    "vehicle.motorcycle",
    "vehicle.bicycle",
)


@dataclass(frozen=True)
class PlanningConvention:
    """How per-step L2/collision values are computed and reduced; see the module docstring."""

    name: str
    frame: str
    grid: BevGrid
    footprint: EgoFootprint
    agent_categories: tuple[str, ...]
    agent_source: str  # "tracked": agents of the current keyframe; "all": every future box
    min_visibility: int  # boxes with a known visibility level below this are not drawn
    beyond_scene_occupied: bool  # a step past the scene end is a fully occupied frame
    sample_set: str  # "valid": all future steps exist; "all": every sample
    l2_reduction: str
    collision_reduction: str

    def __post_init__(self) -> None:
        checks = {
            "frame": (self.frame, tuple(FORWARD_AXIS)),
            "agent_source": (self.agent_source, AGENT_SOURCES),
            "sample_set": (self.sample_set, SAMPLE_SETS),
            "l2_reduction": (self.l2_reduction, (MEAN_UNTIL, AT_STEP)),
            "collision_reduction": (self.collision_reduction, REDUCTIONS),
        }
        for field_name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ConfigError(
                    f"planning convention {field_name}={value!r}; use one of {allowed}"
                )

    @property
    def per_step_identity(self) -> tuple:
        """The fields the per-step values depend on; conventions sharing it differ only in how
        those values are reduced over samples and steps, so they can share one computation."""
        return (
            self.frame,
            self.grid,
            self.footprint,
            self.agent_categories,
            self.agent_source,
            self.min_visibility,
            self.beyond_scene_occupied,
        )

    @property
    def description(self) -> str:
        return (
            f"{self.name}: {self.frame} frame; L2 {self.l2_reduction}; collision "
            f"{self.collision_reduction}; {self.sample_set} samples; grid {self.grid.size}x"
            f"{self.grid.size} at {self.grid.resolution} m; footprint "
            f"{'rotated' if self.footprint.rotate_with_heading else 'axis-aligned'}, "
            f"{self.footprint.forward_offset:g} m ahead; agents {self.agent_source} "
            f"{'/'.join(self.agent_categories)}"
        )


# UniAD's planning_evaluation_strategy="uniad": the value at step 2k.
_UNIAD = PlanningConvention(
    name="uniad",
    frame=LIDAR_FRAME,
    grid=BevGrid(bound=50.0, resolution=0.5),
    footprint=EgoFootprint(),
    agent_categories=UNIAD_VEHICLE_CATEGORIES,
    agent_source="all",
    min_visibility=0,
    beyond_scene_occupied=True,
    sample_set="all",
    l2_reduction=AT_STEP,
    collision_reduction=AT_STEP,
)

PRESETS: dict[str, PlanningConvention] = {
    "stp3": PlanningConvention(
        name="stp3",
        frame=LIDAR_FRAME,
        grid=BevGrid(bound=50.0, resolution=0.5, flip_rows=True),
        footprint=EgoFootprint(),
        agent_categories=VEHICLE_AND_PEDESTRIAN_CATEGORIES,
        agent_source="tracked",
        min_visibility=0,
        beyond_scene_occupied=False,
        sample_set="valid",
        l2_reduction=MEAN_UNTIL,
        collision_reduction=MEAN_UNTIL,
    ),
    "uniad": _UNIAD,
    # UniAD's planning_evaluation_strategy="stp3": the same per-step values, reduced as ST-P3.
    "uniad_stp3": dataclasses.replace(
        _UNIAD, name="uniad_stp3", l2_reduction=MEAN_UNTIL, collision_reduction=MEAN_UNTIL
    ),
    "omnidrive": PlanningConvention(
        name="omnidrive",
        frame=EGO_FRAME,
        grid=BevGrid(bound=50.0, resolution=0.1),
        footprint=EgoFootprint(forward_offset=0.5 + 0.985793, rotate_with_heading=True),
        agent_categories=VEHICLE_CATEGORIES,
        agent_source="tracked",
        min_visibility=0,
        beyond_scene_occupied=False,
        sample_set="valid",
        l2_reduction=MEAN_UNTIL,
        collision_reduction=ANY_UNTIL,
    ),
}


# The presets of UniAD's code (its two planning_evaluation_strategy values).
UNIAD_PRESETS: tuple[str, ...] = ("uniad", "uniad_stp3")


def convention(name: str, **overrides) -> PlanningConvention:
    """A preset by name (see ``PRESETS``), optionally with fields replaced."""
    if name not in PRESETS:
        raise ConfigError(f"unknown planning convention {name!r}; choose from {sorted(PRESETS)}")
    preset = PRESETS[name]
    overrides = {k: v for k, v in overrides.items() if getattr(preset, k) != v}
    if not overrides:
        return preset
    suffix = ",".join(f"{key}={value}" for key, value in sorted(overrides.items()))
    label = overrides.pop("name", f"{name}[{suffix}]")
    return dataclasses.replace(preset, name=label, **overrides)


def obstacle_boxes(conv: PlanningConvention, boxes: FutureBoxes) -> FutureBoxes:
    """The boxes ``conv`` draws as obstacles: its classes, source and visibility rule."""
    category = boxes.category.astype(str)
    keep = np.zeros(len(category), dtype=bool)
    for prefix in conv.agent_categories:
        keep |= np.char.startswith(category, prefix)
    if conv.agent_source == "tracked":
        keep &= boxes.tracked
    keep &= (boxes.visibility == 0) | (boxes.visibility >= conv.min_visibility)
    return boxes.select(keep)


def agent_occupancy(conv: PlanningConvention, boxes: FutureBoxes, num_steps: int) -> np.ndarray:
    """uint8 [T, size, size] occupancy of the obstacles of ``boxes`` in ``conv``'s grid."""
    return rasterize_boxes(conv.grid, obstacle_boxes(conv, boxes), num_steps)


def footprint_hits(
    conv: PlanningConvention,
    waypoints: np.ndarray,
    occupancy: np.ndarray,
    offsets: np.ndarray | None = None,
) -> np.ndarray:
    """bool [..., T]: the footprint at ``waypoints`` [..., T, 2] covers an occupied cell."""
    rows, cols = footprint_cells(conv.grid, conv.footprint, conv.frame, waypoints, offsets)
    steps = np.arange(waypoints.shape[-2])[:, None]  # [T, 1] broadcast against [..., T, K]
    return occupancy[steps, rows, cols].any(axis=-1)


def step_metrics(
    conv: PlanningConvention,
    predictions: np.ndarray,
    gt: np.ndarray,
    gt_mask: np.ndarray,
    occupancy: np.ndarray,
    *,
    frame_exists: np.ndarray,
    offsets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step (L2, collision) of one sample, each [..., T], for predictions [..., T, 2].

    ``gt`` [T, 2] and ``gt_mask`` [T] are the ground truth; ``occupancy`` [T, size, size] the agent
    occupancy in the convention's grid (nonzero = occupied); ``frame_exists`` [T] False past the
    scene end. Masks may be bool or 0/1 numbers. L2 is 0 at missing GT steps. Collision is False
    where the GT footprint collides, the GT step is missing, or (with ``beyond_scene_occupied``)
    the frame is past the scene end.
    """
    gt_mask = np.asarray(gt_mask).astype(bool)
    frame_exists = np.asarray(frame_exists).astype(bool)
    size = conv.grid.size
    if occupancy.shape != (gt.shape[0], size, size):
        raise ConfigError(
            f"occupancy of shape {occupancy.shape} for {gt.shape[0]} steps; the {conv.name} "
            f"grid needs [{gt.shape[0]}, {size}, {size}]"
        )
    l2 = np.linalg.norm(predictions - gt, axis=-1) * gt_mask  # [..., T]
    gt_hits = footprint_hits(conv, gt, occupancy, offsets)  # [T]
    if conv.beyond_scene_occupied:
        gt_hits = gt_hits | ~frame_exists  # a fully occupied frame: the GT collides there
    countable = gt_mask & ~gt_hits
    collision = footprint_hits(conv, predictions, occupancy, offsets) & countable
    return l2, collision


def _checked_batch(
    predictions: np.ndarray, gt: np.ndarray, gt_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 predictions/gt [B, T, 2] and bool gt_mask [B, T]; missing GT steps set to 0."""
    predictions = np.asarray(predictions, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    gt_mask = np.asarray(gt_mask).astype(bool)
    if predictions.shape != gt.shape or gt.shape[:2] != gt_mask.shape or gt.shape[-1] != 2:
        raise ConfigError(
            f"planning metric expects predictions and gt [B, T, 2] and gt_mask [B, T]; got "
            f"{predictions.shape}, {gt.shape}, {gt_mask.shape}"
        )
    if not np.all(np.isfinite(predictions)):
        raise ConfigError("planning metric got non-finite predicted waypoints")
    return predictions, np.where(gt_mask[..., None], gt, 0.0), gt_mask  # missing GT may be NaN


def reduce_per_horizon(values: np.ndarray, reduction: str) -> np.ndarray:
    """[T] value of every horizon h = 1..T from per-sample per-step values [S, T]."""
    if len(values) == 0:
        return np.full(values.shape[1], np.nan)
    if reduction == MEAN_UNTIL:
        per_sample = np.cumsum(values, axis=1) / np.arange(1, values.shape[1] + 1)
    elif reduction == ANY_UNTIL:
        per_sample = np.maximum.accumulate(values, axis=1)
    else:
        per_sample = values
    return per_sample.mean(axis=0)


def horizon_steps(num_steps: int = NUM_WAYPOINTS) -> dict[str, int]:
    """Column name -> number of steps it reads ("1s" -> 2 at 0.5 s per waypoint)."""
    steps = {f"{s}s": round(s / WAYPOINT_DT_S) for s in HORIZONS_S}
    if max(steps.values()) > num_steps:
        raise ConfigError(f"{num_steps} waypoints do not reach {max(HORIZONS_S)} s")
    return steps


def table_from_per_step(per_step: np.ndarray) -> dict[str, float]:
    """{"1s", "2s", "3s", "avg"} from a per-horizon array [T]."""
    row = {
        column: float(per_step[steps - 1]) for column, steps in horizon_steps(len(per_step)).items()
    }
    row["avg"] = float(np.mean([row[f"{s}s"] for s in HORIZONS_S]))
    return row


@dataclass
class PlanningResult:
    """One convention's result: per-horizon arrays (index h-1 = horizon of h steps) and table.

    ``l2`` is in metres; ``collision`` is a fraction (reports print it in %).
    """

    convention: str
    description: str
    sample_set: str
    sample_count: int
    per_step: dict[str, list[float]]
    table: dict[str, dict[str, float]]

    def to_dict(self) -> dict:
        """JSON-ready: NaN (an empty sample set) becomes None."""

        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return None if isinstance(value, float) and np.isnan(value) else value

        return clean(dataclasses.asdict(self))


class PlanningMetric:
    """Accumulator of open-loop L2 and collision under one :class:`PlanningConvention`.

    ``update`` takes a batch of predictions and ground truths in the convention's frame with the
    future boxes of each sample (in the same frame), ``update_occupancy`` the same with
    precomputed agent occupancy grids instead of boxes; ``compute`` reduces everything seen since
    ``reset``. Definition (see the module docstring for the conventions): per step
    ``L2[t] = ||pred[t] - gt[t]||`` and ``collision[t] = hit(pred[t]) and not hit(gt[t])``; the
    sample set is the convention's (``valid`` = all T future steps exist); the L2 at horizon h is
    ``mean_until`` (mean over steps 1..h per sample, then over samples) or ``at_step`` (the value at
    step h, zero if missing, summed over the set and divided by its size); the collision at h is
    ``mean_until``, ``at_step`` or ``any_until`` (fraction of samples with a collision in 1..h).
    Because the state is the per-sample per-step values, merging two halves gives the whole.
    """

    def __init__(self, conv: PlanningConvention | str = "stp3") -> None:
        self.convention = convention(conv) if isinstance(conv, str) else conv
        self._offsets = footprint_offsets(
            self.convention.grid, self.convention.footprint, self.convention.frame
        )
        self.reset()

    def reset(self) -> None:
        self._l2: list[np.ndarray] = []  # [B, T] per update
        self._collision: list[np.ndarray] = []  # [B, T]
        self._valid: list[np.ndarray] = []  # [B]
        self.tokens: list[str] = []

    def __len__(self) -> int:
        return len(self.tokens)

    def sample_steps(
        self,
        predictions: np.ndarray,
        gt: np.ndarray,
        gt_mask: np.ndarray,
        boxes: FutureBoxes,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(L2, collision) [..., T] of predictions [..., T, 2] of one sample (rasterised once)."""
        occupancy = agent_occupancy(self.convention, boxes, gt.shape[0])
        return step_metrics(
            self.convention,
            predictions,
            gt,
            gt_mask,
            occupancy,
            frame_exists=boxes.frame_exists,
            offsets=self._offsets,
        )

    def update(
        self,
        predictions: np.ndarray,
        gt: np.ndarray,
        gt_mask: np.ndarray,
        boxes: Sequence[FutureBoxes],
        tokens: Sequence[str] | None = None,
    ) -> None:
        """Add a batch: predictions/gt [B, T, 2], gt_mask [B, T], one FutureBoxes per sample."""
        predictions, gt, gt_mask = _checked_batch(predictions, gt, gt_mask)
        if len(boxes) != len(gt):
            raise ConfigError(f"{len(boxes)} box sets for a batch of {len(gt)} samples")
        results = [
            self.sample_steps(p, g, m, b)
            for p, g, m, b in zip(predictions, gt, gt_mask, boxes, strict=True)
        ]
        self._add_results(results, gt_mask, tokens)

    def update_occupancy(
        self,
        predictions: np.ndarray,
        gt: np.ndarray,
        gt_mask: np.ndarray,
        occupancy: np.ndarray,
        *,
        frame_exists: np.ndarray | None = None,
        tokens: Sequence[str] | None = None,
    ) -> None:
        """Add a batch scored against precomputed agent occupancy (as UniAD and VAD ship it).

        ``occupancy`` [B, T, size, size] is in the convention's grid and orientation, nonzero =
        occupied; ``frame_exists`` [B, T] (default all True) marks steps before the scene end,
        for conventions that draw later frames fully occupied. Masks may be bool or 0/1.
        """
        predictions, gt, gt_mask = _checked_batch(predictions, gt, gt_mask)
        occupancy = np.asarray(occupancy)
        if occupancy.shape[:2] != gt_mask.shape:
            raise ConfigError(
                f"occupancy of shape {occupancy.shape} for a batch with gt_mask {gt_mask.shape}"
            )
        exists = np.ones_like(gt_mask) if frame_exists is None else np.asarray(frame_exists)
        if exists.shape != gt_mask.shape:
            raise ConfigError(f"frame_exists {exists.shape} does not match gt_mask {gt_mask.shape}")
        results = [
            step_metrics(self.convention, p, g, m, o, frame_exists=e, offsets=self._offsets)
            for p, g, m, o, e in zip(predictions, gt, gt_mask, occupancy, exists, strict=True)
        ]
        self._add_results(results, gt_mask, tokens)

    def _add_results(
        self,
        results: list[tuple[np.ndarray, np.ndarray]],
        gt_mask: np.ndarray,
        tokens: Sequence[str] | None,
    ) -> None:
        self.add_steps(
            np.stack([r[0] for r in results]),
            np.stack([r[1] for r in results]),
            gt_mask.all(axis=1),
            tokens,
        )

    def add_steps(
        self,
        l2: np.ndarray,
        collision: np.ndarray,
        valid: np.ndarray,
        tokens: Sequence[str] | None = None,
    ) -> None:
        """Add per-step values computed elsewhere (l2, collision [B, T]; valid [B])."""
        count = len(l2)
        self._l2.append(np.asarray(l2, dtype=np.float64))
        self._collision.append(np.asarray(collision, dtype=bool))
        self._valid.append(np.asarray(valid, dtype=bool))
        start = len(self.tokens)
        self.tokens.extend(
            tokens if tokens is not None else [f"#{start + i}" for i in range(count)]
        )

    def merge(self, other: PlanningMetric) -> None:
        if other.convention != self.convention:
            raise ConfigError("cannot merge planning metrics of different conventions")
        self._l2 += other._l2
        self._collision += other._collision
        self._valid += other._valid
        self.tokens += other.tokens

    def steps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Everything added so far: L2 [S, T], collision [S, T], all-future-steps-exist [S]."""
        if not self._l2:
            empty = np.zeros((0, NUM_WAYPOINTS))
            return empty, empty.astype(bool), np.zeros(0, dtype=bool)
        return (
            np.concatenate(self._l2),
            np.concatenate(self._collision),
            np.concatenate(self._valid),
        )

    def sample_mask(self) -> np.ndarray:
        """bool [S]: the samples of the convention's sample set."""
        _, _, valid = self.steps()
        return valid if self.convention.sample_set == "valid" else np.ones_like(valid)

    def compute(self) -> PlanningResult:
        l2, collision, _ = self.steps()
        chosen = self.sample_mask()
        if not chosen.any():
            logger.warning("planning metric %s: no samples in its set", self.convention.name)
        per_step_l2 = reduce_per_horizon(l2[chosen], self.convention.l2_reduction)
        per_step_collision = reduce_per_horizon(
            collision[chosen].astype(np.float64), self.convention.collision_reduction
        )
        return PlanningResult(
            convention=self.convention.name,
            description=self.convention.description,
            sample_set=self.convention.sample_set,
            sample_count=int(chosen.sum()),
            per_step={"l2": per_step_l2.tolist(), "collision": per_step_collision.tolist()},
            table={
                "l2": table_from_per_step(per_step_l2),
                "collision": table_from_per_step(per_step_collision),
            },
        )
