"""Real-size OccVLA (PaliGemma2-3B-224 shapes, random weights) on a GPU: latency and memory.

    .venv/bin/python benchmarks/real_preset_gpu.py [--repeats 10]

Batch 1, 6 views at 224 px (1,536 image tokens), bf16. Measures the prefill (images + prompt,
with KV cache), one decode step, the whole single-pass meta-action scoring, ``predict`` with the
occupancy branch off and on, and the peak GPU memory. Random weights have the cost of trained
ones. Without a CUDA GPU it says so and exits with status 1: no number is invented.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from machine import describe_machine


def _median_ms(function, repeats: int) -> float:
    function()
    torch.cuda.synchronize()
    timings = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        end.record()
        torch.cuda.synchronize()
        timings.append(start.elapsed_time(end))
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(describe_machine())
    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: the real-size benchmark needs one; nothing measured")
        return 1
    from occvla_ros.model.configuration import OccVLAConfig
    from occvla_ros.model.occvla import OccVLA
    from occvla_ros.model.processing import train_tiny_tokenizer

    device = torch.device("cuda")
    config = OccVLAConfig.from_preset("paligemma2-3b-224")
    # Only ids matter for timing: the tiny tokenizer stands in for PaliGemma's (same special
    # token roles; the 257,152-entry vocabulary and image id come from the configuration).
    tokenizer = train_tiny_tokenizer(config.meta_actions)
    torch.manual_seed(0)
    with torch.device(device):
        model = OccVLA(config, tokenizer)
    model = model.to(torch.bfloat16).eval()
    pixels = torch.randn(1, 6, 3, 224, 224, device=device, dtype=torch.bfloat16)
    ego = torch.tensor([[8.0, 0.2, 0.01]], device=device)
    tokens = model.processor.prompt_batch(model._prompts({"ego_state": ego})).to(device)

    @torch.no_grad()
    def prefill():
        return model._prefix(tokens, pixels, use_cache=True)

    @torch.no_grad()
    def prefill_and_one_decode_step():
        prefix = prefill()
        next_ids = prefix.logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([tokens.attention_mask, torch.ones_like(next_ids)], dim=1)
        model.backbone.continue_with_cache(
            next_ids, mask, tokens.position_ids[:, -1:] + 1, prefix.past_key_values
        )

    torch.cuda.reset_peak_memory_stats()
    results = {
        "prefill (6 views + prompt)": _median_ms(prefill, args.repeats),
        "prefill + 1 decode step": _median_ms(prefill_and_one_decode_step, args.repeats),
        "meta-action scoring (all candidates)": _median_ms(
            lambda: torch.no_grad()(model.score_meta_actions)(pixels, ego, None), args.repeats
        ),
        "predict, occupancy off": _median_ms(lambda: model.predict(pixels, ego), args.repeats),
        "predict, occupancy on": _median_ms(
            lambda: model.predict(pixels, ego, with_occupancy=True), args.repeats
        ),
    }
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"{torch.cuda.get_device_name()}: real-size OccVLA, bf16, batch 1, 6 views")
    print(f"  sequence length {tokens.input_ids.shape[1]} tokens")
    for name, value in results.items():
        print(f"  {name:<40}{value:9.1f} ms")
    decode = results["prefill + 1 decode step"] - results["prefill (6 views + prompt)"]
    print(f"  decode step (difference)                {decode:9.1f} ms")
    print(f"  peak GPU memory                         {peak:9.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
