"""The planning head: meta-action + ego motion + route command + visual tokens -> 6 waypoints.

Inputs (each optional part switched by :class:`PlanningHeadConfig`):

- the meta-action as a learned embedding of its class index (not the answer's hidden state), so
  the head depends only on WHICH action was chosen. Stage 3 trains it on the action the frozen
  VLM's candidate scoring picks (``training_action="predicted"``, what it reads at test time) or
  on the ground-truth class (teacher forcing);
- the ego state (speed, longitudinal acceleration, yaw rate) and the past trajectory (the ego
  positions of the previous keyframes in the current ego frame, plus which of them exist),
  standardised with the statistics of the training batches (:class:`RunningStandardizer`);
- the high-level route command ("turn left" / "turn right" / "go straight") as an embedding;
- the visual tokens (the language model's hidden states at the image positions after
  ``visual_feature_layer``) pooled so that layout survives: learned queries cross-attend to every
  token, each token tagged with a learned embedding of its camera and patch
  (``pooling="attention"``), or one mean per camera (``pooling="camera_mean"``).

MLP with GELU -> 6 x (x, y) in the ego frame (x forward, y left), metres; with
``kinematic_prior`` the MLP predicts the offset from driving straight on at the current speed
(constant velocity), so a few hundred steps already start from a sensible plan.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from occvla_ros.constants import NUM_CAMERAS, WAYPOINT_DT_S
from occvla_ros.errors import ConfigError
from occvla_ros.model.configuration import PlanningHeadConfig

logger = logging.getLogger(__name__)

EGO_STATE_DIM = 3  # speed m/s, longitudinal acceleration m/s^2, yaw rate rad/s
# A feature (nearly) constant in training, e.g. the yaw rate on straight roads, must not turn small
# test-time changes into huge standardised inputs: its scale is floored here (as the ego MLP's).
MIN_FEATURE_STD = 0.1


class RunningStandardizer(nn.Module):
    """(x - mean) / std with the mean and std of every training batch seen so far.

    In training mode each batch first updates the running count, mean and sum of squared
    deviations (Chan et al.'s pairwise merge, exact for any batch sizes), then is standardised
    with the updated values; in eval mode the statistics are frozen. Unlike BatchNorm, training
    and inference use the same statistics. They are buffers, so a checkpoint carries them.
    """

    def __init__(self, size: int, min_std: float = MIN_FEATURE_STD) -> None:
        super().__init__()
        self.min_std = min_std
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("squared_deviations", torch.zeros(size))

    @torch.no_grad()
    def _update(self, features: torch.Tensor) -> None:
        batch = features.float()  # [B, F]
        count = float(batch.shape[0])
        mean = batch.mean(dim=0)
        squared = ((batch - mean) ** 2).sum(dim=0)
        total = self.count + count
        delta = mean - self.mean
        self.squared_deviations += squared + delta**2 * self.count * count / total
        self.mean += delta * count / total
        self.count.fill_(total)

    @property
    def std(self) -> torch.Tensor:
        variance = self.squared_deviations / self.count.clamp(min=1.0)
        return variance.sqrt().clamp(min=self.min_std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, F] -> [B, F]
        if self.training and features.shape[0] > 0:
            self._update(features)
        mean, std = self.mean.to(features.dtype), self.std.to(features.dtype)
        return (features - mean) / std


class AttentionPooling(nn.Module):
    """Learned queries cross-attend to the visual tokens [B, N, D] -> [B, Q * d].

    Each token gets a learned embedding of its position (camera x patch) before the attention,
    so a query can ask "what is ahead in the front camera" and the result keeps the layout.
    """

    def __init__(self, config: PlanningHeadConfig, visual_width: int, num_tokens: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.LayerNorm(visual_width), nn.Linear(visual_width, config.visual_dim)
        )
        self.position = nn.Parameter(torch.randn(num_tokens, config.visual_dim) * 0.02)
        self.queries = nn.Parameter(torch.randn(config.num_queries, config.visual_dim) * 0.02)
        self.attention = nn.MultiheadAttention(
            config.visual_dim, config.attention_heads, batch_first=True
        )
        self.norm = nn.LayerNorm(config.visual_dim)

    def forward(self, visual: torch.Tensor) -> torch.Tensor:
        keys = self.project(visual) + self.position  # [B, N, d]
        queries = self.queries.expand(visual.shape[0], -1, -1)  # [B, Q, d]
        pooled, _ = self.attention(queries, keys, keys, need_weights=False)  # [B, Q, d]
        return self.norm(pooled).flatten(1)  # [B, Q * d]


class CameraMeanPooling(nn.Module):
    """Each camera's tokens averaged, then projected: [B, 6N, D] -> [B, 6 * d]."""

    def __init__(self, config: PlanningHeadConfig, visual_width: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.LayerNorm(visual_width), nn.Linear(visual_width, config.visual_dim)
        )

    def forward(self, visual: torch.Tensor) -> torch.Tensor:
        per_camera = visual.unflatten(1, (NUM_CAMERAS, -1)).mean(dim=2)  # [B, V, D]
        return self.project(per_camera).flatten(1)  # [B, V * d]


class PlanningHead(nn.Module):
    def __init__(
        self,
        config: PlanningHeadConfig,
        num_actions: int,
        visual_width: int,
        num_visual_tokens: int,
    ) -> None:
        super().__init__()
        self.config = config
        self.action_embedding = nn.Embedding(num_actions, config.action_embed_dim)
        width = config.action_embed_dim
        if config.pooling == "attention":
            self.pooling = AttentionPooling(config, visual_width, num_visual_tokens)
            width += config.num_queries * config.visual_dim
        else:
            self.pooling = CameraMeanPooling(config, visual_width)
            width += NUM_CAMERAS * config.visual_dim
        # Ego state and past positions, standardised; the past's validity mask as it is.
        self.motion_standardizer = RunningStandardizer(EGO_STATE_DIM + 2 * config.num_past)
        width += EGO_STATE_DIM + 3 * config.num_past
        if config.use_command:
            self.command_embedding = nn.Embedding(len(config.commands), config.command_embed_dim)
            width += config.command_embed_dim
        layers: list[nn.Module] = []
        for _ in range(config.num_layers - 1):
            layers += [nn.Linear(width, config.hidden_dim), nn.GELU(), nn.Dropout(config.dropout)]
            width = config.hidden_dim
        layers.append(nn.Linear(width, config.num_waypoints * 2))
        self.mlp = nn.Sequential(*layers)

    def command_indices(self, commands: list[str], device: torch.device) -> torch.Tensor:
        """Route commands -> int64 [B]; ConfigError naming an unknown command."""
        known = self.config.commands
        unknown = sorted({c for c in commands if c not in known})
        if unknown:
            raise ConfigError(f"unknown driving command(s) {unknown}; expected one of {known}")
        return torch.tensor([known.index(c) for c in commands], device=device)

    def forward(
        self,
        action_index: torch.Tensor,
        ego_state: torch.Tensor,
        visual: torch.Tensor,
        *,
        past_trajectory: torch.Tensor | None = None,
        past_mask: torch.Tensor | None = None,
        commands: list[str] | None = None,
    ) -> torch.Tensor:
        """action_index [B], ego_state [B, 3], visual [B, 6N, D], past_trajectory [B, P, 2],
        past_mask bool [B, P] (None: no history known), commands list[str] -> waypoints [B, 6, 2].
        """
        dtype = self.action_embedding.weight.dtype
        batch, num_past = ego_state.shape[0], self.config.num_past
        if past_trajectory is None:
            past_trajectory = ego_state.new_zeros(batch, num_past, 2)
            past_mask = torch.zeros(batch, num_past, dtype=torch.bool, device=ego_state.device)
        if past_trajectory.dim() == 3 and past_trajectory.shape[1] > num_past:
            # A longer history than the head reads (e.g. num_past 0): keep the newest positions.
            first = past_trajectory.shape[1] - num_past
            past_trajectory = past_trajectory[:, first:]
            past_mask = None if past_mask is None else past_mask[:, first:]
        if tuple(past_trajectory.shape) != (batch, num_past, 2) or past_mask is None:
            raise ConfigError(
                f"the planning head reads {num_past} past positions [B, {num_past}, 2] with a "
                f"past_mask [B, {num_past}]; got {list(past_trajectory.shape)}"
            )
        valid = past_mask.to(dtype)  # [B, P]
        past = past_trajectory.to(dtype) * valid[..., None]  # unknown positions at 0
        motion = torch.cat([ego_state.to(dtype), past.flatten(1)], dim=-1)  # [B, 3 + 2P]
        parts = [
            self.action_embedding(action_index),
            self.motion_standardizer(motion),
            valid,
            self.pooling(visual.to(dtype)),
        ]
        if self.config.use_command:
            if commands is None or len(commands) != batch:
                raise ConfigError("this planning head reads the driving command: give one per row")
            parts.append(self.command_embedding(self.command_indices(commands, visual.device)))
        waypoints = self.mlp(torch.cat(parts, dim=-1)).view(-1, self.config.num_waypoints, 2)
        if self.config.kinematic_prior:
            waypoints = waypoints + self._constant_velocity(ego_state.to(dtype))
        return waypoints

    def _constant_velocity(self, ego_state: torch.Tensor) -> torch.Tensor:
        """[B, 6, 2]: straight on at the current speed, (v t, 0) at t = 0.5 ... 3 s."""
        steps = torch.arange(1, self.config.num_waypoints + 1, device=ego_state.device)
        forward = ego_state[:, :1] * (steps * WAYPOINT_DT_S).to(ego_state.dtype)  # [B, 6]
        return torch.stack([forward, torch.zeros_like(forward)], dim=-1)

    @staticmethod
    def loss(waypoints: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean L1 over the valid waypoints' coordinates; [B, 6, 2], [B, 6, 2], bool [B, 6]."""
        valid = mask.to(waypoints.dtype)[..., None]  # [B, 6, 1]
        error = (waypoints - target.to(waypoints.dtype)).abs() * valid
        return error.sum() / (valid.sum() * 2).clamp(min=1.0)
