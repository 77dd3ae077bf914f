"""The PaliGemma2 backbone with 6 separately encoded camera views, camera embeddings and LoRA.

Each view goes through SigLIP and the projector on its own (``pixel_values`` [B*6, 3, S, S]);
a learned per-camera embedding is added to that view's projected tokens; the tokens fill the
6 * N ``<image>`` placeholders of the sequence in camera order.

Why ``inputs_embeds`` and not a hook on the projector: the embeddings are assembled in one
explicit function (``embed_inputs``) that training, candidate scoring and ``generate`` all share;
a hook would depend on the projector's module path, which peft changes when it wraps the
projector as a module to save, and would run silently inside someone else's forward.

The language model's hidden states at the image positions of ``visual_feature_layer`` are
captured by a forward hook on that decoder layer (read-only: it records the output and changes
nothing), so the occupancy branch and the planning head read them with gradients intact and
without ``output_hidden_states`` keeping every layer's states alive.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from occvla_ros.constants import NUM_CAMERAS
from occvla_ros.errors import CheckpointError
from occvla_ros.model.configuration import BackboneConfig, LoRASettings, OccVLAConfig
from occvla_ros.model.processing import TokenBatch

logger = logging.getLogger(__name__)

_VISION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def paligemma_config(backbone: BackboneConfig, vocab_size: int, image_token_id: int):
    """A transformers PaliGemmaConfig (PaliGemma2: Gemma2 text model) from our sizes."""
    from transformers import PaliGemmaConfig

    return PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": backbone.vision_hidden_size,
            "intermediate_size": backbone.vision_intermediate_size,
            "num_hidden_layers": backbone.vision_layers,
            "num_attention_heads": backbone.vision_heads,
            "patch_size": backbone.patch_size,
            "image_size": backbone.image_size,
            "projection_dim": backbone.text_hidden_size,
            "vision_use_head": False,
        },
        text_config={
            "model_type": "gemma2",
            "hidden_size": backbone.text_hidden_size,
            "intermediate_size": backbone.text_intermediate_size,
            "num_hidden_layers": backbone.text_layers,
            "num_attention_heads": backbone.text_heads,
            "num_key_value_heads": backbone.text_kv_heads,
            "head_dim": backbone.head_dim,
            "vocab_size": vocab_size,
            # The output layer is the tied token embedding. At the default std 0.02 and width
            # 128 (tiny) the largest logit a normalised hidden state can reach is ~2.6, which
            # floors the text loss near 3.7 nats; 1/sqrt(width) lifts that cap (and is ~0.02
            # at the real width, so the real preset's random init is unchanged in effect).
            "initializer_range": backbone.text_hidden_size**-0.5,
        },
        image_token_id=image_token_id,
        projection_dim=backbone.text_hidden_size,
        attn_implementation="eager",  # Gemma2's attention soft-capping needs eager (or flex)
    )


def load_paligemma(weights_dir: str | Path):
    """PaliGemma2 from the user's LOCAL weights directory (never a hub id)."""
    from transformers import PaliGemmaForConditionalGeneration

    directory = Path(weights_dir)
    if not directory.is_dir():
        raise CheckpointError(
            f"PaliGemma2 weights directory {directory} does not exist; download "
            "google/paligemma2-3b-pt-224 there and set backbone.weights_dir"
        )
    missing = [name for name in ("config.json",) if not (directory / name).is_file()]
    if not any(directory.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise CheckpointError(f"PaliGemma2 weights directory {directory} lacks {missing}")
    try:
        return PaliGemmaForConditionalGeneration.from_pretrained(
            str(directory), local_files_only=True, attn_implementation="eager"
        )
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load PaliGemma2 from {directory}: {error}") from error


def _check_matches(model, backbone: BackboneConfig, source: str) -> None:
    text, vision = model.config.text_config, model.config.vision_config
    expected = {
        "text hidden size": (text.hidden_size, backbone.text_hidden_size),
        "text layers": (text.num_hidden_layers, backbone.text_layers),
        "vision hidden size": (vision.hidden_size, backbone.vision_hidden_size),
        "image size": (vision.image_size, backbone.image_size),
    }
    wrong = {name: values for name, values in expected.items() if values[0] != values[1]}
    if wrong:
        raise CheckpointError(
            f"{source} does not match the configuration (found, expected): {wrong}"
        )


def _lora_target_regex(lora: LoRASettings) -> str:
    text = "|".join(lora.target_projections)
    pattern = rf".*language_model\.layers\.\d+\.(self_attn|mlp)\.({text})"
    if lora.adapt_vision_tower:
        vision = "|".join(_VISION_PROJECTIONS)
        pattern = rf"({pattern})|(.*vision_tower\..*layers\.\d+\.(self_attn|mlp)\.({vision}))"
    return pattern


@dataclass
class BackboneOutput:
    logits: torch.Tensor  # [B, K, V] for the last K positions
    visual_hidden_states: torch.Tensor | None  # [B, 6N, D] at visual_feature_layer
    past_key_values: object | None


class PaliGemmaBackbone(nn.Module):
    """PaliGemma2 + per-camera embeddings + optional LoRA; see the module docstring."""

    def __init__(self, config: OccVLAConfig, vocab_size: int, image_token_id: int) -> None:
        super().__init__()
        self.config = config
        self.image_token_id = image_token_id
        if config.backbone.weights_dir is not None:
            model = load_paligemma(config.backbone.weights_dir)
            _check_matches(model, config.backbone, config.backbone.weights_dir)
        else:
            from transformers import PaliGemmaForConditionalGeneration

            model = PaliGemmaForConditionalGeneration(
                paligemma_config(config.backbone, vocab_size, image_token_id)
            )
        self.hidden_size = config.backbone.text_hidden_size
        # Added to each view's projected image tokens, in constants.CAMERA_NAMES order.
        self.camera_embeddings = nn.Parameter(torch.zeros(NUM_CAMERAS, self.hidden_size))  # [V, D]
        self._feature_layer = model.model.language_model.layers[config.visual_feature_layer - 1]
        self._captured: list[torch.Tensor] = []
        self._capturing = False
        self._checkpointed_modules: list[nn.Module] = []  # see enable_gradient_checkpointing
        self._feature_layer.register_forward_hook(self._capture)
        self.base_parameter_count = sum(p.numel() for p in model.parameters())
        self.model = _with_lora(model, config.lora)

    def _capture(self, module: nn.Module, inputs: tuple, output) -> None:
        if self._capturing:
            self._captured.append(output[0] if isinstance(output, tuple) else output)

    @property
    def paligemma(self):
        """The PaliGemmaForConditionalGeneration (inside the peft wrapper when LoRA is on)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def enable_gradient_checkpointing(self) -> None:
        """Recompute every SigLIP and Gemma2 layer in the backward pass instead of storing it.

        Applies in training mode only. Non-reentrant checkpointing: gradients reach the LoRA
        adapters although the frozen layers' inputs do not require grad, and transformers wraps
        each layer's ``forward``, so the feature-layer hook still fires once per forward.
        """
        self.paligemma.activation_checkpointing_enable({"use_reentrant": False})
        # The layers, and the models that hold them (they turn use_cache off when it is on).
        self._checkpointed_modules = [
            module
            for module in self.paligemma.modules()
            if getattr(module, "gradient_checkpointing", False)
        ]

    @contextlib.contextmanager
    def _checkpointing_only_with_grad(self) -> Iterator[None]:
        """Checkpointing off while autograd is: it would save nothing, and a checkpointing
        model in training mode drops the KV cache (transformers turns ``use_cache`` off), which
        the planning stage's no-grad meta-action scoring needs."""
        modules = [] if torch.is_grad_enabled() else self._checkpointed_modules
        for module in modules:
            module.gradient_checkpointing = False
        try:
            yield
        finally:
            for module in modules:
                module.gradient_checkpointing = True

    def embed_inputs(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the camera-tagged image features in the placeholders.

        input_ids [B, T] with 6N image placeholders per row; pixel_values [B, 6, 3, S, S].
        Returns inputs_embeds [B, T, D].
        """
        paligemma = self.paligemma
        image_positions = input_ids == self.image_token_id  # [B, T]
        # An out-of-vocabulary image id (the real model's 257152) must not index the table.
        text_ids = input_ids.masked_fill(image_positions, 0)
        embeds = paligemma.get_input_embeddings()(text_ids)  # [B, T, D]
        batch, views = pixel_values.shape[:2]
        features = paligemma.model.get_image_features(
            pixel_values.flatten(0, 1).to(embeds.dtype)
        ).pooler_output  # [B*V, N, D]
        features = features.unflatten(0, (batch, views)) + self.camera_embeddings[
            None, :, None, :
        ].to(features.dtype)  # [B, V, N, D]
        expected = int(image_positions.sum())
        if features.shape[0] * features.shape[1] * features.shape[2] != expected:
            raise ValueError(
                f"{expected} image placeholders for {batch} x {views} views of "
                f"{features.shape[2]} tokens"
            )
        return embeds.masked_scatter(image_positions[..., None], features.to(embeds.dtype))

    def forward(
        self,
        tokens: TokenBatch,
        pixel_values: torch.Tensor,
        *,
        logits_to_keep: int = 1,
        use_cache: bool = False,
        capture_visual: bool = True,
    ) -> BackboneOutput:
        """Prefix-LM forward over images + text; logits only for the last ``logits_to_keep``."""
        input_ids = tokens.input_ids
        inputs_embeds = self.embed_inputs(input_ids, pixel_values)
        self._captured.clear()
        self._capturing = capture_visual
        try:
            with self._checkpointing_only_with_grad():
                output = self.model(
                    inputs_embeds=inputs_embeds,
                    attention_mask=tokens.attention_mask,
                    position_ids=tokens.position_ids,
                    token_type_ids=tokens.token_type_ids,
                    use_cache=use_cache,
                    logits_to_keep=logits_to_keep,
                )
        finally:
            self._capturing = False
        visual = None
        if capture_visual:
            hidden = self._captured.pop()  # [B, T, D]
            self._captured.clear()
            visual = hidden[input_ids == self.image_token_id].view(
                input_ids.shape[0], -1, hidden.shape[-1]
            )  # [B, 6N, D], placeholders in order
        return BackboneOutput(output.logits, visual, output.past_key_values)

    def continue_with_cache(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values,
    ) -> torch.Tensor:
        """Causal text tokens after a cached prefix -> logits [B, T, V] at every new position."""
        with self._checkpointing_only_with_grad():
            output = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                use_cache=True,
            )
        return output.logits


def _with_lora(model, lora: LoRASettings):
    if not lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    peft_config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=_lora_target_regex(lora),
        modules_to_save=["multi_modal_projector"],
    )
    wrapped = get_peft_model(model, peft_config)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    logger.info(
        "backbone after LoRA (rank %d): %d trainable of %d parameters (adapters + projector)",
        lora.rank,
        trainable,
        total,
    )
    return wrapped
