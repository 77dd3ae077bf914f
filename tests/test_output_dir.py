"""An unusable --out is refused before any work, by every command that writes one."""

from __future__ import annotations

import logging

import pytest

from occvla_ros import cli
from occvla_ros.output_dir import check_output_directory

COMMANDS = {
    "evaluate": ["evaluate", "--checkpoint", "C", "--dataroot", "D"],
    "train-ego-baseline": ["train-ego-baseline", "--dataroot", "D"],
    "bag convert": ["bag", "convert", "--dataroot", "D"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", ["file", "under a file", "unwritable"])
def test_commands_refuse_an_unusable_out_first(tmp_path, caplog, command, kind):
    blocker = tmp_path / "report.md"
    blocker.write_text("a user's results\n")
    out = {"file": blocker, "under a file": blocker / "out", "unwritable": "/proc/occvla-out"}
    with caplog.at_level(logging.ERROR):
        # The dataset and checkpoint do not exist: the --out check comes before reading them.
        assert cli.main([*COMMANDS[command], "--out", str(out[kind])]) == 2
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.startswith(f"--out {out[kind]}") and "\n" not in error
    assert blocker.read_text() == "a user's results\n"


def test_a_new_directory_is_accepted_and_not_created(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_output_directory(target) == target
    assert not (tmp_path / "a").exists()
    assert check_output_directory(tmp_path) == tmp_path  # an existing directory
