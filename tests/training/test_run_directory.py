"""Checkpoint directories appear whole or not at all; leftovers of a kill are cleaned up."""

from __future__ import annotations

import pytest

from training import run_directory as runs


def _write_step(run, step: int, fail: bool = False) -> None:
    def write(directory):
        (directory / "model").mkdir()
        if fail:
            raise KeyboardInterrupt  # a process stopped half-way through the write
        runs.write_step_files(directory, {"step": step}, {"rng": {}})

    runs.write_atomically(runs.step_directory(run, step), write)


def test_a_write_interrupted_half_way_leaves_no_checkpoint(tmp_path):
    _write_step(tmp_path, 4)
    with pytest.raises(KeyboardInterrupt):
        _write_step(tmp_path, 8, fail=True)
    assert runs.complete_checkpoints(tmp_path) == [runs.step_directory(tmp_path, 4)]
    runs.remove_temporaries(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000004"]


def test_keep_last_n(tmp_path):
    for step in (2, 4, 6, 8):
        _write_step(tmp_path, step)
    runs.prune(tmp_path, keep=2)
    assert [p.name for p in runs.complete_checkpoints(tmp_path)] == ["step-0000006", "step-0000008"]


def test_a_replaced_directory_set_aside_comes_back_if_its_successor_never_arrived(tmp_path):
    old = tmp_path / ".tmp-old-best-123"  # best/ renamed aside, then the process was killed
    old.mkdir()
    (old / "model.safetensors").write_text("weights")
    (tmp_path / ".tmp-best-123").mkdir()  # the unfinished successor
    runs.remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    assert (tmp_path / "best" / "model.safetensors").read_text() == "weights"
    runs.write_atomically(tmp_path / "best", lambda d: (d / "model.safetensors").write_text("new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    assert (tmp_path / "best" / "model.safetensors").read_text() == "new"
