"""What a person watching a run sees: metrics.jsonl, TensorBoard, a progress bar, log lines.

Rank 0 writes everything; the values are already averaged over ranks. On resume, lines and
events after the checkpoint's step (written before a kill, then recomputed) are dropped, so
metrics.jsonl and TensorBoard hold one value per step.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from training.run_directory import METRICS_FILE, TENSORBOARD_DIR
from training.settings import TrainingSettings

logger = logging.getLogger(__name__)


class RunLog:
    """metrics.jsonl + TensorBoard scalars (``train/<name>``, ``val/<name>``)."""

    def __init__(self, run: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = run / METRICS_FILE
        _truncate_after(self.path, start_step)
        self.metrics = self.path.open("a")
        # purge_step drops the events a killed run wrote after its last checkpoint.
        self.tensorboard = SummaryWriter(
            str(run / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None
        )

    def write(self, step: int, kind: str, values: dict[str, float]) -> None:
        record = {"step": step, **values} if kind == "train" else {"step": step, kind: values}
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        for name, value in values.items():
            self.tensorboard.add_scalar(f"{kind}/{name}", value, step)

    def close(self) -> None:
        self.metrics.close()
        self.tensorboard.close()


def _truncate_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


class Progress:
    """A tqdm bar over optimizer steps (loss, samples/s, ETA), or periodic log lines."""

    def __init__(self, settings: TrainingSettings, start_step: int, enabled: bool) -> None:
        self.settings = settings
        self.bar = None
        if enabled and settings.progress_bar:
            from tqdm import tqdm

            self.bar = tqdm(
                total=settings.max_steps, initial=start_step, unit="step", dynamic_ncols=True
            )
        self.enabled = enabled
        self.started = time.monotonic()
        self.samples = 0

    def update(self, step: int, samples: int, logs: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.samples += samples
        rate = self.samples / max(time.monotonic() - self.started, 1e-9)
        loss = logs.get("loss", float("nan"))
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", samples_per_s=f"{rate:.1f}", refresh=False)
            self.bar.update(1)
        if step == 1 or step % self.settings.log_every == 0 or step == self.settings.max_steps:
            values = " ".join(f"{name}={value:.4g}" for name, value in logs.items())
            message = f"step {step}/{self.settings.max_steps} {values} samples/s={rate:.1f}"
            if self.bar is not None:
                self.bar.write(message)
            else:
                logger.info("%s", message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
