"""The trainer: optimizer steps over a stage, with validation, checkpoints, resume and signals.

One optimizer step = ``grad_accum_steps`` micro-batches of ``batch_size`` per process, each
loss scaled by 1/accumulation, gradients clipped to ``grad_clip_norm``, AdamW, a cosine
schedule after linear warm-up. Logged values are the micro-batches' mean, averaged over ranks.

Resume is exact: a checkpoint holds the model, the optimizer, the scheduler, every rank's RNG
states (Python, NumPy, torch) and data position, so a run stopped (SIGTERM, SIGINT, or killed
and resumed from its last checkpoint) ends with the parameters of an uninterrupted one.
SIGTERM / SIGINT finish the current step, write a checkpoint on every rank's agreement and
raise :class:`Interrupted`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import signal
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from occvla_ros.errors import OccvlaError
from training import distributed as parallel
from training import run_directory as runs
from training.data import Batch, EpochCursor, SkipCounter
from training.distributed import Distributed
from training.logs import Progress, RunLog
from training.settings import TrainingSettings
from training.stages import Stage

logger = logging.getLogger(__name__)


class Interrupted(Exception):
    """SIGTERM or SIGINT stopped the run after writing a checkpoint."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint "
            f"{checkpoint}; continue: the same command with --resume {checkpoint.parent.parent} in "
            "place of --out"
        )
        self.signum = signum


class StopRequest:
    """SIGTERM / SIGINT handlers that only note the request; the loop stops at a step's end."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame) -> None:
        if self.signum is None:
            logger.warning("%s: stopping after this step", signal.Signals(signum).name)
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


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


class Trainer:
    """Drives ``stage`` in ``run`` (a prepared run directory); see the module docstring."""

    def __init__(
        self,
        stage: Stage,
        settings: TrainingSettings,
        dist: Distributed,
        run: Path,
        *,
        cursor: EpochCursor,
        val_loader: DataLoader | None,
    ) -> None:
        self.stage, self.settings, self.dist, self.run = stage, settings, dist, run
        self.cursor, self.val_loader = cursor, val_loader
        self.skips = SkipCounter(settings.max_consecutive_bad_samples)
        self.best: dict | None = None
        self.step = 0

    # ------------------------------------------------------------------ set-up

    def _model(self, checkpoint: Path | None) -> nn.Module:
        model = (
            self.stage.load(checkpoint / runs.MODEL_DIR)
            if checkpoint is not None
            else self.stage.build_model()
        )
        trainable = {id(p) for p in self.stage.trainable_parameters(model)}
        for parameter in model.parameters():
            parameter.requires_grad_(id(parameter) in trainable)
        count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        logger.info(
            "stage %s: %d trainable of %d parameters", self.stage.context.name, count, total
        )
        if self.settings.gradient_checkpointing:
            self.stage.enable_gradient_checkpointing(model)
        return model.to(self.dist.device).train()

    def _restore(self, checkpoint: Path, optimizer, scheduler) -> None:
        state, training = runs.read_checkpoint(checkpoint)
        parallel.load_optimizer_state(self.wrapped, optimizer, training["optimizer"], self.settings)
        scheduler.load_state_dict(training["scheduler"])
        runs.set_rng_state(training["rng"][self.dist.rank])
        self.cursor.restore(state["data"][self.dist.rank])
        self.skips.total = state["skipped_samples"]
        self.step, self.best = state["step"], state["best"]
        logger.info("resumed from %s at step %d", checkpoint, self.step)

    # ------------------------------------------------------------------ the run

    def fit(self) -> Path:
        """Train to ``max_steps``; returns the final model directory (``RUN_DIR/checkpoint``)."""
        checkpoints = runs.complete_checkpoints(self.run)
        latest = checkpoints[-1] if checkpoints else None
        self.model = self._model(latest)
        units = self.stage.fsdp_units(self.model) if parallel.is_sharded(self.settings) else []
        self.wrapped = parallel.wrap(self.model, self.dist, self.settings, units)
        parameters = [p for p in self.wrapped.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            parameters, lr=self.settings.learning_rate, weight_decay=self.settings.weight_decay
        )
        scheduler = cosine_schedule(optimizer, self.settings)
        if latest is not None:
            self._restore(latest, optimizer, scheduler)
        log = RunLog(self.run, self.step) if self.dist.is_main else None
        progress = Progress(self.settings, self.step, enabled=self.dist.is_main)
        batches = iter(self.cursor)
        try:
            with StopRequest() as stop:
                while self.step < self.settings.max_steps:
                    self.step += 1
                    lr = scheduler.get_last_lr()[0]  # the rate this step uses
                    logs = self._optimizer_step(batches, optimizer, parameters)
                    scheduler.step()
                    logs = parallel.mean_over_ranks(logs, self.dist)
                    logs["lr"] = lr
                    logs["skipped_samples"] = float(self.skips.total)
                    if log is not None:
                        log.write(self.step, "train", logs)
                    progress.update(self.step, self._samples_per_step(), logs)
                    self._validate_if_due(log)
                    stopping = parallel.any_rank(stop.signum is not None, self.dist)
                    every = self.settings.checkpoint_every
                    if stopping or (every and self.step % every == 0):
                        written = self._checkpoint(optimizer, scheduler)
                    if stopping:
                        raise Interrupted(stop.signum or signal.SIGTERM, self.step, written)
        finally:
            progress.close()
            if log is not None:
                log.close()
        return self._final()

    def _samples_per_step(self) -> int:
        settings = self.settings
        return settings.batch_size * settings.grad_accum_steps * self.dist.world_size

    def _next_batch(self, batches: Iterator[Batch]) -> dict:
        for batch in batches:
            self.skips.update(batch)
            if batch.samples is not None:
                return batch.samples
        raise OccvlaError("the training data ran out")  # EpochCursor is endless

    def _autocast(self):
        if self.dist.device.type == "cuda" and self.settings.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _optimizer_step(self, batches, optimizer, parameters) -> dict[str, float]:
        accumulation = self.settings.grad_accum_steps
        optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for micro in range(accumulation):
            batch = self._next_batch(batches)
            # DDP: reduce gradients only on the last micro-batch of the step.
            syncing = micro == accumulation - 1 or not hasattr(self.wrapped, "no_sync")
            with contextlib.nullcontext() if syncing else self.wrapped.no_sync():
                with self._autocast():
                    loss, logs = self.stage.loss(self.wrapped, batch)
                if not torch.isfinite(loss):
                    # Stop before the optimizer spreads NaN into every weight.
                    raise OccvlaError(
                        f"the loss is {float(loss.detach())} at step {self.step} (samples "
                        f"{batch.get('token')}); stopped before the update (a lower "
                        "learning_rate, or those samples, may be the cause)"
                    )
                (loss / accumulation).backward()
            logs = {"loss": float(loss.detach()), **logs}
            for name, value in logs.items():
                totals[name] = totals.get(name, 0.0) + value / accumulation
        norm = torch.nn.utils.clip_grad_norm_(parameters, self.settings.grad_clip_norm)
        totals["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        optimizer.step()
        return totals

    # ------------------------------------------------------------------ validation

    def _validate_if_due(self, log: RunLog | None) -> None:
        every = self.settings.val_every
        if self.val_loader is None or not every:
            return
        if self.step % every and self.step != self.settings.max_steps:
            return
        sharded = parallel.is_sharded(self.settings)
        self.model.eval()
        if sharded:
            self.model.unshard()  # predict() is not the root's forward: gather its parameters
        try:
            with torch.no_grad(), self._autocast():
                metrics = self.stage.validate(self.model, self._val_batches())
        finally:
            if sharded:
                self.model.reshard()
            self.model.train()
        if log is not None:
            log.write(self.step, "val", metrics)
            logger.info(
                "validation at step %d: %s",
                self.step,
                " ".join(f"{k}={v:.4g}" for k, v in metrics.items()),
            )
        self._keep_best(metrics)

    def _val_batches(self) -> Iterator[dict]:
        """The first ``val_batches`` readable batches of the val split (skips only logged)."""
        usable = (b.samples for b in self.val_loader if b.samples is not None)
        return itertools.islice(usable, self.settings.val_batches)

    def _keep_best(self, metrics: dict[str, float]) -> None:
        name = self.stage.best_metric
        if name is None or name not in metrics or not math.isfinite(metrics[name]):
            return
        value = metrics[name]
        better = self.best is None or (
            value < self.best["value"]
            if self.stage.best_mode == "min"
            else value > self.best["value"]
        )
        if not better:
            return
        self.best = {"metric": name, "value": value, "step": self.step}
        state = parallel.full_model_state(self.model, self.dist, self.settings)
        if self.dist.is_main:
            runs.write_atomically(
                self.run / runs.BEST_DIR, lambda d: self.stage.save(self.model, state, d)
            )
            logger.info("best %s=%.4g at step %d: %s", name, value, self.step, runs.BEST_DIR)
        parallel.barrier(self.dist)

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self, optimizer, scheduler) -> Path:
        """Write checkpoints/step-N atomically (collective under FSDP); returns its path."""
        model_state = parallel.full_model_state(self.model, self.dist, self.settings)
        optimizer_state = parallel.optimizer_state(self.wrapped, optimizer, self.settings)
        rng = parallel.gather(runs.rng_state(), self.dist)
        data = parallel.gather(self.cursor.state(), self.dist)
        target = runs.step_directory(self.run, self.step)
        if self.dist.is_main:
            state = {
                "step": self.step,
                "data": data,
                "best": self.best,
                "skipped_samples": self.skips.total,
            }
            training = {
                "optimizer": optimizer_state,
                "scheduler": scheduler.state_dict(),
                "rng": rng,
            }

            def write(directory: Path) -> None:
                self.stage.save(self.model, model_state, directory / runs.MODEL_DIR)
                runs.write_step_files(directory, state, training)

            runs.write_atomically(target, write)
            runs.prune(self.run, self.settings.keep_checkpoints)
            logger.info("checkpoint written to %s", target)
        parallel.barrier(self.dist)
        return target

    def _final(self) -> Path:
        final = self.run / runs.FINAL_DIR
        state = parallel.full_model_state(self.model, self.dist, self.settings)
        if self.dist.is_main:
            runs.write_atomically(final, lambda d: self.stage.save(self.model, state, d))
            logger.info("final model written to %s", final)
        parallel.barrier(self.dist)
        return final
