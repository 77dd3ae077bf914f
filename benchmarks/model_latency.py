"""Tiny OccVLA inference latency on this machine, measured side by side in one run.

0. one training step (forward, backward, AdamW) on one sample with 6 views, per stage;
1. ``predict`` with the occupancy branch on vs off (the branch only reads the visual hidden
   states, so "off" should cost nothing extra over the VLM + planning head);
2. single-pass meta-action scoring (one prefill + one batched step over all K candidates) vs
   token-by-token greedy decoding of the same answer (what ``generate()`` does).

    .venv/bin/python benchmarks/model_latency.py [--repeats 10] [--batch 1] [--threads 2]

Random weights (a trained checkpoint has the same cost). Prints a table; record it in
docs/model.md with the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from machine import describe_machine

from occvla_ros.constants import NUM_OCC_CLASSES, OCC_GRID_SHAPE
from occvla_ros.model.configuration import OccVLAConfig
from occvla_ros.model.occvla import OccVLA


def _median_ms(function, repeats: int) -> float:
    function()  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def _one_sample(config: OccVLAConfig, pixels: torch.Tensor, ego: torch.Tensor) -> dict:
    """A batch of one keyframe with every key the datasets produce (random labels)."""
    grid = (1, *OCC_GRID_SHAPE)
    return {
        "pixel_values": pixels,
        "ego_state": ego,
        "meta_action": torch.tensor([1]),
        "meta_action_text": [config.meta_actions.texts[1]],
        "question": ["is there a pedestrian ahead?"],
        "answer": ["yes, on the left sidewalk"],
        "trajectory": torch.randn(1, 6, 2),
        "trajectory_mask": torch.ones(1, 6, dtype=torch.bool),
        "occupancy": torch.randint(0, NUM_OCC_CLASSES, grid),
        "occupancy_mask": torch.ones(grid, dtype=torch.bool),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(describe_machine())
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = OccVLAConfig.from_preset("tiny")
    model = OccVLA(config).eval()
    pixels = torch.randn(args.batch, 6, 3, config.image_size, config.image_size)
    ego = torch.tensor([[8.0, 0.2, 0.01]]).repeat(args.batch, 1)

    def greedy_answer():
        with torch.no_grad():
            tokens = model.processor.prompt_batch(model._prompts({"ego_state": ego}))
            prefix = model._prefix(tokens, pixels, use_cache=True)
            longest = model.candidates.ids.shape[1]
            # Always decode as many tokens as the longest meta-action answer (fair comparison
            # with scoring, which covers every candidate's full length).
            model.processor.eos_id, eos = -1, model.processor.eos_id
            try:
                return model._greedy_continuation(tokens, prefix, longest)
            finally:
                model.processor.eos_id = eos

    def training_step(stage: str):
        batch = _one_sample(config, pixels[:1], ego[:1])
        parameters = model.trainable_parameters(stage)
        optimizer = torch.optim.AdamW(parameters, lr=1e-4)

        def step():
            model.train()
            loss, _ = model(batch, stage)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return step

    rows = {
        "training step, stage qa": training_step("qa"),
        "training step, stage occupancy_language": training_step("occupancy_language"),
        "training step, stage planning": training_step("planning"),
        "predict, occupancy off": lambda: model.predict(pixels, ego, with_occupancy=False),
        "predict, occupancy on": lambda: model.predict(pixels, ego, with_occupancy=True),
        "meta-action: single-pass scoring of all candidates": lambda: torch.no_grad()(
            model.score_meta_actions
        )(pixels, ego, None),
        "meta-action: greedy token-by-token decoding": greedy_answer,
    }
    results = {name: _median_ms(fn, args.repeats) for name, fn in rows.items()}
    print(
        f"tiny OccVLA, batch {args.batch}, {args.threads} threads, median of {args.repeats}; "
        f"{len(config.meta_actions)} candidates, longest answer "
        f"{model.candidates.ids.shape[1]} tokens"
    )
    for name, value in results.items():
        print(f"  {name:<52}{value:10.1f} ms")
    print(f"  load average during the run: {os.getloadavg()[0]:.1f}")
    off, on = results["predict, occupancy off"], results["predict, occupancy on"]
    scoring = results["meta-action: single-pass scoring of all candidates"]
    greedy = results["meta-action: greedy token-by-token decoding"]
    print(f"  occupancy on / off: {on / off:.2f}x   greedy / scoring: {greedy / scoring:.2f}x")


if __name__ == "__main__":
    main()
