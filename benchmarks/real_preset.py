"""What the real-size benchmarks share: a stand-in tokenizer, the model, one training sample.

No PaliGemma2 weights or tokenizer can be downloaded on the development machines, and the
``paligemma2-3b-224`` preset normally takes its tokenizer from ``backbone.weights_dir``
(``occvla_ros.model.occvla.build_tokenizer`` refuses without it). The benchmarks therefore build
the model with random weights and :func:`stand_in_tokenizer`: a byte-level BPE with the real
vocabulary size and the real special-token ids. Timing and memory depend on the sizes, not on
the values, so a random model measures what a trained one costs. This is a benchmark helper,
never a fallback of the product: a user's model always loads the weights' own tokenizer.
"""

from __future__ import annotations

import json

import torch
from model_latency import _one_sample as one_sample

from occvla_ros.model.configuration import OccVLAConfig
from occvla_ros.model.occvla import OccVLA
from occvla_ros.model.processing import IMAGE_TOKEN, SPECIAL_TOKENS, train_tiny_tokenizer

PRESET = "paligemma2-3b-224"
# PaliGemma2's vocabulary: 256,000 Gemma tokens, then <loc0000>..<loc1023> and <seg000>..<seg127>
# (257,152 in all); <image> is the next id, outside the embedding table.
GEMMA_VOCAB_SIZE = 256_000
LOCATION_TOKENS = 1024
SEGMENT_TOKENS = 128


def stand_in_tokenizer(config: OccVLAConfig):
    """A fast tokenizer of ``config.backbone.vocab_size`` tokens with PaliGemma's special ids.

    ``<pad>``=0, ``<eos>``=1, ``<bos>``=2 and ``<image>`` = ``config.backbone.image_token_id``
    (257,152), as in the real tokenizer. The text pieces come from the tiny preset's BPE (so the
    prompts and meta-action answers are a few tokens long, like SentencePiece's); the remaining
    ids up to 256,000 are unused fillers, then the location and segmentation tokens.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    vocab_size = config.backbone.vocab_size
    if vocab_size != GEMMA_VOCAB_SIZE + LOCATION_TOKENS + SEGMENT_TOKENS:
        raise ValueError(f"expected PaliGemma2's vocabulary of 257,152 tokens, got {vocab_size}")
    if config.backbone.image_token_id != vocab_size:
        raise ValueError(
            f"<image> must follow the vocabulary, got {config.backbone.image_token_id}"
        )
    spec = json.loads(train_tiny_tokenizer(config.meta_actions).backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    vocab.update((f"<unused{index}>", index) for index in range(len(vocab), GEMMA_VOCAB_SIZE))
    vocab.update((f"<loc{i:04d}>", GEMMA_VOCAB_SIZE + i) for i in range(LOCATION_TOKENS))
    first_segment = GEMMA_VOCAB_SIZE + LOCATION_TOKENS
    vocab.update((f"<seg{i:03d}>", first_segment + i) for i in range(SEGMENT_TOKENS))
    # Keep the BPE's own special tokens (<pad>, <eos>, <bos>); <image> is added below.
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != IMAGE_TOKEN]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), **SPECIAL_TOKENS
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in SPECIAL_TOKENS.items()}
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if ids != {"pad_token": 0, "eos_token": 1, "bos_token": 2} or image_id != vocab_size:
        raise RuntimeError(f"stand-in tokenizer ids {ids}, <image> {image_id}")
    return tokenizer


def real_config(text_layers: int | None = None, vision_layers: int | None = None) -> OccVLAConfig:
    """The paligemma2-3b-224 preset without weights_dir; fewer layers only to try a script."""
    config = OccVLAConfig.from_preset(PRESET)
    if text_layers is not None:
        config.backbone.text_layers = text_layers
        config.visual_feature_layer = min(config.visual_feature_layer, text_layers)
    if vision_layers is not None:
        config.backbone.vision_layers = vision_layers
    return config


def build_model(config: OccVLAConfig, device: str | torch.device = "cpu") -> OccVLA:
    """Random-weight OccVLA built directly on ``device`` in torch's default dtype, gradient
    checkpointing on."""
    torch.manual_seed(0)
    with torch.device(device):
        model = OccVLA(config, stand_in_tokenizer(config))
    model.backbone.enable_gradient_checkpointing()
    return model


def training_sample(config: OccVLAConfig, pixels: torch.Tensor, ego: torch.Tensor) -> dict:
    """One keyframe with every key the training stages read (random labels, on pixels' device)."""
    sample = one_sample(config, pixels, ego)
    past = config.planning.num_past  # 8 m/s straight: 4 m per 0.5 s, oldest first, ego frame
    behind = torch.arange(-past, 0.0) * 4.0
    sample["past_trajectory"] = torch.stack([behind, torch.zeros(past)], dim=-1)[None]
    sample["past_mask"] = torch.ones(1, past, dtype=torch.bool)
    return {k: v.to(pixels.device) if torch.is_tensor(v) else v for k, v in sample.items()}
