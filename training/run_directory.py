"""The run directory: what is in it, who may write it, and checkpoints that are never half-written.

Layout::

    RUN_DIR/config.yaml          model + training + run sections (resume checks it)
    RUN_DIR/metrics.jsonl        one line per optimizer step and per validation
    RUN_DIR/tensorboard/         TensorBoard event files of the same values
    RUN_DIR/checkpoints/step-0000100/
        model/                   the stage's model directory (``Stage.save``)
        training_state.pt        optimizer, scheduler, RNG states (tensors only: weights_only)
        state.json               step, data position, best value; written last
    RUN_DIR/best/                the model with the best validation metric so far
    RUN_DIR/checkpoint/          the final model (what ``--init`` and the planner read)

Every checkpoint is written into a temporary sibling (``.tmp-...``) and renamed into place, so
a process killed while writing leaves a stray temporary directory (removed at the next start),
never a checkpoint that looks complete; the last ``keep_checkpoints`` are kept.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from occvla_ros.errors import CheckpointError, ConfigError
from occvla_ros.output_dir import check_output_directory

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
TRAINING_STATE_FILE = "training_state.pt"
STATE_FILE = "state.json"
FINAL_DIR = "checkpoint"
BEST_DIR = "best"
_TEMPORARY_PREFIX = ".tmp-"


def check_new(out: Path, overwrite: bool) -> None:
    """``out`` is a writable directory holding no run, or ``overwrite`` allows replacing it."""
    check_output_directory(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {out} already holds files; continue that run with --resume {out}, "
            "or replace it with --overwrite"
        )


def clear(out: Path) -> None:
    """--overwrite, once every check has passed: the previous run goes."""
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
        logger.warning("--overwrite: removed the previous run in %s", out)


def check_resumable(run: Path, resolved: dict[str, Any]) -> None:
    """The run exists and was started with the same configuration and arguments."""
    check_output_directory(run, "--resume")
    path = run / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"--resume {run}: no {CONFIG_FILE}; is it a training run directory?")
    recorded = yaml.safe_load(path.read_text())
    current = yaml.safe_load(yaml.safe_dump(resolved))  # tuples -> lists, as recorded
    differences = sorted(_differences(recorded, current))
    if differences:
        raise ConfigError(
            f"--resume {run}: the configuration differs from the run's {path}: "
            + "; ".join(differences[:6])
        )


def _differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(recorded) | set(current), key=str):
            found += _differences(recorded.get(key), current.get(key), f"{prefix}{key}.")
        return found
    if recorded != current:
        return [f"{prefix.rstrip('.')}: {_short(recorded)} in the run, {_short(current)} now"]
    return []


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def write_config(run: Path, resolved: dict[str, Any]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / CONFIG_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False))


def remove_temporaries(run: Path) -> None:
    """Directories left by a process killed while writing a checkpoint.

    A previous ``best/`` or ``checkpoint/`` set aside for its replacement is put back when the
    replacement never arrived (a kill between the two renames of :func:`write_atomically`).
    """
    for old in run.glob(_TEMPORARY_PREFIX + "old-*"):
        target = run / old.name.removeprefix(_TEMPORARY_PREFIX + "old-").rsplit("-", 1)[0]
        if not target.exists():
            old.rename(target)
    for directory in (run, run / CHECKPOINTS_DIR):
        for stray in directory.glob(_TEMPORARY_PREFIX + "*"):
            logger.warning("removing %s (a checkpoint interrupted while being written)", stray)
            shutil.rmtree(stray, ignore_errors=True)


def step_directory(run: Path, step: int) -> Path:
    return run / CHECKPOINTS_DIR / f"step-{step:07d}"


def complete_checkpoints(run: Path) -> list[Path]:
    """Step checkpoints with their state.json (written last), oldest first."""
    return sorted(d for d in (run / CHECKPOINTS_DIR).glob("step-*") if (d / STATE_FILE).is_file())


def write_atomically(target: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(temporary)`` then rename the temporary directory to ``target``.

    An existing ``target`` is swapped out only after the new one is complete.
    """
    temporary = target.with_name(f"{_TEMPORARY_PREFIX}{target.name}-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    write(temporary)
    _sync_directory(temporary)
    previous = target.with_name(f"{_TEMPORARY_PREFIX}old-{target.name}-{os.getpid()}")
    if target.exists():
        target.rename(previous)
    temporary.rename(target)
    _sync_directory(target.parent)
    shutil.rmtree(previous, ignore_errors=True)
    return target


def _sync_directory(directory: Path) -> None:
    """fsync every file and the directory itself, so a rename never precedes the data."""
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def prune(run: Path, keep: int) -> None:
    for old in complete_checkpoints(run)[:-keep]:
        shutil.rmtree(old)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, as tensors and ints."""
    version, mt_state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": torch.tensor(mt_state, dtype=torch.int64),
        "python_version": version,
        "python_gauss": gauss,
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_position": int(position),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached": float(cached),
        "numpy_kind": kind,
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(
        (state["python_version"], tuple(state["python"].tolist()), state["python_gauss"])
    )
    np.random.set_state(
        (
            state["numpy_kind"],
            state["numpy"].numpy().astype(np.uint32),
            state["numpy_position"],
            state["numpy_has_gauss"],
            state["numpy_cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state.json, training_state.pt) of a step checkpoint; never unpickles arbitrary objects."""
    try:
        state = json.loads((directory / STATE_FILE).read_text())
        training = torch.load(directory / TRAINING_STATE_FILE, weights_only=True)
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"cannot read the checkpoint {directory}: {error}") from error
    return state, training


def write_step_files(directory: Path, state: dict[str, Any], training: dict[str, Any]) -> None:
    """training_state.pt, then state.json (its presence marks the checkpoint complete)."""
    torch.save(training, directory / TRAINING_STATE_FILE)
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))
