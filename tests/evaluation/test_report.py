"""Evaluator, JSON/Markdown report and figures on the dataset of known geometry (no model)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from occvla_ros.constants import FREE_CLASS, NUM_OCC_CLASSES
from occvla_ros.errors import ConfigError
from occvla_ros.evaluation import report
from occvla_ros.evaluation.baselines import constant_velocity
from occvla_ros.evaluation.evaluator import Evaluator
from occvla_ros.evaluation.figures import plot_bev_samples, plot_confusion
from occvla_ros.evaluation.samples import NuScenesContext
from tests.evaluation import tiny_nuscenes


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_nuscenes")
    tokens = tiny_nuscenes.write(root)
    context = NuScenesContext(root, tiny_nuscenes.VERSION)
    evaluator = Evaluator(["constant_velocity", "stop"], with_occupancy=True, figure_samples=3)
    rng = np.random.default_rng(0)
    for index, token in enumerate(tokens):
        future = min(6, len(tokens) - 1 - index)
        gt = np.zeros((6, 2))
        gt[:, 0] = 2.5 * np.arange(1, 7)  # the ego drives 2.5 m per step straight on
        mask = np.arange(6) < future
        labels = np.full((200, 200, 16), FREE_CLASS, np.uint8)
        labels[100:110, 95:105, :4] = 4  # a car-shaped block ahead
        prediction = np.where(rng.uniform(size=labels.shape) < 0.9, labels, 0).astype(np.uint8)
        evaluator.add_sample(
            context(token),
            gt,
            mask,
            {
                "constant_velocity": constant_velocity(np.array([[5.0, 0, 0]]))[0],
                "stop": np.zeros((6, 2)),
            },
            occupancy_gt=labels,
            occupancy_mask=np.ones_like(labels),
            occupancy_prediction=prediction,
        )
    evaluator.add_meta_actions(np.array([0, 1, 2]), np.array([0, 1, 3]))
    return evaluator


def test_evaluator_scores_every_planner_on_the_same_samples(evaluated):
    results = evaluated.results()
    assert results["sample_count"] == tiny_nuscenes.NUM_SAMPLES
    for name in ("stp3", "uniad", "uniad_stp3", "omnidrive"):
        table = results["planning"]["constant_velocity"][name]["table"]
        assert table["l2"]["avg"] == pytest.approx(0.0, abs=1e-9)  # constant speed is exact here
        assert table["collision"]["avg"] == 0.0
    stop = results["planning"]["stop"]
    # Keyframes 0 and 1 have 6 future keyframes: ST-P3 at 1 s = mean(2.5, 5.0).
    assert stop["stp3"]["sample_count"] == 2
    assert stop["stp3"]["table"]["l2"]["1s"] == pytest.approx(3.75)
    assert stop["uniad"]["sample_count"] == tiny_nuscenes.NUM_SAMPLES
    # UniAD at 3 s: 15 m for the 2 samples that reach step 6, 0 for the 6 others.
    assert stop["uniad"]["table"]["l2"]["3s"] == pytest.approx(2 * 15.0 / 8)
    # UniAD's stp3 strategy at 3 s: the mean of those step values over steps 1..6 (all samples).
    reaching = [7, 6, 5, 4, 3, 2]  # samples with a GT at step t = 1..6
    step_means = [2.5 * t * n / 8 for t, n in enumerate(reaching, start=1)]
    assert stop["uniad_stp3"]["table"]["l2"]["3s"] == pytest.approx(np.mean(step_means))
    assert stop["uniad_stp3"]["sample_count"] == tiny_nuscenes.NUM_SAMPLES
    assert results["worst_l2"][0]["l2_mean"] >= results["worst_l2"][-1]["l2_mean"]
    assert results["occupancy"]["per_class_iou"]["car"] == pytest.approx(0.9, abs=0.02)
    assert results["meta_action"]["joint_accuracy"] == pytest.approx(2 / 3)


def test_uniad_sample_set_applies_to_both_uniad_strategies():
    evaluator = Evaluator(["stop"], uniad_sample_set="valid")
    sets = {c.name.partition("[")[0]: c.sample_set for c in evaluator.conventions}
    assert sets == {"stp3": "valid", "uniad": "valid", "uniad_stp3": "valid", "omnidrive": "valid"}
    assert {c.sample_set for c in Evaluator(["stop"]).conventions} == {"valid", "all"}


def test_report_files_and_figures(evaluated, tmp_path):
    results = {
        "checkpoint": "none (baselines only)",
        "dataroot": "tiny",
        "version": tiny_nuscenes.VERSION,
        "split": "mini_train",
        "inputs": {"cameras": False, "ego_status": True, "command": False},
        "baselines": ["constant velocity"],
        **evaluated.results(),
    }
    first = plot_bev_samples(evaluated.first, tmp_path / "bev.png", "first")
    worst = plot_bev_samples(evaluated.worst_samples(), tmp_path / "worst.png", "worst")
    confusion = plot_confusion(
        evaluated.occupancy.confusion,
        [str(c) for c in range(NUM_OCC_CLASSES)],
        tmp_path / "c.png",
        "c",
    )
    for figure in (first, worst, confusion):
        assert figure.read_bytes().startswith(b"\x89PNG")
    json_path = report.write_json(results, tmp_path)
    assert json.loads(json_path.read_text())["planning"]["stop"]["stp3"]["sample_count"] == 2
    markdown = report.write_markdown(results, {"BEV": "bev.png"}, tmp_path).read_text()
    for expected in (
        "### stp3 convention",
        "### uniad convention",
        "### uniad_stp3 convention",
        "### omnidrive convention",
        "Samples: 2 (valid set)",
        "driving command no",
        "AD-MLP",
        "![BEV](bev.png)",
        "## Occupancy (Occ3D protocol)",
        "## Meta-action",
    ):
        assert expected in markdown


def test_evaluator_rejects_missing_or_non_finite_predictions(evaluated):
    with pytest.raises(ConfigError, match="no predictions"):
        evaluated.add_sample(
            SimpleNamespace(token="t"), np.zeros((6, 2)), np.ones(6), {"stop": np.zeros((6, 2))}
        )
    broken = {"stop": np.zeros((6, 2)), "constant_velocity": np.full((6, 2), np.nan)}
    with pytest.raises(ConfigError, match=r"non-finite waypoints from \['constant_velocity'\]"):
        evaluated.add_sample(SimpleNamespace(token="t"), np.zeros((6, 2)), np.ones(6), broken)
