"""The vision ablation (`occvla evaluate --ablate-cameras`) and the per-situation breakdown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from occvla_ros import cli
from occvla_ros.evaluation import report
from occvla_ros.evaluation.command import camera_ablation
from occvla_ros.evaluation.evaluator import MODEL, MODEL_NO_CAMERAS, Evaluator
from occvla_ros.evaluation.samples import NuScenesContext
from tests.evaluation import tiny_nuscenes


def test_situations_split_the_stp3_table_and_reach_the_report(tmp_path):
    tokens = tiny_nuscenes.write(tmp_path)
    context = NuScenesContext(tmp_path, tiny_nuscenes.VERSION)
    evaluator = Evaluator(["model", "stop"])
    gt = np.zeros((6, 2))
    gt[:, 0] = 2.5 * np.arange(1, 7)
    # Keyframes 0 and 1 have all 6 future keyframes (the ST-P3 sample set).
    for token, situation in zip(tokens[:2], ("cruise", "stop"), strict=True):
        model = gt if situation == "cruise" else np.zeros((6, 2))
        predictions = {"model": model, "stop": np.zeros((6, 2))}
        evaluator.add_sample(context(token), gt, np.ones(6, bool), predictions, situation=situation)
    results = evaluator.results()
    situations = results["situations"]
    assert set(situations) == {"cruise", "stop"}
    assert situations["cruise"]["samples"] == situations["stop"]["samples"] == 1
    assert situations["cruise"]["planning"]["model"]["l2"]["avg"] == pytest.approx(0.0)
    # Standing still against 2.5 m per step: 1 s 3.75, 2 s 6.25, 3 s 8.75 -> avg 6.25 m.
    assert situations["stop"]["planning"]["model"]["l2"]["avg"] == pytest.approx(6.25)
    assert situations["cruise"]["planning"]["stop"]["l2"]["avg"] == pytest.approx(6.25)
    markdown = report.render_markdown({**results, **_header()}, {})
    assert "## Per situation" in markdown and "| cruise | 1 |" in markdown


def test_no_labels_no_breakdown():
    evaluator = Evaluator(["model"])
    assert evaluator.situation_results() == {}


def test_camera_ablation_summary_is_the_relative_l2_increase():
    def table(l2):
        return {"stp3": {"table": {"l2": {"avg": l2}}}}

    results = {
        "planning": {MODEL: table(0.5), MODEL_NO_CAMERAS: table(0.75)},
        "method_meta_actions": {MODEL_NO_CAMERAS: {"joint_accuracy": 0.25}},
    }
    summary = camera_ablation(results)
    assert summary["l2_increase"] == pytest.approx(0.5)
    assert summary["meta_action_joint_accuracy_no_cameras"] == 0.25


def _header() -> dict:
    return {
        "checkpoint": "ckpt",
        "dataroot": "data",
        "version": "v1.0-mini",
        "split": "mini_val",
        "inputs": {"cameras": True, "ego_status": True, "command": False},
        "baselines": [],
        "qa": None,
    }


@pytest.mark.slow
def test_evaluate_ablate_cameras_scores_the_blind_model_beside_the_seeing_one(
    synthetic_dataroot, tmp_path, capsys
):
    import torch

    from occvla_ros.model.checkpoint import save_checkpoint
    from occvla_ros.model.configuration import OccVLAConfig
    from occvla_ros.model.occvla import OccVLA

    torch.manual_seed(0)
    checkpoint = save_checkpoint(OccVLA(OccVLAConfig.from_preset("tiny")), tmp_path / "ckpt")
    out = tmp_path / "eval"
    arguments = ["evaluate", "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini"]
    arguments += ["--cache-dir", str(tmp_path / "cache"), "--checkpoint", str(checkpoint)]
    arguments += ["--out", str(out), "--max-samples", "4", "--ablate-cameras"]
    assert cli.main(arguments) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["planning"]) == {MODEL, MODEL_NO_CAMERAS, "constant_velocity"}
    ablation = results["camera_ablation"]
    seeing = results["planning"][MODEL]["uniad"]["per_step"]["l2"]
    blind = results["planning"][MODEL_NO_CAMERAS]["uniad"]["per_step"]["l2"]
    assert seeing != blind  # the head reads the visual tokens, so blank views move the plan
    assert ablation["meta_action_joint_accuracy_no_cameras"] is not None
    assert "## Vision ablation" in (out / "report.md").read_text()
    assert "cameras blanked" in capsys.readouterr().out
    # The synthetic world labels every keyframe with a situation: the breakdown is reported.
    assert results["situations"] and all(e["samples"] for e in results["situations"].values())
