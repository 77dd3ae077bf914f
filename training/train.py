"""Train one stage of OccVLA on nuScenes-format data (docs/training.md).

examples:
  python -m training.train --stage qa --config training/configs/tiny.yaml \\
      --dataroot D --version v1.0-mini --split mini_train --val-split mini_val --out runs/qa
  python -m training.train --stage planning --config training/configs/tiny.yaml \\
      --dataroot D --init runs/qa/checkpoint --out runs/plan
  python -m training.train ... --resume runs/plan    (same arguments, --resume for --out)
  torchrun --standalone --nproc_per_node=N -m training.train ...

The run directory gets config.yaml, metrics.jsonl, tensorboard/, checkpoints/step-N/ (model,
optimizer, scheduler, RNG, data position), best/ (with validation) and checkpoint/ (the final
model). SIGTERM or Ctrl-C writes a checkpoint and stops; --resume continues exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from torch.utils.data import DataLoader

from occvla_ros.errors import OccvlaError
from training import distributed as parallel
from training import run_directory as runs
from training.data import EpochCursor, ResumableSampler, make_loader, probe
from training.loop import Interrupted, Trainer
from training.settings import load_settings, resolved_settings
from training.stages import STAGES, Stage, StageContext, stage_class

logger = logging.getLogger("training.train")

# Arguments that define a run: --resume refuses to continue it with others.
_RUN_ARGUMENTS = (
    "stage",
    "init",
    "dataroot",
    "version",
    "split",
    "val_split",
    "occupancy_root",
    "omnidrive_root",
    "no_can_bus",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from occvla_ros.data.index import add_loader_arguments

    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stage", required=True, choices=list(STAGES))
    parser.add_argument("--config", required=True, type=Path, help="training YAML")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="new run directory")
    where.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue this run from its last checkpoint"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    parser.add_argument(
        "--init", type=Path, help="model directory of the previous stage (RUN_DIR/checkpoint)"
    )
    parser.add_argument("--max-steps", type=int, help="override training.max_steps")
    add_loader_arguments(parser)
    parser.add_argument("--val-split", help="split validated every training.val_every steps")
    # Once per class that defines them (the three OccVLA stages share their flags).
    owners = {
        next(c for c in stage_class(name).__mro__ if "add_arguments" in vars(c)) for name in STAGES
    }
    for owner in sorted(owners, key=lambda c: c.__qualname__):
        owner.add_arguments(parser)
    return parser.parse_args(argv)


def _records(args: argparse.Namespace, split: str):
    from occvla_ros.data.index import index_from_arguments

    return index_from_arguments(argparse.Namespace(**{**vars(args), "split": split})).records


def _validation_loader(stage: Stage, args: argparse.Namespace, settings) -> DataLoader | None:
    """The val split in a fixed order, the same on every rank (None: no validation)."""
    if args.val_split is None or not settings.val_every:
        return None
    dataset = stage.dataset(_records(args, args.val_split), "val")
    sampler = ResumableSampler(len(dataset), seed=0, rank=0, world_size=1, shuffle=False)
    return make_loader(dataset, sampler, stage.collate, settings)


def train(args: argparse.Namespace) -> Path:
    """Run the stage; returns the final model directory."""
    config, settings = load_settings(args.config)
    if args.max_steps is not None:
        settings = dataclasses.replace(settings, max_steps=args.max_steps)  # validated again
    dist = parallel.setup()
    try:
        run = args.resume or args.out
        context = StageContext(args.stage, config, settings, args.init, args, dist.device)
        stage = stage_class(args.stage)(context)
        arguments = {name: _plain(getattr(args, name, None)) for name in _RUN_ARGUMENTS}
        resolved = resolved_settings(
            context.config, settings, {**arguments, "world_size": dist.world_size}
        )
        # Every rank checks (nothing is written or removed until all checks have passed).
        if args.resume is not None:
            runs.check_resumable(run, resolved)
        else:
            runs.check_new(run, args.overwrite)
        # Bad data fails here, before the model is built.
        dataset = stage.dataset(_records(args, args.split), "train")
        probe(dataset, settings.max_consecutive_bad_samples)
        val_loader = _validation_loader(stage, args, settings)
        parallel.barrier(dist)
        if dist.is_main:
            if args.resume is None:
                runs.clear(run)
                runs.write_config(run, resolved)
            runs.remove_temporaries(run)
        parallel.barrier(dist)
        sampler = ResumableSampler(
            len(dataset),
            seed=settings.seed,
            rank=dist.rank,
            world_size=dist.world_size,
            shuffle=True,
        )
        loader = make_loader(dataset, sampler, stage.collate, settings)
        _seed(settings.seed)
        cursor = EpochCursor(loader, sampler, settings.batch_size)
        return Trainer(stage, settings, dist, run, cursor=cursor, val_loader=val_loader).fit()
    finally:
        parallel.shutdown(dist)


def _plain(value):
    return str(value) if isinstance(value, Path) else value


def _seed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    try:
        train(args)
    except Interrupted as stop:
        logger.error("%s", stop)
        return 128 + stop.signum
    except OccvlaError as error:
        logger.error("%s", error)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the first step: no checkpoint to write yet
        logger.error("interrupted before training started; no checkpoint written")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
