"""The training entry point: a few real steps per stage, single-process and under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from occvla_ros.model.checkpoint import load_checkpoint
from tests.conftest import REPO_ROOT
from training.train import main


def _arguments(dataroot, tmp_path, stage: str, out: str, steps: int = 2) -> list[str]:
    return [
        "--stage",
        stage,
        "--config",
        str(REPO_ROOT / "training" / "configs" / "tiny.yaml"),
        "--dataroot",
        str(dataroot),
        "--version",
        "v1.0-mini",
        "--split",
        "mini_train",
        "--out",
        str(tmp_path / out),
        "--cache-dir",
        str(tmp_path / "index"),
        "--max-steps",
        str(steps),
    ]


@pytest.mark.slow
def test_qa_then_planning_single_process(synthetic_dataroot, tmp_path):
    assert main(_arguments(synthetic_dataroot, tmp_path, "qa", "qa")) == 0
    run = tmp_path / "qa"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["text"] > 0 and m["grad_norm"] >= 0 for m in metrics)
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["preset"] == "tiny" and resolved["training"]["max_steps"] == 2
    stage1 = load_checkpoint(run / "checkpoint", expected_preset="tiny")

    planning = _arguments(synthetic_dataroot, tmp_path, "planning", "planning")
    assert main([*planning, "--init", str(run / "checkpoint")]) == 0
    stage3 = load_checkpoint(tmp_path / "planning" / "checkpoint")
    # Stage 3 trains only the planning head: the VLM is the stage-1 one.
    before, after = stage1.state_dict(), stage3.state_dict()
    changed = {k for k in before if not before[k].equal(after[k])}
    assert changed and all(k.startswith("planning_head.") for k in changed), sorted(changed)[:5]


def test_bad_configuration_is_a_clear_error(synthetic_dataroot, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("training:\n  learning_rat: 0.1\n")
    arguments = _arguments(synthetic_dataroot, tmp_path, "qa", "bad")
    arguments[arguments.index("--config") + 1] = str(config)
    assert main(arguments) == 2
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_two_process_ddp_under_torchrun(synthetic_dataroot, tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "training.train",
        *_arguments(synthetic_dataroot, tmp_path, "planning", "ddp", steps=2),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 2  # rank 0 only
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint").config.preset == "tiny"
