"""OccVLA: PaliGemma2 over 6 views -> meta-action text; occupancy branch; planning head.

Data flows one way: the occupancy branch and the planning head READ the language model's
hidden states at the image positions; nothing flows back into the VLM's forward. So skipping
the occupancy branch at inference changes no output (tests check bit-equality) and costs
nothing. Training stages (``forward(batch, stage)``):

- ``"qa"``: text loss on OmniDrive answers (``question``/``answer`` in the batch);
- ``"occupancy_language"``: meta-action text loss + occupancy loss (``config.loss_weights``);
- ``"planning"``: VLM frozen (run under no_grad), planning-head L1 on the trajectory, the
  head reading the meta-action the frozen VLM's candidate scoring picks (what it gets at test
  time; ``planning.training_action="ground_truth"``: the labelled class, teacher forcing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from occvla_ros.errors import CheckpointError, ConfigError
from occvla_ros.meta_action import MetaAction
from occvla_ros.model.backbone import PaliGemmaBackbone
from occvla_ros.model.configuration import STAGES, OccVLAConfig
from occvla_ros.model.occupancy import OccupancyBranch
from occvla_ros.model.planning_head import PlanningHead
from occvla_ros.model.processing import (
    IGNORE_INDEX,
    IMAGE_TOKEN,
    PromptProcessor,
    TokenBatch,
    format_prompt,
    load_tokenizer,
    train_tiny_tokenizer,
)
from occvla_ros.model.scoring import CandidateTable, candidate_log_likelihoods

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    meta_actions: list[MetaAction]
    meta_action_indices: torch.Tensor  # int64 [B]
    meta_action_scores: torch.Tensor  # float32 [B, K] sum of answer-token log-probs
    waypoints: torch.Tensor  # float32 [B, 6, 2], ego frame (x forward, y left), metres
    occupancy: torch.Tensor | None  # uint8 [B, 200, 200, 16] Occ3D classes, when asked
    # The visual hidden states the occupancy branch reads: predict_occupancy(visual) decodes the
    # occupancy later (a node publishes the plan first).
    visual: torch.Tensor | None = None


def build_tokenizer(config: OccVLAConfig):
    """The tiny preset trains its BPE in-process; the real one uses the weights' tokenizer."""
    if config.preset == "tiny":
        return train_tiny_tokenizer(config.meta_actions)
    if config.backbone.weights_dir is None:
        raise CheckpointError(
            "the paligemma2-3b-224 preset needs backbone.weights_dir (a local PaliGemma2 "
            "download with its tokenizer files)"
        )
    return load_tokenizer(config.backbone.weights_dir)


class OccVLA(nn.Module):
    def __init__(self, config: OccVLAConfig, tokenizer=None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(config)
        image_token_id = config.backbone.image_token_id
        if image_token_id is None:
            image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        vocab_size = config.backbone.vocab_size or len(self.tokenizer)
        self.backbone = PaliGemmaBackbone(config, vocab_size, image_token_id)
        self.processor = PromptProcessor(config, self.tokenizer, image_token_id)
        hidden = config.backbone.text_hidden_size
        self.occupancy = (
            OccupancyBranch(config.occupancy, hidden) if config.with_occupancy else None
        )
        self.planning_head = PlanningHead(
            config.planning, len(config.meta_actions), hidden, config.num_image_tokens
        )
        answers = [self.processor.answer_ids(text) for text in config.meta_actions.texts]
        self.candidates = CandidateTable.build(answers, self.processor.pad_id)

    @property
    def uses_command(self) -> bool:
        """Whether the prompt or the planning head reads the route command (then it is needed)."""
        return self.config.prompt.use_command or self.config.planning.use_command

    # ----------------------------------------------------------------------------- parameters

    def trainable_parameters(self, stage: str) -> list[nn.Parameter]:
        """What the optimiser updates in a stage (the frozen VQ-VAE decoder never appears)."""
        _check_stage(stage)
        if stage == "planning":
            return list(self.planning_head.parameters())
        parameters = [p for p in self.backbone.parameters() if p.requires_grad]
        if stage == "occupancy_language" and self.occupancy is not None:
            parameters += list(self.occupancy.trainable_parameters())
        return parameters

    # ----------------------------------------------------------------------------- training

    def forward(self, batch: dict, stage: str) -> tuple[torch.Tensor, dict[str, float]]:
        """One training step's loss for ``stage``; returns (total loss, {name: float})."""
        _check_stage(stage)
        if stage == "planning":
            return self._planning_loss(batch)
        if stage == "qa":
            prompts = self._prompts(batch, questions=batch["question"])
            return self._text_loss(batch, prompts, list(batch["answer"]), with_occupancy=False)
        prompts = self._prompts(batch)
        return self._text_loss(
            batch,
            prompts,
            list(batch["meta_action_text"]),
            with_occupancy=self.occupancy is not None,
        )

    def _prompts(self, batch: dict, questions: list[str] | None = None) -> list[str]:
        ego_state = batch["ego_state"]
        commands = batch.get("command") if self.config.prompt.use_command else None
        return [
            format_prompt(
                self.config,
                ego_state[row].tolist(),
                None if commands is None else commands[row],
                None if questions is None else questions[row],
            )
            for row in range(ego_state.shape[0])
        ]

    def _to_inference_mode(self) -> None:
        # eval() visits every submodule: 1.1 ms per call for the tiny model on the development
        # CPU, paid on every plan. A model left in training mode is switched once.
        if self.training:
            self.eval()

    def _device(self) -> torch.device:
        return self.backbone.camera_embeddings.device

    def _text_loss(
        self, batch: dict, prompts: list[str], answers: list[str], with_occupancy: bool
    ) -> tuple[torch.Tensor, dict[str, float]]:
        tokens = self.processor.training_batch(prompts, answers).to(self._device())
        first_answer = int((tokens.token_type_ids == 0).sum(dim=1).min())
        # Logits only from the position before the earliest answer token (ml-stack: no full-
        # vocabulary logits over the 1,536 image positions).
        keep = tokens.input_ids.shape[1] - first_answer + 1
        output = self.backbone(
            tokens,
            batch["pixel_values"].to(self._device()),
            logits_to_keep=keep,
            capture_visual=with_occupancy,
        )
        targets = tokens.labels[:, -keep + 1 :]  # [B, keep-1]
        text_loss = F.cross_entropy(
            output.logits[:, :-1].flatten(0, 1).float(),
            targets.flatten(),
            ignore_index=IGNORE_INDEX,
        )
        if not with_occupancy:
            return text_loss, {"text": float(text_loss.detach())}
        logits = self.occupancy(output.visual_hidden_states)  # [B, X, Y, Z, C]
        occupancy_loss, terms = self.occupancy.loss(
            logits,
            batch["occupancy"].to(logits.device),
            batch["occupancy_mask"].to(logits.device),
        )
        weights = self.config.loss_weights
        total = weights.text * text_loss + weights.occupancy * occupancy_loss
        return total, {
            "text": float(text_loss.detach()),
            "occupancy": float(occupancy_loss.detach()),
            **terms,
            "total": float(total.detach()),
        }

    def _planning_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        device = self._device()
        ego_state = batch["ego_state"].to(device)
        commands = batch.get("command")
        with torch.no_grad():
            if self.config.planning.training_action == "predicted":
                scores, visual = self.score_meta_actions(batch["pixel_values"], ego_state, commands)
                actions = scores.argmax(dim=-1)
            else:
                tokens = self.processor.prompt_batch(self._prompts(batch)).to(device)
                prefix = self._prefix(tokens, batch["pixel_values"].to(device))
                visual, actions = prefix.visual_hidden_states, batch["meta_action"].to(device)
        if "past_trajectory" not in batch and self.config.planning.num_past:
            raise ConfigError(
                "the planning head reads the past trajectory: the batch has no past_trajectory"
            )
        waypoints = self.planning_head(
            actions,
            ego_state,
            visual,
            past_trajectory=_optional_to(batch.get("past_trajectory"), device),
            past_mask=_optional_to(batch.get("past_mask"), device),
            commands=None if commands is None else list(commands),
        )
        loss = PlanningHead.loss(
            waypoints, batch["trajectory"].to(device), batch["trajectory_mask"].to(device)
        )
        return loss, {"planning_l1": float(loss.detach())}

    def _prefix(self, tokens: TokenBatch, pixel_values: torch.Tensor, use_cache: bool = False):
        return self.backbone(
            tokens,
            pixel_values,
            logits_to_keep=1,
            use_cache=use_cache,
        )

    # ----------------------------------------------------------------------------- inference

    def score_meta_actions(
        self, pixel_values: torch.Tensor, ego_state: torch.Tensor, commands: list[str] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-likelihood of every meta-action [B, K] in one prefill + one batched step.

        Also returns the visual hidden states [B, 6N, D] of the same prefill.
        """
        device = self._device()
        prompts = self._prompts({"ego_state": ego_state, "command": commands})
        tokens = self.processor.prompt_batch(prompts).to(device)
        prefix = self._prefix(tokens, pixel_values.to(device), use_cache=True)
        batch, candidates = ego_state.shape[0], self.candidates.ids.shape[0]
        cache = prefix.past_key_values
        cache.batch_repeat_interleave(candidates)  # every row's prefix, K times, in place
        ids = self.candidates.ids.to(device).repeat(batch, 1)  # [B*K, L]
        length = ids.shape[1]
        # Padding after a candidate's <eos> is never attended by its real tokens (causal).
        attention_mask = torch.cat(
            [
                tokens.attention_mask.repeat_interleave(candidates, dim=0),
                torch.ones_like(ids),
            ],
            dim=1,
        )
        last_position = tokens.position_ids[:, -1:].repeat_interleave(candidates, dim=0)
        position_ids = last_position + torch.arange(1, length + 1, device=device)  # [B*K, L]
        continuation = self.backbone.continue_with_cache(ids, attention_mask, position_ids, cache)
        scores = candidate_log_likelihoods(prefix.logits[:, -1], continuation, self.candidates)
        return scores, prefix.visual_hidden_states

    @torch.no_grad()
    def predict(
        self,
        pixel_values: torch.Tensor,
        ego_state: torch.Tensor,
        commands: list[str] | None = None,
        with_occupancy: bool = False,
        *,
        past_trajectory: torch.Tensor | None = None,
        past_mask: torch.Tensor | None = None,
    ) -> Prediction:
        """pixel_values [B, 6, 3, S, S], ego_state [B, 3] -> meta-action, waypoints (+ occupancy).

        ``past_trajectory`` [B, P, 2] (ego frame, oldest first) and ``past_mask`` bool [B, P]
        are the previous keyframes' positions; None: no history known. ``commands`` (one route
        command per row) is required when ``uses_command``. The occupancy branch runs only when
        ``with_occupancy`` is True; it only reads the visual hidden states, so the meta-action and
        waypoints are identical either way.
        """
        self._to_inference_mode()
        _check_inputs(pixel_values, ego_state, self.config.image_size)
        if self.uses_command and (commands is None or len(commands) != ego_state.shape[0]):
            raise ConfigError(
                "this model reads the route command, but no driving command was given for "
                "every sample"
            )
        if past_trajectory is not None and not torch.isfinite(past_trajectory).all():
            raise ConfigError("past_trajectory must be finite (found NaN or inf)")
        device = self._device()
        ego_state = ego_state.to(device)
        scores, visual = self.score_meta_actions(pixel_values, ego_state, commands)
        indices = scores.argmax(dim=-1)  # [B]
        waypoints = self.planning_head(
            indices,
            ego_state,
            visual,
            past_trajectory=_optional_to(past_trajectory, device),
            past_mask=_optional_to(past_mask, device),
            commands=commands,
        ).float()
        occupancy = self.predict_occupancy(visual) if with_occupancy else None
        return Prediction(
            meta_actions=[self.config.meta_actions.action(int(i)) for i in indices],
            meta_action_indices=indices,
            meta_action_scores=scores,
            waypoints=waypoints,
            occupancy=occupancy,
            visual=visual,
        )

    @torch.no_grad()
    def predict_occupancy(self, visual: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 200, 200, 16] Occ3D classes from a Prediction's ``visual`` states."""
        if self.occupancy is None:
            raise ConfigError("this model was built with_occupancy=False: no occupancy")
        return self.occupancy.predict(visual)

    @torch.no_grad()
    def generate_text(
        self,
        pixel_values: torch.Tensor,
        ego_state: torch.Tensor,
        questions: list[str] | None = None,
        commands: list[str] | None = None,
        max_new_tokens: int = 32,
    ) -> list[str]:
        """Free-running greedy answers (VQA); ``questions`` default to the meta-action one."""
        self._to_inference_mode()
        _check_inputs(pixel_values, ego_state, self.config.image_size)
        device = self._device()
        prompts = self._prompts({"ego_state": ego_state, "command": commands}, questions)
        tokens = self.processor.prompt_batch(prompts).to(device)
        prefix = self._prefix(tokens, pixel_values.to(device), use_cache=True)
        return self.tokenizer.batch_decode(
            self._greedy_continuation(tokens, prefix, max_new_tokens), skip_special_tokens=True
        )

    def _greedy_continuation(self, tokens: TokenBatch, prefix, max_new_tokens: int) -> torch.Tensor:
        """Token-by-token greedy decoding after a cached prefix -> ids [B, <= max_new_tokens].

        (transformers' ``generate`` cannot start from ``inputs_embeds`` for PaliGemma, and the
        camera embeddings live in the embeddings, so the loop is written out here.)
        """
        cache, logits = prefix.past_key_values, prefix.logits[:, -1]  # [B, V]
        attention_mask, position = tokens.attention_mask, tokens.position_ids[:, -1:]
        finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        generated = []
        for _ in range(max_new_tokens):
            next_ids = logits.argmax(dim=-1).masked_fill(finished, self.processor.pad_id)  # [B]
            generated.append(next_ids)
            finished |= next_ids == self.processor.eos_id
            if bool(finished.all()):
                break
            attention_mask = torch.cat([attention_mask, torch.ones_like(position)], dim=1)
            position = position + 1
            logits = self.backbone.continue_with_cache(
                next_ids[:, None], attention_mask, position, cache
            )[:, -1]
        return torch.stack(generated, dim=1)


def _optional_to(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ConfigError(f"unknown training stage {stage!r}; expected one of {STAGES}")


def _check_inputs(pixel_values: torch.Tensor, ego_state: torch.Tensor, image_size: int) -> None:
    batch = ego_state.shape[0] if ego_state.dim() == 2 else -1
    if pixel_values.dim() != 5 or tuple(pixel_values.shape[1:]) != (6, 3, image_size, image_size):
        raise ConfigError(
            f"pixel_values must be [B, 6, 3, {image_size}, {image_size}], "
            f"got {list(pixel_values.shape)}"
        )
    if ego_state.dim() != 2 or ego_state.shape[1] != 3 or pixel_values.shape[0] != batch:
        raise ConfigError(
            f"ego_state must be [B, 3] with B={pixel_values.shape[0]}, got {list(ego_state.shape)}"
        )
    if not torch.isfinite(ego_state).all() or not torch.isfinite(pixel_values).all():
        raise ConfigError("pixel_values and ego_state must be finite (found NaN or inf)")
