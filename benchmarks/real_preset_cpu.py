"""The real-size model (paligemma2-3b-224, random weights) on this CPU: time and peak memory.

    nice -n 10 .venv/bin/python benchmarks/real_preset_cpu.py [--threads 2] [--dtype float32]
        [--plan-dtype float32] [--workdir DIR]

Two phases, each in its own process so that each one's peak resident memory is its own:

1. ``train``: builds the model (3.08 B parameters, stand-in tokenizer of PaliGemma2's 257,152
   tokens, see real_preset.py), turns on gradient checkpointing, and runs one training step
   (forward, backward, AdamW over the stage's trainable parameters) of each stage at batch 1 on
   6 views at 224 px; then writes a checkpoint (bf16, which halves the file and the memory of
   loading it);
2. ``plan``: ``Planner`` loads that checkpoint and plans once from six 1600 x 900 camera frames.

For every step it prints the wall time and the peak resident set size (VmHWM, reset before each
step through /proc/self/clear_refs), which includes the weights. The machine has 24 GiB: check
``free -g`` first and run nothing else big beside it. ``--text-layers``/``--vision-layers``
shrink the model to try the script quickly; only full-size numbers belong in docs/model.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import describe_machine
from real_preset import build_model, real_config, training_sample

from occvla_ros.model.configuration import STAGES

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM)


def _peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status")


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no MemAvailable in /proc/meminfo")


class _Row:
    """Times a block and prints its wall time, peak RSS and the load average at its end."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> _Row:
        gc.collect()
        _reset_peak_rss()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            seconds = time.perf_counter() - self.start
            print(
                f"  {self.name:<52}{seconds:8.1f} s   peak RSS {_peak_rss_gib():5.2f} GiB   "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


def train_phase(args: argparse.Namespace) -> None:
    config = real_config(args.text_layers, args.vision_layers)
    # Built in the training dtype from the start: a float32 build cast to bf16 afterwards peaks
    # at the float32 size (12.3 GB) for nothing.
    torch.set_default_dtype(DTYPES[args.dtype])
    with _Row(f"build (random init, LoRA, checkpointing on), {args.dtype}"):
        model = build_model(config)
    parameters = sum(p.numel() for p in model.parameters())
    pixels = torch.randn(1, 6, 3, config.image_size, config.image_size)
    batch = training_sample(config, pixels, torch.tensor([[8.0, 0.2, 0.01]]))
    tokens = model.processor.training_batch(
        model._prompts(batch, questions=batch["question"]), batch["answer"]
    )
    print(
        f"paligemma2-3b-224: {parameters:,} parameters, {args.dtype}; batch 1, 6 views, "
        f"{tokens.input_ids.shape[1]} tokens (qa), vocabulary {len(model.tokenizer):,}",
        flush=True,
    )
    model.train()
    for stage in STAGES:
        trainable = model.trainable_parameters(stage)
        optimizer = torch.optim.AdamW(trainable, lr=1e-4)
        with _Row(f"training step, stage {stage}"):
            loss, _ = model(batch, stage)
            loss.backward()
            optimizer.step()
        print(
            f"    loss {float(loss.detach()):.3f}, {sum(p.numel() for p in trainable):,} trainable"
        )
        optimizer.zero_grad(set_to_none=True)
        del optimizer, loss
    from occvla_ros.model.checkpoint import save_checkpoint

    with _Row("save checkpoint (bf16)"):
        save_checkpoint(model.to(torch.bfloat16), args.workdir / "checkpoint")


def plan_phase(args: argparse.Namespace) -> None:
    import numpy as np

    from occvla_ros.constants import NUM_CAMERAS
    from occvla_ros.runtime.planner import CameraFrame, Planner

    # load_checkpoint builds the model in torch's default dtype before loading the file and
    # casting: in float32 that alone is 12.3 GB, so a bf16 plan builds in bf16 from the start.
    torch.set_default_dtype(DTYPES[args.plan_dtype])
    with _Row(f"Planner: load checkpoint ({args.plan_dtype})"):
        planner = Planner(
            args.workdir / "checkpoint",
            device="cpu",
            dtype=args.plan_dtype,
            warmup=False,
            cpu_threads=args.threads,
        )
    generator = np.random.default_rng(0)
    frames = [
        CameraFrame(generator.integers(0, 256, (900, 1600, 3), dtype=np.uint8), "rgb8")
        for _ in range(NUM_CAMERAS)
    ]
    with _Row("Planner.plan, six 1600 x 900 frames"):
        command = "go straight" if planner.uses_command else None
        plan = planner.plan(frames, (8.0, 0.2, 0.01), command=command)
    timings = plan.timings
    print(
        f"    {plan.meta_action}; preprocess {timings.preprocess_ms:.0f} ms, inference "
        f"{timings.inference_ms / 1e3:.1f} s, total {timings.total_ms / 1e3:.1f} s"
    )
    planner.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="training phase")
    parser.add_argument("--plan-dtype", choices=DTYPES, default="float32")
    parser.add_argument("--workdir", type=Path, help="where the checkpoint goes (default: temp)")
    parser.add_argument("--text-layers", type=int, help="fewer Gemma2 layers (script check only)")
    parser.add_argument("--vision-layers", type=int, help="fewer SigLIP layers (same)")
    parser.add_argument("--phase", choices=("all", "train", "plan"), default="all")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.phase == "train":
        train_phase(args)
        return 0
    if args.phase == "plan":
        plan_phase(args)
        return 0
    print(describe_machine())
    # On a shared machine, if memory runs out, the kernel should end this run, not a neighbour's.
    Path("/proc/self/oom_score_adj").write_text("1000")
    print(f"memory available at the start: {_available_gib():.1f} GiB; {args.threads} threads")
    with tempfile.TemporaryDirectory(prefix="real_preset_") as temporary:
        workdir = args.workdir or Path(temporary)
        for phase in ("train", "plan"):
            command = [sys.executable, __file__, "--phase", phase, "--workdir", str(workdir)]
            command += ["--threads", str(args.threads), "--dtype", args.dtype]
            command += ["--plan-dtype", args.plan_dtype]
            for name in ("text_layers", "vision_layers"):
                if getattr(args, name) is not None:
                    command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            result = subprocess.run(command, check=False)
            if result.returncode:
                print(f"phase {phase} failed with status {result.returncode}")
                return result.returncode
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
