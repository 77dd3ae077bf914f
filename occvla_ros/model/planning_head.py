"""The planning head: meta-action + ego state + pooled visual tokens -> 6 ego-frame waypoints.

The meta-action enters as a learned embedding of its class index (not the answer's hidden
state): the head then depends only on WHICH action was chosen, so stage 3 can train it with the
ground-truth class (teacher forcing) while the VLM is frozen, and at inference it reads the
class the candidate scoring picked; the text tokenisation of the action does not matter.
The visual input is each camera's image tokens averaged (the language model's hidden states at
``visual_feature_layer``), so the head keeps which side of the car something is on.
"""

from __future__ import annotations

import torch
from torch import nn

from occvla_ros.constants import NUM_CAMERAS
from occvla_ros.model.configuration import PlanningHeadConfig

EGO_STATE_DIM = 3  # speed m/s, longitudinal acceleration m/s^2, yaw rate rad/s


class PlanningHead(nn.Module):
    def __init__(self, config: PlanningHeadConfig, num_actions: int, visual_width: int) -> None:
        super().__init__()
        self.config = config
        self.action_embedding = nn.Embedding(num_actions, config.action_embed_dim)
        self.visual_projection = nn.Sequential(
            nn.LayerNorm(visual_width), nn.Linear(visual_width, config.visual_dim)
        )
        width = config.action_embed_dim + EGO_STATE_DIM + NUM_CAMERAS * config.visual_dim
        layers: list[nn.Module] = []
        for _ in range(config.num_layers - 1):
            layers += [nn.Linear(width, config.hidden_dim), nn.GELU()]
            width = config.hidden_dim
        layers.append(nn.Linear(width, config.num_waypoints * 2))
        self.mlp = nn.Sequential(*layers)

    def forward(
        self, action_index: torch.Tensor, ego_state: torch.Tensor, visual: torch.Tensor
    ) -> torch.Tensor:
        """action_index [B], ego_state [B, 3], visual [B, 6N, D] -> waypoints [B, 6, 2]."""
        dtype = self.action_embedding.weight.dtype
        per_camera = visual.unflatten(1, (NUM_CAMERAS, -1)).mean(dim=2)  # [B, V, D]
        pooled = self.visual_projection(per_camera.to(dtype)).flatten(1)  # [B, V * D_p]
        features = torch.cat(
            [self.action_embedding(action_index), ego_state.to(dtype), pooled], dim=-1
        )  # [B, F]
        return self.mlp(features).view(-1, self.config.num_waypoints, 2)

    @staticmethod
    def loss(waypoints: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean L1 over the valid waypoints' coordinates; [B, 6, 2], [B, 6, 2], bool [B, 6]."""
        valid = mask.to(waypoints.dtype)[..., None]  # [B, 6, 1]
        error = (waypoints - target.to(waypoints.dtype)).abs() * valid
        return error.sum() / (valid.sum() * 2).clamp(min=1.0)
