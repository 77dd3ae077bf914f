"""`occvla evaluate` and `occvla train-ego-baseline` from the command line."""

from __future__ import annotations

import logging

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
