"""Planning metrics checked against hand-computed cases of the public reference behaviours.

Grid facts used below (0.5 m grid over [-50, 50] m, footprint 4.084 x 1.85 m centred 0.5 m ahead):
cell i has its centre at -49.75 + 0.5 i, so the footprint at the origin covers forward cells
97..104 (centres -1.25..2.25 m) and lateral cells 98..101 (centres -0.75..0.75 m).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from occvla_ros.errors import ConfigError
from occvla_ros.evaluation.planning import (
    PlanningMetric,
    agent_occupancy,
    convention,
    footprint_hits,
    step_metrics,
)
from occvla_ros.evaluation.rasterize import (
    BevGrid,
    FutureBoxes,
    footprint_cells,
    footprint_offsets,
    rasterize_boxes,
    step_headings,
)

T = 6


def boxes(
    items: list[tuple[int, float, float, float, float, float, str]],
    tracked: bool = True,
    visibility: int = 4,
    frame_exists: list[bool] | None = None,
) -> FutureBoxes:
    """FutureBoxes from (step, x, y, width, length, yaw, category) tuples."""
    if not items:
        empty = FutureBoxes.empty(T)
        if frame_exists is None:
            return empty
        return FutureBoxes(**{**vars(empty), "frame_exists": np.array(frame_exists)})
    step, x, y, width, length, yaw, category = zip(*items, strict=True)
    return FutureBoxes(
        step=np.array(step),
        center=np.stack([x, y], axis=-1).astype(float),
        size=np.stack([width, length], axis=-1).astype(float),
        yaw=np.array(yaw, dtype=float),
        category=np.array(category, dtype=object),
        tracked=np.full(len(items), tracked),
        visibility=np.full(len(items), visibility),
        frame_exists=np.ones(T, bool) if frame_exists is None else np.array(frame_exists),
    )


def straight(step_m: float, axis: int) -> np.ndarray:
    """[T, 2] waypoints moving ``step_m`` per step along ``axis``."""
    waypoints = np.zeros((T, 2))
    waypoints[:, axis] = step_m * np.arange(1, T + 1)
    return waypoints


def test_footprint_cells_match_the_reference_grid():
    stp3, omnidrive = convention("stp3"), convention("omnidrive")
    offsets = footprint_offsets(stp3.grid, stp3.footprint, stp3.frame)
    assert len(offsets) == 32  # 8 forward x 4 lateral, as the reference comments say
    assert set(offsets[:, 1]) == set(range(97, 105)) and set(offsets[:, 0]) == set(range(98, 102))
    assert len(footprint_offsets(omnidrive.grid, omnidrive.footprint, omnidrive.frame)) == 41 * 18
    rows, cols = footprint_cells(stp3.grid, stp3.footprint, stp3.frame, np.zeros((1, 2)))
    # Flipped rows: int(200 - (0 + 104)) .. int(200 - (0 + 97)).
    assert set(rows.ravel()) == set(range(96, 104)) and set(cols.ravel()) == set(range(98, 102))


def test_agent_polygon_rounds_corners_and_fills():
    grid = BevGrid(flip_rows=True)
    # A 0.4 m square at the origin: corners round to pixel (100, 100) -> exactly one cell.
    single = rasterize_boxes(grid, boxes([(0, 0.0, 0.0, 0.4, 0.4, 0.0, "vehicle.car")]), T)
    assert single.sum() == 1 and single[0, 100, 100] == 1
    # A 2 x 4 m car at (10, 20) heading along +y (LiDAR forward): x spans 9..11, y 18..22.
    car = rasterize_boxes(grid, boxes([(2, 10.0, 20.0, 2.0, 4.0, math.pi / 2, "vehicle.car")]), T)
    rows, cols = np.nonzero(car[2])
    assert (cols.min(), cols.max()) == (118, 122)  # (x + 50) / 0.5
    assert (rows.min(), rows.max()) == (56, 64)  # (50 - y) / 0.5 on the flipped row axis
    assert car[[0, 1, 3, 4, 5]].sum() == 0


def test_overlapping_boxes_are_one_union_and_a_footprint_inside_the_overlap_collides():
    conv = convention("stp3")
    # A truck (y 5..15 m) and its trailer (y 9..19 m), 3 m wide, overlapping over y 9..15 m
    # at step 2 (LiDAR frame, heading along +y).
    truck = (2, 0.0, 10.0, 3.0, 10.0, math.pi / 2, "vehicle.truck")
    trailer = (2, 0.0, 14.0, 3.0, 10.0, math.pi / 2, "vehicle.trailer")
    occupancy = agent_occupancy(conv, boxes([truck, trailer]), T)
    alone = agent_occupancy(conv, boxes([truck]), T) | agent_occupancy(conv, boxes([trailer]), T)
    np.testing.assert_array_equal(occupancy, alone)
    # The footprint at (0, 11.5) covers x -0.93..0.93 m, y 9.96..14.04 m: inside the overlap only.
    prediction = np.tile([0.0, 11.5], (T, 1))
    gt = np.tile([-20.0, 0.0], (T, 1))  # far away: the GT never collides
    metric = PlanningMetric(conv)
    metric.update(prediction[None], gt[None], np.ones((1, T), bool), [boxes([truck, trailer])])
    assert metric.steps()[1][0].tolist() == [False, False, True, False, False, False]


def test_stp3_footprint_clips_exactly_one_cell_at_its_rear_edge():
    conv = convention("stp3")
    occupancy = np.zeros((T, 200, 200), np.uint8)
    occupancy[:, 100, 100] = 1  # one occupied cell under the origin
    # Row 100 is covered while int(200 - (2 y + 97)) == 100, i.e. up to y = 1.5 m exactly.
    at_edge = np.tile([0.0, 1.5], (T, 1))
    beyond = np.tile([0.0, 1.51], (T, 1))
    assert footprint_hits(conv, at_edge, occupancy).all()
    assert not footprint_hits(conv, beyond, occupancy).any()
    rows, cols = footprint_cells(conv.grid, conv.footprint, conv.frame, at_edge)
    assert ((rows == 100) & (cols == 100)).sum(axis=1).tolist() == [1] * T


def test_footprint_off_the_grid_is_clipped_onto_the_border():
    conv = convention("stp3")
    occupancy = np.zeros((T, 200, 200), np.uint8)
    occupancy[:, 100, 199] = 1  # the right border column
    far_right = np.tile([60.0, 0.0], (T, 1))  # 10 m outside the grid
    assert footprint_hits(conv, far_right, occupancy).all()


def test_stp3_l2_and_collision_by_hand():
    conv = convention("stp3")
    gt = straight(2.0, axis=1)  # LiDAR frame: forward is +y
    prediction = gt + np.outer(np.arange(1, T + 1) * 0.1, [1.0, 0.0])  # L2[t] = 0.1 t
    # A 1 m pedestrian at x = 1.5 m beside the last waypoint covers columns 102..104; the
    # prediction's footprint (x = 0.6 m) covers columns int(1.2 + 98..101) = 99..102, the GT's
    # 98..101: only the prediction collides, and only at the last step.
    agents = boxes([(5, 1.5, gt[5, 1], 1.0, 1.0, 0.0, "human.pedestrian.adult")])
    metric = PlanningMetric(conv)
    metric.update(prediction[None], gt[None], np.ones((1, T), bool), [agents])
    l2, collision = metric.steps()[:2]
    np.testing.assert_allclose(l2[0], 0.1 * np.arange(1, T + 1))
    assert collision[0].tolist() == [False] * 5 + [True]
    result = metric.compute()
    np.testing.assert_allclose(
        [result.table["l2"][c] for c in ("1s", "2s", "3s", "avg")], [0.15, 0.25, 0.35, 0.25]
    )
    # ST-P3 collision at 3 s: 1 of the 6 steps collides.
    assert result.table["collision"]["3s"] == pytest.approx(1 / 6)
    assert result.table["collision"]["1s"] == 0.0 and result.sample_count == 1


def test_gt_collision_is_removed_from_the_numerator_only():
    conv = convention("stp3")
    gt = straight(2.0, axis=1)
    occupancy = np.zeros((T, 200, 200), np.uint8)
    occupancy[:] = 1  # everything occupied: GT and prediction both collide at every step
    l2, collision = step_metrics(
        conv, gt + 0.3, gt, np.ones(T, bool), occupancy, frame_exists=np.ones(T, bool)
    )
    assert not collision.any()
    metric = PlanningMetric(conv)
    metric.add_steps(l2[None], collision[None], np.array([True]))
    metric.add_steps(l2[None], np.ones((1, T), bool), np.array([True]))
    # Two samples in the denominator, one colliding everywhere: 50 %.
    assert metric.compute().table["collision"]["avg"] == pytest.approx(0.5)


def test_uniad_per_step_values_under_both_sample_strategies():
    gt = straight(2.0, axis=1)
    prediction = gt + np.outer(np.arange(1, T + 1) * 0.1, [1.0, 0.0])
    full, truncated = np.ones(T, bool), np.array([True] * 4 + [False] * 2)
    ends = [True] * 4 + [False] * 2
    # The truncated sample's prediction sits on a car at step index 4 (past the scene end):
    # that frame is drawn fully occupied, so the GT collides there and it is not counted.
    car = (4, prediction[4, 0], prediction[4, 1], 2.0, 4.5, 0.0, "vehicle.car")
    all_samples = PlanningMetric(convention("uniad"))
    valid_only = PlanningMetric(convention("uniad", sample_set="valid"))
    for metric in (all_samples, valid_only):
        metric.update(
            np.stack([prediction, prediction]),
            np.stack([gt, gt]),
            np.stack([full, truncated]),
            [boxes([]), boxes([car], frame_exists=ends)],
        )
    every = all_samples.compute()
    # Value AT step 2k; the truncated sample adds 0 at steps 5, 6 but stays in the denominator.
    np.testing.assert_allclose(every.per_step["l2"], [0.1, 0.2, 0.3, 0.4, 0.25, 0.3])
    assert every.table["l2"] == pytest.approx({"1s": 0.2, "2s": 0.4, "3s": 0.3, "avg": 0.3})
    assert every.sample_count == 2 and every.table["collision"]["avg"] == 0.0
    valid = valid_only.compute()
    assert valid.sample_count == 1
    assert valid.table["l2"] == pytest.approx({"1s": 0.2, "2s": 0.4, "3s": 0.6, "avg": 0.4})


def test_uniad_reports_both_of_its_evaluation_strategies_over_all_samples():
    gt = straight(2.0, axis=1)
    prediction = gt + np.outer(np.arange(1, T + 1) * 0.1, [1.0, 0.0])  # L2[t] = 0.1 t
    truncated = np.array([True] * 4 + [False] * 2)
    ends = boxes([], frame_exists=truncated.tolist())
    at_step, mean_until = PlanningMetric("uniad"), PlanningMetric("uniad_stp3")
    for metric in (at_step, mean_until):
        metric.update(
            np.stack([prediction, prediction]),
            np.stack([gt, gt]),
            np.stack([np.ones(T, bool), truncated]),
            [boxes([]), ends],
        )
    per_step = [0.1, 0.2, 0.3, 0.4, 0.25, 0.3]  # step means over both samples (0 when missing)
    uniad, stp3 = at_step.compute(), mean_until.compute()
    assert uniad.table["l2"] == pytest.approx(
        {"1s": 0.2, "2s": 0.4, "3s": 0.3, "avg": 0.3}
    )  # planning_evaluation_strategy="uniad": the value at step 2k
    assert stp3.table["l2"] == pytest.approx(
        {
            "1s": np.mean(per_step[:2]),
            "2s": np.mean(per_step[:4]),
            "3s": np.mean(per_step),
            "avg": np.mean([np.mean(per_step[:2]), np.mean(per_step[:4]), np.mean(per_step)]),
        }
    )  # planning_evaluation_strategy="stp3": the mean of steps 1..2k
    assert uniad.sample_count == stp3.sample_count == 2
    assert uniad.sample_set == stp3.sample_set == "all"
    # Same obstacles, frame and grid: only the reduction differs.
    assert convention("uniad").per_step_identity == convention("uniad_stp3").per_step_identity
    assert convention("uniad").per_step_identity != convention("stp3").per_step_identity


def test_step_metrics_accepts_0_1_masks_like_update():
    conv = convention("uniad")  # draws frames past the scene end fully occupied
    gt = straight(2.0, axis=1)
    prediction = gt + np.array([4.0, 0.0])  # 4 m to the right, on a car; the GT is clear of it
    car = [(t, 4.0, gt[t, 1], 2.0, 4.0, math.pi / 2, "vehicle.car") for t in range(T)]
    occupancy = agent_occupancy(conv, boxes(car), T)
    gt_mask = np.array([True] * 5 + [False])
    exists = np.array([True] * 5 + [False])
    as_bool = step_metrics(conv, prediction, gt, gt_mask, occupancy, frame_exists=exists)
    assert as_bool[1].tolist() == [True] * 5 + [False]
    for kind in (np.float32, np.int64, np.uint8):
        l2, collision = step_metrics(
            conv, prediction, gt, gt_mask.astype(kind), occupancy, frame_exists=exists.astype(kind)
        )
        assert collision.dtype == bool
        np.testing.assert_array_equal(collision, as_bool[1])
        np.testing.assert_allclose(l2, as_bool[0])
    with pytest.raises(ConfigError, match=r"grid needs \[6, 200, 200\]"):
        step_metrics(conv, prediction, gt, gt_mask, occupancy[:, :100], frame_exists=exists)


@pytest.mark.parametrize("name", ["stp3", "uniad", "omnidrive"])
def test_precomputed_occupancy_grids_score_as_their_boxes(name):
    conv = convention(name)
    rng = np.random.default_rng(2)
    gt = np.cumsum(rng.normal([0.0, 2.0], 0.3, size=(3, T, 2)), axis=1)
    predictions = gt + rng.normal(0.0, 1.5, size=gt.shape)
    mask = np.ones((3, T), bool)
    mask[2, 3:] = False
    sets = [
        boxes(
            [
                (t, float(p[0] + dx), float(p[1] + dy), 2.0, 4.5, 0.3, "vehicle.car")
                for t, p in enumerate(prediction)
                for dx, dy in [rng.normal(0.0, 2.0, 2)]
            ],
            frame_exists=m.tolist(),
        )
        for prediction, m in zip(predictions, mask, strict=True)
    ]
    from_boxes = PlanningMetric(conv)
    from_boxes.update(predictions, gt, mask, sets)
    grids = np.stack([agent_occupancy(conv, b, T) for b in sets]).astype(np.float32)  # 0/1
    from_grids = PlanningMetric(conv)
    from_grids.update_occupancy(
        predictions, gt, mask.astype(np.uint8), grids, frame_exists=mask.astype(np.uint8)
    )
    for a, b in zip(from_boxes.steps(), from_grids.steps(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert from_boxes.steps()[1].any()  # the case is not trivially collision-free
    assert from_grids.compute().table == from_boxes.compute().table
    with pytest.raises(ConfigError, match="occupancy of shape"):
        from_grids.update_occupancy(predictions, gt, mask, grids[:2])


def test_uniad_draws_every_visible_vehicle_box_of_each_future_frame():
    uniad, stp3 = convention("uniad"), convention("stp3")
    future_only = boxes([(1, 0.0, 4.0, 2.0, 4.0, 0.0, "vehicle.car")], tracked=False)
    assert agent_occupancy(uniad, future_only, T)[1].any()
    assert not agent_occupancy(stp3, future_only, T).any()  # ST-P3 draws tracked agents only
    hidden = boxes([(1, 0.0, 4.0, 2.0, 4.0, 0.0, "vehicle.car")], visibility=1)
    assert agent_occupancy(uniad, hidden, T).any()  # UniAD's configs keep invisible boxes
    assert not agent_occupancy(convention("uniad", min_visibility=2), hidden, T).any()
    person = boxes([(1, 0.0, 4.0, 1.0, 1.0, 0.0, "human.pedestrian.adult")])
    assert not agent_occupancy(uniad, person, T).any()
    assert agent_occupancy(stp3, person, T)[1].any()
    ambulance = boxes([(1, 0.0, 4.0, 2.0, 5.0, 0.0, "vehicle.emergency.ambulance")])
    assert not agent_occupancy(uniad, ambulance, T).any()


def test_omnidrive_rotated_footprint_hits_only_when_rotated():
    conv = convention("omnidrive")
    axis_aligned = convention(
        "omnidrive", footprint=conv.footprint.__class__(forward_offset=1.485793)
    )
    gt = np.tile([-20.0, 0.0], (T, 1))  # far away: the GT never collides
    moving_left = straight(2.0, axis=1)  # ego frame: +y is left, heading 90 degrees
    # A 0.5 m box 2.5 m further left than each waypoint: inside the rotated footprint, which
    # reaches 3.53 m along the heading, but outside the axis-aligned one (0.925 m sideways).
    agents = boxes(
        [(t, 0.0, moving_left[t, 1] + 2.5, 0.5, 0.5, 0.0, "vehicle.car") for t in range(T)]
    )
    occupancy = agent_occupancy(conv, agents, T)
    mask, exists = np.ones(T, bool), np.ones(T, bool)
    assert step_metrics(conv, moving_left, gt, mask, occupancy, frame_exists=exists)[1].all()
    assert not step_metrics(axis_aligned, moving_left, gt, mask, occupancy, frame_exists=exists)[
        1
    ].any()
    # Heading 0 below 1 m per step: the same shape 0.9 m per step is not rotated.
    creeping = straight(0.9, axis=1)
    creeping_agents = boxes(
        [(t, 0.0, creeping[t, 1] + 2.5, 0.5, 0.5, 0.0, "vehicle.car") for t in range(T)]
    )
    creeping_occupancy = agent_occupancy(conv, creeping_agents, T)
    assert not step_metrics(conv, creeping, gt, mask, creeping_occupancy, frame_exists=exists)[
        1
    ].any()
    np.testing.assert_array_equal(step_headings(creeping, 1.0, conv.frame), 0.0)
    np.testing.assert_allclose(step_headings(moving_left, 1.0, conv.frame), math.pi / 2)


def test_omnidrive_collision_is_any_until_the_horizon():
    conv = convention("omnidrive")
    metric = PlanningMetric(conv)
    collision = np.zeros((2, T), bool)
    collision[0, 1] = True  # first sample collides once, at 1 s
    metric.add_steps(np.zeros((2, T)), collision, np.array([True, True]))
    result = metric.compute()
    assert result.table["collision"] == pytest.approx({"1s": 0.5, "2s": 0.5, "3s": 0.5, "avg": 0.5})
    stp3 = PlanningMetric("stp3")
    stp3.add_steps(np.zeros((2, T)), collision, np.array([True, True]))
    assert stp3.compute().table["collision"]["3s"] == pytest.approx(1 / 12)


@pytest.mark.parametrize("name", ["stp3", "uniad", "omnidrive"])
def test_prediction_equal_to_gt_scores_zero_everywhere(name):
    rng = np.random.default_rng(0)
    metric = PlanningMetric(name)
    gt = np.cumsum(rng.normal([0.0, 2.0], 0.5, size=(8, T, 2)), axis=1)
    mask = np.ones((8, T), bool)
    mask[3, 4:] = False
    sets = []
    for sample in range(8):
        count = 30
        sets.append(
            boxes(
                [
                    (int(s), float(x), float(y), 2.0, 4.5, float(a), "vehicle.car")
                    for s, x, y, a in zip(
                        rng.integers(0, T, count),
                        rng.uniform(-10, 10, count),
                        rng.uniform(-5, 15, count),
                        rng.uniform(-3, 3, count),
                        strict=True,
                    )
                ],
                frame_exists=mask[sample].tolist(),
            )
        )
    metric.update(gt, gt, mask, sets)
    result = metric.compute()
    assert all(v == 0.0 for row in result.table.values() for v in row.values())
    assert all(v == 0.0 for values in result.per_step.values() for v in values)


def test_accumulator_halves_equal_the_whole_and_reset_clears():
    rng = np.random.default_rng(1)
    l2 = rng.uniform(0, 2, (10, T))
    collision = rng.uniform(size=(10, T)) < 0.2
    valid = rng.uniform(size=10) < 0.8
    for name in ("stp3", "uniad", "omnidrive"):
        whole, first, second = PlanningMetric(name), PlanningMetric(name), PlanningMetric(name)
        whole.add_steps(l2, collision, valid)
        first.add_steps(l2[:4], collision[:4], valid[:4])
        second.add_steps(l2[4:], collision[4:], valid[4:])
        first.merge(second)
        assert first.compute().table == whole.compute().table
        whole.reset()
        assert len(whole) == 0 and whole.compute().sample_count == 0


def test_bad_inputs_are_clear_errors():
    metric = PlanningMetric("stp3")
    with pytest.raises(ConfigError, match="non-finite"):
        metric.update(np.full((1, T, 2), np.nan), np.zeros((1, T, 2)), np.ones((1, T)), [boxes([])])
    with pytest.raises(ConfigError, match=r"\[B, T, 2\]"):
        metric.update(np.zeros((1, T, 3)), np.zeros((1, T, 3)), np.ones((1, T)), [boxes([])])
    with pytest.raises(ConfigError, match="unknown planning convention"):
        convention("vad")
    with pytest.raises(ConfigError, match="sample_set"):
        convention("uniad", sample_set="some")


def test_omnidrive_l2_is_the_stp3_mean_until_the_horizon_in_the_ego_frame():
    gt = straight(2.0, axis=0)  # ego frame: forward is +x
    prediction = gt + np.outer(np.arange(1, T + 1) * 0.1, [0.0, 1.0])  # L2[t] = 0.1 t, sideways
    metric = PlanningMetric("omnidrive")
    metric.update(prediction[None], gt[None], np.ones((1, T), bool), [boxes([])])
    result = metric.compute()
    assert result.table["l2"] == pytest.approx({"1s": 0.15, "2s": 0.25, "3s": 0.35, "avg": 0.25})
    np.testing.assert_allclose(result.per_step["l2"], 0.05 * np.arange(2, T + 2))
