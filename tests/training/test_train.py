"""The training command: a real run of two stages, and bad input refused before any work."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from occvla_ros.model.checkpoint import load_checkpoint
from tests.conftest import REPO_ROOT
from training.train import main, parse_args

TINY = REPO_ROOT / "training" / "configs" / "tiny.yaml"


def arguments(dataroot, out, stage: str = "qa", steps: int = 2, config=TINY) -> list[str]:
    return [
        "--stage",
        stage,
        "--config",
        str(config),
        "--dataroot",
        str(dataroot),
        "--version",
        "v1.0-mini",
        "--split",
        "mini_train",
        "--out",
        str(out),
        "--cache-dir",
        str(out.parent / "index"),
        "--max-steps",
        str(steps),
    ]


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.slow
def test_qa_then_planning_with_validation(synthetic_dataroot, tmp_path, caplog):
    config = tmp_path / "validated.yaml"
    config.write_text(
        "model: {preset: tiny}\n"
        "training: {learning_rate: 2e-3, warmup_steps: 1, batch_size: 2, val_every: 2,"
        " val_batches: 1, progress_bar: false, gradient_checkpointing: true}\n"
    )
    qa = arguments(synthetic_dataroot, tmp_path / "qa", config=config)
    assert main([*qa, "--val-split", "mini_val"]) == 0
    run = tmp_path / "qa"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [line for line in lines if "val" not in line]
    assert [m["step"] for m in train] == [1, 2]
    assert all(m["text"] > 0 and m["grad_norm"] >= 0 and m["lr"] > 0 for m in train)
    (validation,) = [line for line in lines if "val" in line]
    assert validation["step"] == 2 and validation["val"]["text"] > 0
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["training"]["learning_rate"] == 0.002
    assert resolved["training"]["max_steps"] == 2 and resolved["run"]["stage"] == "qa"
    stage1 = load_checkpoint(run / "checkpoint", expected_preset="tiny")
    # A finished run continues only with its own configuration.
    resume = [*qa[: qa.index("--out")], "--resume", *qa[qa.index("--out") + 1 : -1], "3"]
    assert main([*resume, "--val-split", "mini_val"]) == 2
    assert "training.max_steps: 2 in the run, 3 now" in _errors(caplog)[-1]
    assert load_checkpoint(run / "best").config == stage1.config  # best by the val text loss

    # --init with the run directory instead of its checkpoint: the error says where it is.
    planning = arguments(synthetic_dataroot, tmp_path / "planning", "planning", config=config)
    with pytest.raises(Exception, match=f"its checkpoint is {run / 'checkpoint'}"):
        load_checkpoint(run)
    assert main([*planning, "--init", str(run / "checkpoint"), "--val-split", "mini_val"]) == 0
    stage3 = load_checkpoint(tmp_path / "planning" / "checkpoint")
    # Stage 3 trains only the planning head: the VLM is the stage-1 one.
    before, after = stage1.state_dict(), stage3.state_dict()
    changed = {k for k in before if not before[k].equal(after[k])}
    assert changed and all(k.startswith("planning_head.") for k in changed), sorted(changed)[:5]
    lines = (tmp_path / "planning" / "metrics.jsonl").read_text().splitlines()
    validation = [json.loads(line)["val"] for line in lines if '"val"' in line][-1]
    assert validation["planning_l2"] > 0 and 0 <= validation["meta_action_accuracy"] <= 1


def test_init_with_a_run_directory_names_its_checkpoint(synthetic_dataroot, tmp_path, caplog):
    run = tmp_path / "qa"
    (run / "checkpoints" / "step-0000004" / "model").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("")
    out = tmp_path / "planning"
    command = [*arguments(synthetic_dataroot, out, "planning"), "--init", str(run)]
    assert main(command) == 2
    assert _errors(caplog) == [
        f"{run} is a training run directory, not a checkpoint; its checkpoint is "
        f"{run / 'checkpoints' / 'step-0000004' / 'model'}"
    ]
    assert not out.exists()


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ("learning_rat: 0.1", "unknown training keys ['learning_rat']"),
        ("max_steps: 0", "max_steps must be a positive integer, got 0"),
        ("learning_rate: fast", "learning_rate must be a number, got 'fast'"),
        ("parallel: zero", "parallel must be one of ('ddp', 'fsdp'), got 'zero'"),
    ],
)
def test_bad_configuration_is_one_line_before_work(tmp_path, caplog, training, message):
    config = tmp_path / "bad.yaml"
    config.write_text(f"training:\n  {training}\n")
    assert main(arguments(tmp_path / "no-dataset", tmp_path / "run", config=config)) == 2
    (error,) = _errors(caplog)
    assert message in error and "\n" not in error
    assert not (tmp_path / "run").exists()


def test_non_positive_max_steps_is_refused(tmp_path, caplog):
    assert main(arguments(tmp_path / "no-dataset", tmp_path / "run", steps=0)) == 2
    assert _errors(caplog) == ["TrainingSettings.max_steps must be a positive integer, got 0"]
    assert not (tmp_path / "run").exists()


def test_numbers_in_any_yaml_notation(tmp_path):
    from training.settings import load_settings

    config = tmp_path / "numbers.yaml"
    config.write_text(
        "training:\n  learning_rate: 2e-4\n  weight_decay: 1E-2\n  max_steps: 1e3\n"
        "  grad_clip_norm: .5\n  warmup_steps: 10\n"
    )
    _, settings = load_settings(config)
    assert settings.learning_rate == pytest.approx(2e-4)
    assert settings.weight_decay == pytest.approx(0.01)
    assert settings.max_steps == 1000 and isinstance(settings.max_steps, int)
    assert settings.grad_clip_norm == 0.5 and settings.warmup_steps == 10


@pytest.mark.parametrize("kind", ["file", "under a file", "unwritable"])
def test_unusable_out_is_refused_before_work(tmp_path, caplog, kind):
    blocker = tmp_path / "results.txt"
    blocker.write_text("a user's file\n")
    out = {"file": blocker, "under a file": blocker / "run", "unwritable": "/proc/occvla-run"}[kind]
    command = arguments(tmp_path / "no-dataset", tmp_path / "x")
    command[command.index("--out") + 1] = str(out)
    assert main(command) == 2
    (error,) = _errors(caplog)
    assert error.startswith(f"--out {out}") and "\n" not in error
    assert blocker.read_text() == "a user's file\n"


def test_an_existing_run_is_never_overwritten(synthetic_dataroot, tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    assert main(arguments(synthetic_dataroot, run)) == 2
    assert _errors(caplog) == [
        f"--out {run} already holds files; continue that run with --resume {run}, "
        "or replace it with --overwrite"
    ]
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_missing_images_stop_after_a_bounded_count(synthetic_dataroot, tmp_path, caplog):
    """Tables unpacked, sample folders not: one line naming the first missing file, quickly."""
    dataroot = tmp_path / "nuscenes"
    dataroot.mkdir()
    for entry in synthetic_dataroot.iterdir():
        if entry.name not in ("samples", "sweeps"):
            (dataroot / entry.name).symlink_to(entry)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n')  # an earlier run, to be replaced
    assert main([*arguments(dataroot, run), "--overwrite"]) == 2
    (error,) = _errors(caplog)
    assert error.startswith("16 unreadable samples in a row, the first: cannot read image ")
    assert str(dataroot / "samples") in error
    skips = [r for r in caplog.records if r.getMessage().startswith("skipping a sample")]
    assert len(skips) == 16  # bounded: the default max_consecutive_bad_samples
    # Refused before any change: --overwrite removes the earlier run only once checks pass.
    assert [p.name for p in run.iterdir()] == ["metrics.jsonl"]


def test_help_keeps_the_examples_on_their_own_lines(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert "\nexamples:\n  python -m training.train --stage qa" in text
    assert "\n  torchrun --standalone --nproc_per_node=N -m training.train ...\n" in text


@pytest.mark.slow
def test_a_non_finite_loss_stops_the_run(synthetic_dataroot, tmp_path, caplog):
    config = tmp_path / "diverging.yaml"
    config.write_text(
        "model: {preset: tiny}\n"
        "training: {learning_rate: 1e30, warmup_steps: 0, grad_clip_norm: 1e30,"
        " progress_bar: false}\n"
    )
    command = arguments(synthetic_dataroot, tmp_path / "run", "planning", 6, config=config)
    assert main(command) == 2
    (error,) = _errors(caplog)
    assert error.startswith("the loss is nan at step ") or error.startswith("the loss is inf")
    assert not (tmp_path / "run" / "checkpoint").exists()
