"""The demo-model recipe's own logic: stage overrides and the summary over seeds."""

from __future__ import annotations

import pytest

from occvla_ros.errors import ConfigError
from training.recipes.demo_model import STAGE_PLAN, render_summary, stage_plan, summarise


def test_stage_steps_are_overridden_by_name_and_bad_overrides_are_refused():
    plan = {s.name: s for s in stage_plan(["planning=7"])}
    assert plan["planning"].steps == 7
    assert plan["qa"].steps == next(s.steps for s in STAGE_PLAN if s.name == "qa")
    for bad in (["planing=7"], ["planning=0"], ["planning"]):
        with pytest.raises(ConfigError, match="--steps"):
            stage_plan(bad)


def _results(model_l2: float, blind_l2: float) -> dict:
    def table(l2):
        return {
            "stp3": {"sample_count": 10, "table": {"l2": {"avg": l2}, "collision": {"avg": 0.01}}}
        }

    return {
        "planning": {
            "model": table(model_l2),
            "model_no_cameras": table(blind_l2),
            "ego_command_mlp": table(0.5),
            "constant_velocity": table(1.0),
        },
        "camera_ablation": {"l2_increase": blind_l2 / model_l2 - 1.0},
        # 3 samples of class 0, 1 of class 1; 2 right.
        "meta_action": {"count": 4, "joint_accuracy": 0.5, "confusion": [[2, 1], [1, 0]]},
        "situations": {
            "stop": {"samples": 2, "planning": {m: {"l2": {"avg": model_l2}} for m in ("model",)}}
        },
    }


def test_summary_gives_mean_and_spread_over_seeds():
    summary = summarise([_results(0.2, 0.3), _results(0.4, 0.5)])
    assert summary["seeds"] == 2 and summary["val_samples"] == 10
    model = summary["stp3_avg"]["model"]["l2"]
    assert model["mean"] == pytest.approx(0.3) and model["std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["meta_action_majority_class"]["mean"] == pytest.approx(0.75)
    assert summary["situations_stp3_avg_l2"]["stop"]["model"]["mean"] == pytest.approx(0.3)
    assert summary["situations_stp3_avg_l2"]["stop"]["ego_command_mlp"]["n"] == 0
    markdown = render_summary(summary, {"synth": 12.0})
    assert "| OccVLA tiny (cameras) | 0.300 ± 0.141 |" in markdown
