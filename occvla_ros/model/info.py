"""``occvla model-info``: parameter counts of an OccVLA configuration, without any weights.

The model is instantiated on PyTorch's ``meta`` device (shapes only: no memory, no weights
directory needed). The real preset's tokenizer only matters for its vocabulary size, which the
configuration fixes (257,152), so the tiny in-process tokenizer stands in for it here.
"""

from __future__ import annotations

import argparse

from occvla_ros.model.configuration import PRESETS, OccVLAConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS, default="paligemma2-3b-224")
    parser.add_argument(
        "--config",
        help="a model configuration YAML, or a training YAML (its model section); "
        "overrides --preset",
    )


def _count(parameters) -> int:
    return sum(p.numel() for p in parameters)


def parameter_counts(config: OccVLAConfig) -> dict[str, int]:
    """Parameters per part of the model described by ``config`` (built on the meta device)."""
    import dataclasses

    import torch

    from occvla_ros.model.occvla import OccVLA
    from occvla_ros.model.processing import train_tiny_tokenizer

    # Shapes only: a weights directory would be read, so count from the sizes instead.
    config = dataclasses.replace(
        config, backbone=dataclasses.replace(config.backbone, weights_dir=None)
    )
    with torch.device("meta"):
        model = OccVLA(config, train_tiny_tokenizer(config.meta_actions))
    paligemma = model.backbone.paligemma
    named = dict(model.backbone.named_parameters())
    counts = {
        "backbone (PaliGemma2, frozen base)": model.backbone.base_parameter_count,
        "  vision tower (SigLIP)": _base_count(paligemma.model.vision_tower),
        "  projector": _base_count(paligemma.model.multi_modal_projector),
        "  language model (Gemma2, tied LM head)": _base_count(paligemma.model.language_model),
        "LoRA adapters": _count(p for n, p in named.items() if "lora_" in n),
        "projector (trained copy)": _count(p for n, p in named.items() if "modules_to_save" in n),
        "camera embeddings": model.backbone.camera_embeddings.numel(),
    }
    if model.occupancy is not None:
        counts["occupancy branch (trainable)"] = _count(model.occupancy.trainable_parameters())
        counts["VQ-VAE (frozen OccWorld tokenizer)"] = _count(model.occupancy.vqvae.parameters())
    counts["planning head"] = _count(model.planning_head.parameters())
    counts["total"] = _count(model.parameters())
    for stage in ("qa", "occupancy_language", "planning"):
        counts[f"trainable in stage {stage}"] = _count(model.trainable_parameters(stage))
    return counts


def _base_count(module) -> int:
    """Parameters of ``module`` excluding peft's additions (adapters, trained copies)."""
    return _count(
        p for n, p in module.named_parameters() if "lora_" not in n and "modules_to_save" not in n
    )


def run(args: argparse.Namespace) -> int:
    if args.config:
        config = OccVLAConfig.load_yaml(args.config)
    else:
        config = OccVLAConfig.from_preset(args.preset)
    print(f"OccVLA preset {config.preset!r}: parameters (instantiated on the meta device)")
    for name, count in parameter_counts(config).items():
        print(f"  {name:<45}{count:>16,}")
    return 0
