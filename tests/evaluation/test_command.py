"""`occvla evaluate` and `occvla train-ego-baseline` from the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from occvla_ros import cli


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "checkpoint directory"),
        (["--checkpoint", "{tmp}", "--max-samples", "0"], "--max-samples must be positive"),
        (["--checkpoint", "{tmp}", "--version", "v9"], "no nuScenes version 'v9'"),
    ],
)
def test_evaluate_bad_arguments_are_one_line_errors(tmp_path, caplog, extra, message):
    (tmp_path / "v1.0-mini").mkdir()
    arguments = ["evaluate", "--checkpoint", str(tmp_path / "missing"), "--dataroot", str(tmp_path)]
    arguments += ["--version", "v1.0-mini", "--out", str(tmp_path / "out")]
    arguments += [part.replace("{tmp}", str(tmp_path)) for part in extra]
    with caplog.at_level(logging.ERROR):
        assert cli.main(arguments) == 2
    assert message in caplog.text
    assert not (tmp_path / "out").exists()


def test_train_ego_baseline_bad_arguments_are_one_line_errors(tmp_path, caplog):
    arguments = ["train-ego-baseline", "--dataroot", str(tmp_path), "--version", "v1.0-mini"]
    with caplog.at_level(logging.ERROR):
        assert cli.main([*arguments, "--out", str(tmp_path / "out"), "--epochs", "0"]) == 2
    assert "--epochs" in caplog.text


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised tiny OccVLA saved as a checkpoint (plumbing, not quality)."""
    import torch

    from occvla_ros.model.checkpoint import save_checkpoint
    from occvla_ros.model.configuration import OccVLAConfig
    from occvla_ros.model.occvla import OccVLA

    torch.manual_seed(0)
    return save_checkpoint(
        OccVLA(OccVLAConfig.from_preset("tiny")), tmp_path_factory.mktemp("tiny_ckpt")
    )


@pytest.mark.slow
def test_evaluate_end_to_end_on_the_synthetic_dataset(
    synthetic_dataroot, tiny_checkpoint, tmp_path, capsys
):
    loader = ["--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini"]
    loader += ["--cache-dir", str(tmp_path / "cache")]
    baseline = tmp_path / "ego_mlp"
    trained = [*loader, "--split", "mini_train", "--out", str(baseline), "--epochs", "5"]
    assert cli.main(["train-ego-baseline", *trained]) == 0
    assert (baseline / "model.safetensors").is_file()
    out = tmp_path / "eval"
    arguments = [*loader, "--split", "mini_val", "--checkpoint", str(tiny_checkpoint)]
    arguments += ["--out", str(out), "--baseline-checkpoint", str(baseline)]
    arguments += ["--max-samples", "3", "--with-occupancy", "--with-qa", "--batch-size", "3"]
    assert cli.main(["evaluate", *arguments]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["sample_count"] == 3 and results["split"] == "mini_val"
    assert set(results["planning"]) == {"model", "ego_mlp", "constant_velocity"}
    for conventions in results["planning"].values():
        assert set(conventions) == {"stp3", "uniad", "uniad_stp3", "omnidrive"}
        assert conventions["uniad"]["sample_count"] == 3
        assert conventions["uniad"]["table"]["l2"]["avg"] >= 0.0
    assert results["inputs"] == {"cameras": True, "ego_status": True, "command": False}
    assert results["occupancy"]["voxel_count"] > 0
    assert results["meta_action"]["count"] > 0
    assert results["qa"]["closed_form_count"] + results["qa"]["free_text_count"] == 3
    markdown = (out / "report.md").read_text()
    assert "### stp3 convention" in markdown and "Ego-status MLP" in markdown
    assert "## Driving QA (OmniDrive)" in markdown
    for figure in ("bev_samples", "bev_worst_l2", "occupancy_confusion", "meta_action_confusion"):
        assert (out / "figures" / f"{figure}.png").read_bytes().startswith(b"\x89PNG")
    assert "report:" in capsys.readouterr().out


def test_train_ego_baseline_with_command_reads_the_command(synthetic_dataroot, tmp_path):
    from occvla_ros.errors import ConfigError
    from occvla_ros.evaluation.baselines import EgoStatusBaseline

    out = tmp_path / "ego_command_mlp"
    arguments = ["--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini"]
    arguments += ["--cache-dir", str(tmp_path / "cache"), "--split", "mini_train"]
    arguments += ["--out", str(out), "--epochs", "3", "--with-command"]
    assert cli.main(["train-ego-baseline", *arguments]) == 0
    baseline = EgoStatusBaseline.load(out)
    assert baseline.config.use_command and baseline.method == "ego_command_mlp"
    ego, past = np.zeros((3, 3)), np.zeros((3, baseline.config.num_past, 2))
    with pytest.raises(ConfigError, match="reads the driving command"):
        baseline.predict(ego, past)
    commands = ["turn left", "go straight", "turn right"]
    waypoints = baseline.predict(ego, past, commands=commands)
    assert waypoints.shape == (3, 6, 2)
    # Same ego state, different commands: the command is an input, so the plans differ.
    assert not np.allclose(waypoints[0], waypoints[2])


def test_evaluate_rejects_a_corrupt_checkpoint(synthetic_dataroot, tmp_path, caplog):
    (tmp_path / "ckpt").mkdir()
    arguments = ["evaluate", "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini"]
    arguments += ["--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")]
    with caplog.at_level(logging.ERROR):
        assert cli.main(arguments) == 2
    assert "incomplete" in caplog.text


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", "invalid device 'tpu'"),
        pytest.param(
            "cuda",
            "device 'cuda' requested but 0 CUDA device(s) exist",
            marks=pytest.mark.skipif(
                __import__("torch").cuda.is_available(), reason="this machine has CUDA"
            ),
        ),
    ],
)
def test_evaluate_rejects_a_device_torch_cannot_use(tmp_path, caplog, device, message):
    (tmp_path / "v1.0-mini").mkdir()
    arguments = ["evaluate", "--checkpoint", str(tmp_path), "--dataroot", str(tmp_path)]
    arguments += ["--out", str(tmp_path / "out"), "--device", device]
    with caplog.at_level(logging.ERROR):
        assert cli.main(arguments) == 2
    assert message in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_evaluate_counts_unreadable_keyframes_in_the_results_and_report(
    synthetic_dataroot, tiny_checkpoint, tmp_path
):
    from occvla_ros.data.index import load_index

    cache = tmp_path / "cache"
    first = load_index(synthetic_dataroot, "v1.0-mini", "mini_val", cache_dir=cache).records[0]
    broken = Path(first.image_paths[0]).relative_to(synthetic_dataroot)  # samples/CAM_FRONT/...
    dataroot = tmp_path / "nuscenes"  # links to the dataset, one image replaced by garbage
    for child in synthetic_dataroot.iterdir():
        if child.name != broken.parts[0]:
            (dataroot / child.name).parent.mkdir(parents=True, exist_ok=True)
            (dataroot / child.name).symlink_to(child)
    for camera in (synthetic_dataroot / broken.parent.parent.name).iterdir():
        target = dataroot / broken.parts[0] / camera.name
        target.mkdir(parents=True)
        for image in camera.iterdir():
            (target / image.name).symlink_to(image)
    (dataroot / broken).unlink()
    (dataroot / broken).write_bytes(b"\xff\xd8 not a JPEG")
    out = tmp_path / "eval"
    arguments = ["--dataroot", str(dataroot), "--version", "v1.0-mini", "--split", "mini_val"]
    arguments += ["--cache-dir", str(cache), "--checkpoint", str(tiny_checkpoint)]
    arguments += ["--out", str(out), "--max-samples", "3", "--batch-size", "3"]
    assert cli.main(["evaluate", *arguments]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["sample_count"] == 2 and results["skipped_samples"] == 1
    assert "2 keyframes evaluated, 1 skipped (unreadable input" in (out / "report.md").read_text()
