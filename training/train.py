"""Train one OccVLA stage on nuScenes-format data.

    python -m training.train --stage qa|occupancy_language|planning \\
        --config training/configs/tiny.yaml --dataroot D --version V --split S --out RUN_DIR \\
        [--init CHECKPOINT]

Single process, or data-parallel under ``torchrun --standalone --nproc_per_node=N`` (DDP; gloo
on CPU, nccl on CUDA; a DistributedSampler shards the keyframes). AdamW over the stage's
trainable parameters only, gradient clipping, cosine schedule with warm-up, bf16 autocast on
CUDA. Writes ``RUN_DIR/config.yaml`` (resolved), ``metrics.jsonl`` and checkpoints
(``checkpoint-step<N>/`` periodically, ``checkpoint/`` at the end) from rank 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from occvla_ros.errors import OccvlaError
from occvla_ros.model.configuration import STAGES, OccVLAConfig
from occvla_ros.model.occvla import OccVLA
from training.settings import TrainingSettings, load_settings, save_settings

logger = logging.getLogger("training.train")


@dataclass
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from occvla_ros.data.index import add_loader_arguments

    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--config", required=True, type=Path, help="training YAML")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--init", type=Path, help="checkpoint to start from (earlier stage)")
    parser.add_argument(
        "--occworld-vqvae",
        type=Path,
        help="OccWorld tokenizer weights for the frozen occupancy decoder (replace the decoder "
        "of a fresh model or of the --init checkpoint)",
    )
    parser.add_argument("--max-steps", type=int, help="override training.max_steps")
    add_loader_arguments(parser)
    return parser.parse_args(argv)


def setup_distributed() -> Distributed:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if world_size > 1:
        if cuda:
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    rank = torch.distributed.get_rank() if world_size > 1 else 0
    return Distributed(rank, world_size, device)


def build_model(config: OccVLAConfig, init: Path | None, device: torch.device) -> OccVLA:
    if init is None:
        return OccVLA(config).to(device)
    from occvla_ros.model.checkpoint import load_checkpoint

    model = load_checkpoint(init, device=device, expected_preset=config.preset)
    logger.info("initialised from %s (its model configuration is used)", init)
    return model


def load_decoder(model: OccVLA, path: Path) -> None:
    """OccWorld's pretrained tokenizer into the occupancy branch's frozen VQ-VAE."""
    from occvla_ros.model.vqvae import load_occworld_vqvae

    if model.occupancy is None:
        raise OccvlaError("--occworld-vqvae given but the model has no occupancy branch")
    load_occworld_vqvae(model.occupancy.vqvae, path)
    logger.info("occupancy decoder initialised from OccWorld weights %s", path)


def build_dataloader(
    args: argparse.Namespace,
    config: OccVLAConfig,
    settings: TrainingSettings,
    dist: Distributed,
) -> tuple[DataLoader, DistributedSampler | None]:
    from occvla_ros.data.datasets import KeyframeDataset, collate_keyframes
    from occvla_ros.data.index import index_from_arguments

    records = index_from_arguments(args).records
    dataset = KeyframeDataset(
        records, args.stage, config.image_size, vocabulary=config.meta_actions, skip_bad=True
    )
    if len(dataset) == 0:
        raise OccvlaError(f"no {args.stage} samples in {args.dataroot} ({args.split})")
    sampler = None
    if dist.world_size > 1:
        sampler = DistributedSampler(dataset, dist.world_size, dist.rank, seed=settings.seed)
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=settings.num_workers,
        collate_fn=collate_keyframes,
        drop_last=False,
    )
    return loader, sampler


def freeze_for_stage(model: OccVLA, stage: str) -> list[torch.nn.Parameter]:
    """requires_grad only on the stage's parameters (DDP then syncs only those)."""
    trainable = model.trainable_parameters(stage)
    keep = {id(p) for p in trainable}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)
    count = sum(p.numel() for p in trainable)
    total = sum(p.numel() for p in model.parameters())
    logger.info("stage %s: %d trainable of %d parameters", stage, count, total)
    return trainable


def cosine_schedule(
    optimizer: torch.optim.Optimizer, settings: TrainingSettings
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        span = max(1, settings.max_steps - settings.warmup_steps)
        progress = min(1.0, (step - settings.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def batches(loader: DataLoader, sampler: DistributedSampler | None):
    """Endless iteration over epochs; batches whose samples were all skipped are dropped."""
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        for batch in loader:
            if batch is not None:
                yield batch
        epoch += 1


def train_step(
    model: torch.nn.Module,
    batch: dict,
    stage: str,
    *,
    optimizer: torch.optim.Optimizer,
    parameters: list[torch.nn.Parameter],
    settings: TrainingSettings,
    device: torch.device,
) -> dict[str, float]:
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    with autocast:
        loss, logs = model(batch, stage)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip_norm))
    optimizer.step()
    return logs


def save(model: OccVLA, directory: Path) -> None:
    from occvla_ros.model.checkpoint import save_checkpoint

    save_checkpoint(model, directory)
    logger.info("checkpoint written to %s", directory)


def train(args: argparse.Namespace) -> Path:
    """Run the stage; returns the final checkpoint directory."""
    config, settings = load_settings(args.config)
    if args.max_steps is not None:
        settings.max_steps = args.max_steps
    dist = setup_distributed()
    torch.manual_seed(settings.seed)
    model = build_model(config, args.init, dist.device)
    if args.occworld_vqvae is not None:
        load_decoder(model, args.occworld_vqvae)
    config = model.config
    parameters = freeze_for_stage(model, args.stage)
    model.train()
    wrapped: torch.nn.Module = model
    if dist.world_size > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    optimizer = torch.optim.AdamW(
        parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    scheduler = cosine_schedule(optimizer, settings)
    loader, sampler = build_dataloader(args, config, settings, dist)
    if dist.is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        save_settings(args.out / "config.yaml", config, settings)
    metrics = (args.out / "metrics.jsonl").open("a") if dist.is_main else None
    for step, batch in zip(
        range(1, settings.max_steps + 1), batches(loader, sampler), strict=False
    ):
        logs = train_step(
            wrapped,
            batch,
            args.stage,
            optimizer=optimizer,
            parameters=parameters,
            settings=settings,
            device=dist.device,
        )
        scheduler.step()
        if dist.is_main:
            _log(metrics, step, logs, scheduler.get_last_lr()[0], settings)
            if settings.checkpoint_every and step % settings.checkpoint_every == 0:
                save(model, args.out / f"checkpoint-step{step}")
    final = args.out / "checkpoint"
    if dist.is_main:
        metrics.close()
        save(model, final)
    if dist.world_size > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return final


def _log(metrics, step: int, logs: dict[str, float], lr: float, settings: TrainingSettings):
    metrics.write(json.dumps({"step": step, "lr": lr, **logs}) + "\n")
    metrics.flush()
    if step == 1 or step % settings.log_every == 0 or step == settings.max_steps:
        values = " ".join(f"{name}={value:.4f}" for name, value in logs.items())
        logger.info("step %d/%d lr=%.2e %s", step, settings.max_steps, lr, values)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    try:
        train(args)
    except OccvlaError as error:
        logger.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
