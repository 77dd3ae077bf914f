"""OccVLA's implicit occupancy branch: visual tokens -> 3D semantic occupancy, for supervision.

Learnable queries laid out on a BEV grid read the VLM's visual hidden states through
cross-attention (one-way: the VLM never reads the queries), are projected to the VQ-VAE's
codebook space on its 50 x 50 latent grid, and decoded by OccWorld's FROZEN tokenizer decoder
into per-voxel class logits [B, 200, 200, 16, 18]. The cross-entropy on the decoded categories
trains the queries, the attention layers and, through the gradient on the visual hidden states,
the VLM: the implicit 3D supervision. See docs/occupancy-branch.md.

Shapes (real preset): visual [B, N_img, D] -> queries [B, 2500, 256] -> latents [B, 128, 50, 50]
-> logits [B, 200, 200, 16, 18].
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from occvla_ros.errors import ConfigError
from occvla_ros.model.losses import lovasz_softmax, masked_cross_entropy
from occvla_ros.model.vqvae import (
    OccupancyVQVAE,
    VQVAEConfig,
    load_occworld_vqvae,
    load_scene_tokenizer,
)

logger = logging.getLogger(__name__)

# Trained decoders the branch loads: a tokenizer trained here (`--stage tokenizer`, its
# checkpoint directory) or OccWorld's released one (a checkpoint file).
SCENE_TOKENIZER, OCCWORLD = "scene_tokenizer", "occworld"
DECODER_SOURCES = (SCENE_TOKENIZER, OCCWORLD)


@dataclass
class OccupancyBranchConfig:
    """Occupancy queries, their decoder layers, the frozen VQ-VAE and the loss."""

    # Queries on a query_grid layout over the BEV plane; each query predicts a
    # (latent / query_grid) patch of the VQ-VAE latent grid (1 x 1 when the grids are equal).
    query_grid: tuple[int, int] = (50, 50)
    hidden_dim: int = 256
    num_layers: int = 3
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    # The frozen decoder (OccWorld's tokenizer; load trained weights with load_decoder).
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    # Where the frozen decoder's weights came from, "<kind>:<path>" with a kind of
    # DECODER_SOURCES; recorded by load_decoder so a checkpoint says it. None: random init,
    # which the occupancy_language stage refuses unless told (a random decoder cannot express
    # scenes, so its loss supervises little).
    decoder_weights: str | None = None
    # Snap predicted latents to the nearest code (straight-through) before decoding. Off: the
    # decoder is fed continuous predictions and the loss gradient is exact (see the docs page).
    quantize_predictions: bool = False

    # Loss on the decoded categories: ce_weight * CE + lovasz_weight * Lovasz-softmax.
    ce_weight: float = 1.0
    lovasz_weight: float = 0.0
    class_weights: tuple[float, ...] | None = None  # one per class, or None for uniform
    use_camera_mask: bool = True  # only voxels visible in the cameras (Occ3D mask_camera)

    def __post_init__(self) -> None:
        if isinstance(self.vqvae, dict):
            known = {f.name for f in fields(VQVAEConfig)}
            unknown = sorted(set(self.vqvae) - known)
            if unknown:
                raise ConfigError(
                    f"OccupancyBranchConfig.vqvae: unknown keys {unknown}; known: {sorted(known)}"
                )
            self.vqvae = VQVAEConfig(**self.vqvae)
        self.query_grid = tuple(self.query_grid)
        if self.class_weights is not None:
            self.class_weights = tuple(float(w) for w in self.class_weights)
        for name in ("hidden_dim", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"OccupancyBranchConfig.{name} must be a positive integer, got {value!r}"
                )
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"OccupancyBranchConfig.hidden_dim={self.hidden_dim} must be divisible by "
                f"num_heads={self.num_heads}"
            )
        latent = self.vqvae.latent_shape
        if len(self.query_grid) != 2 or any(
            not 1 <= q <= size or size % q for q, size in zip(self.query_grid, latent, strict=False)
        ):
            raise ConfigError(
                f"OccupancyBranchConfig.query_grid {self.query_grid} must be two sizes that "
                f"divide the VQ-VAE latent grid {latent}"
            )
        if self.decoder_weights is not None and (
            not isinstance(self.decoder_weights, str)
            or self.decoder_weights.partition(":")[0] not in DECODER_SOURCES
        ):
            raise ConfigError(
                "OccupancyBranchConfig.decoder_weights must be None or '<kind>:<path>' with a "
                f"kind of {DECODER_SOURCES}, got {self.decoder_weights!r}"
            )
        if not self.mlp_ratio > 0:
            raise ConfigError(f"OccupancyBranchConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(
                f"OccupancyBranchConfig.dropout must be in [0, 1), got {self.dropout}"
            )
        if self.ce_weight < 0 or self.lovasz_weight < 0 or self.ce_weight + self.lovasz_weight == 0:
            raise ConfigError(
                "OccupancyBranchConfig.ce_weight and lovasz_weight must be >= 0 and not both 0, "
                f"got {self.ce_weight} and {self.lovasz_weight}"
            )
        if self.class_weights is not None and (
            len(self.class_weights) != self.vqvae.num_classes
            or any(not w >= 0 for w in self.class_weights)
        ):
            raise ConfigError(
                f"OccupancyBranchConfig.class_weights must be {self.vqvae.num_classes} values "
                f">= 0, got {self.class_weights}"
            )

    @classmethod
    def tiny(cls) -> OccupancyBranchConfig:
        """10 x 10 queries (each predicting a 5 x 5 latent patch), 2 narrow layers, tiny VQ-VAE."""
        return cls(
            query_grid=(10, 10), hidden_dim=64, num_layers=2, num_heads=4, vqvae=VQVAEConfig.tiny()
        )

    @property
    def patch_size(self) -> tuple[int, int]:
        """Latent cells per query along each BEV axis."""
        latent = self.vqvae.latent_shape
        return (latent[0] // self.query_grid[0], latent[1] // self.query_grid[1])


class _Attention(nn.Module):
    """Multi-head attention whose keys/values may come from a space of another width."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(key_dim, dim)
        self.v_proj = nn.Linear(key_dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, H, L, D/H]
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        attended = F.scaled_dot_product_attention(
            self._heads(self.q_proj(query)),
            self._heads(self.k_proj(key)),
            self._heads(self.v_proj(value)),
            dropout_p=self.dropout if self.training else 0.0,
        )  # [B, H, Q, D/H]
        return self.out_proj(attended.transpose(1, 2).flatten(2))  # [B, Q, D]


class OccupancyDecoderLayer(nn.Module):
    """Pre-norm: self-attention over queries, cross-attention to visual tokens, MLP.

    The 2D positional embedding is added to the queries' attention inputs (queries and keys of
    the self-attention, queries of the cross-attention) at every layer.
    """

    def __init__(self, config: OccupancyBranchConfig, visual_dim: int) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.self_attn_norm = nn.LayerNorm(dim)
        self.self_attn = _Attention(dim, dim, config.num_heads, config.dropout)
        self.cross_attn_norm = nn.LayerNorm(dim)
        self.cross_attn = _Attention(dim, visual_dim, config.num_heads, config.dropout)
        self.mlp_norm = nn.LayerNorm(dim)
        hidden = round(dim * config.mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(hidden, dim)
        )
        self.residual_dropout = nn.Dropout(config.dropout)

    def forward(
        self, queries: torch.Tensor, positions: torch.Tensor, visual: torch.Tensor
    ) -> torch.Tensor:  # queries [B, Q, D], positions [Q, D], visual [B, N, D_vis] (normalised)
        h = self.self_attn_norm(queries)
        located = h + positions
        queries = queries + self.residual_dropout(self.self_attn(located, located, h))
        h = self.cross_attn_norm(queries)
        queries = queries + self.residual_dropout(self.cross_attn(h + positions, visual, visual))
        return queries + self.residual_dropout(self.mlp(self.mlp_norm(queries)))


class OccupancyBranch(nn.Module):
    """Occupancy queries cross-attending to visual hidden states, decoded by a frozen VQ-VAE.

    ``visual_dim``: width D of the visual hidden states it reads ([B, N_img, D]; all views'
    image tokens). Trainable: queries, positional embeddings, decoder layers, projection.
    Frozen: every module named in :attr:`frozen_modules` (``requires_grad=False``, always in eval
    mode); optimise ``trainable_parameters()`` only.
    """

    # Freezing as data: these submodules never train (OccVLA keeps OccWorld's decoder fixed).
    frozen_modules: ClassVar[tuple[str, ...]] = ("vqvae",)

    def __init__(self, config: OccupancyBranchConfig, visual_dim: int) -> None:
        super().__init__()
        if not isinstance(visual_dim, int) or visual_dim < 1:
            raise ConfigError(f"visual_dim must be a positive integer, got {visual_dim!r}")
        self.config = config
        self.visual_dim = visual_dim
        grid_x, grid_y = config.query_grid
        dim = config.hidden_dim
        self.queries = nn.Parameter(torch.randn(grid_x * grid_y, dim) * 0.02)  # [Q, D]
        # Factorised learnable 2D positions: row embedding + column embedding.
        self.row_embedding = nn.Parameter(torch.randn(grid_x, dim) * 0.02)  # [Gx, D]
        self.column_embedding = nn.Parameter(torch.randn(grid_y, dim) * 0.02)  # [Gy, D]
        # LLM hidden states are large and unnormalised; the layers read a normalised copy.
        self.visual_norm = nn.LayerNorm(visual_dim)
        self.layers = nn.ModuleList(
            OccupancyDecoderLayer(config, visual_dim) for _ in range(config.num_layers)
        )
        self.output_norm = nn.LayerNorm(dim)
        patch_x, patch_y = config.patch_size
        self.to_latent = nn.Linear(dim, config.vqvae.latent_channels * patch_x * patch_y)
        self.vqvae = OccupancyVQVAE(config.vqvae)
        weights = None if config.class_weights is None else torch.tensor(config.class_weights)
        self.register_buffer("class_weights", weights, persistent=False)  # [C] or None
        self.requires_grad_(True)
        self.train()
        logger.info(
            "occupancy branch: %d trainable parameters, %d frozen (%s)",
            sum(p.numel() for p in self.trainable_parameters()),
            sum(p.numel() for _, p in self._frozen_named_parameters()),
            ", ".join(self.frozen_modules),
        )

    def load_decoder(self, kind: str, source: str | Path) -> None:
        """Trained weights into the frozen VQ-VAE; records ``config.decoder_weights``.

        ``kind`` SCENE_TOKENIZER: a directory written by the tokenizer stage, whose recorded
        configuration must equal ``config.vqvae``; OCCWORLD: an OccWorld checkpoint file. Every
        tensor is checked (CheckpointError, nothing changed, on any mismatch); the decoder stays
        frozen.
        """
        if kind == SCENE_TOKENIZER:
            load_scene_tokenizer(source, self.vqvae)
        elif kind == OCCWORLD:
            load_occworld_vqvae(self.vqvae, source)
        else:
            raise ConfigError(f"unknown decoder source {kind!r}; expected one of {DECODER_SOURCES}")
        self.config.decoder_weights = f"{kind}:{Path(source).absolute()}"
        logger.info("occupancy decoder loaded from %s", self.config.decoder_weights)

    def _frozen_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for module_name in self.frozen_modules:
            for name, parameter in getattr(self, module_name).named_parameters():
                yield f"{module_name}.{name}", parameter

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of everything outside ``frozen_modules``: what optimisers get."""
        frozen = {id(p) for _, p in self._frozen_named_parameters()}
        for name, parameter in self.named_parameters():
            if id(parameter) not in frozen and parameter.requires_grad:
                yield name, parameter

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        for _, parameter in self.named_trainable_parameters():
            yield parameter

    def requires_grad_(self, requires_grad: bool = True) -> OccupancyBranch:
        """Switch the trainable parts on or off; ``frozen_modules`` stay frozen either way."""
        super().requires_grad_(requires_grad)
        for name in self.frozen_modules:
            getattr(self, name).requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> OccupancyBranch:
        super().train(mode)
        for name in self.frozen_modules:
            getattr(self, name).eval()
        return self

    def _check_still_frozen(self) -> None:
        unfrozen = [name for name, p in self._frozen_named_parameters() if p.requires_grad]
        if unfrozen:
            raise ConfigError(
                f"{len(unfrozen)} parameters of the frozen VQ-VAE require grad (first: "
                f"{unfrozen[0]}); something unfroze it (e.g. requires_grad_(True) on a parent "
                "module). OccVLA keeps the OccWorld decoder fixed: use the branch's own "
                "requires_grad_() or enable trainable_parameters() only."
            )

    def forward(self, visual_hidden_states: torch.Tensor) -> torch.Tensor:
        """Visual hidden states [B, N, visual_dim] -> occupancy logits [B, X, Y, Z, classes].

        Only reads its input (no in-place change, no hooks): the caller's VLM forward is
        unaffected. The gradient of a loss on the logits flows back into the input.
        """
        if visual_hidden_states.dim() != 3 or visual_hidden_states.shape[-1] != self.visual_dim:
            raise ConfigError(
                f"visual hidden states must have shape [B, N, {self.visual_dim}], "
                f"got {list(visual_hidden_states.shape)}"
            )
        if torch.is_grad_enabled():
            self._check_still_frozen()
        dtype = self.queries.dtype
        visual = self.visual_norm(visual_hidden_states.to(dtype))  # [B, N, D_vis], a new tensor
        batch = visual.shape[0]
        positions = (self.row_embedding[:, None, :] + self.column_embedding[None, :, :]).flatten(
            0, 1
        )  # [Q, D], row-major over (x, y)
        queries = self.queries.expand(batch, -1, -1)  # [B, Q, D]
        for layer in self.layers:
            queries = layer(queries, positions, visual)
        latents = self._latent_grid(self.to_latent(self.output_norm(queries)))  # [B, C, x, y]
        if self.config.quantize_predictions:
            latents = self.vqvae.vqvae.snap_to_codebook(latents).codes
        return self.vqvae.decode_latents(latents)  # [B, X, Y, Z, classes]

    def _latent_grid(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, Gx*Gy, C*px*py] per-query patches -> [B, C, Gx*px, Gy*py] latent grid."""
        grid_x, grid_y = self.config.query_grid
        patch_x, patch_y = self.config.patch_size
        batch = patches.shape[0]
        patches = patches.view(
            batch, grid_x, grid_y, -1, patch_x, patch_y
        )  # [B, Gx, Gy, C, px, py]
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(
            batch, -1, grid_x * patch_x, grid_y * patch_y
        )

    def loss(
        self,
        logits: torch.Tensor,
        occupancy: torch.Tensor,
        camera_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of ``forward``'s logits [B, X, Y, Z, C] against Occ3D labels int [B, X, Y, Z].

        With ``config.use_camera_mask`` only voxels where ``camera_mask`` (bool [B, X, Y, Z],
        Occ3D mask_camera) is True count, and the mask is required; otherwise it is ignored.
        Returns (ce_weight * CE + lovasz_weight * Lovasz, {"occ_ce": ..., "occ_lovasz": ...});
        a term whose weight is 0 is neither computed nor reported.
        """
        num_classes = self.config.vqvae.num_classes
        grid = (*self.config.vqvae.spatial_size, self.config.vqvae.num_heights)
        if tuple(logits.shape[1:]) != (*grid, num_classes):
            raise ConfigError(
                f"logits must be [B, {grid}, {num_classes}], got {list(logits.shape)}"
            )
        if tuple(occupancy.shape) != tuple(logits.shape[:-1]):
            raise ConfigError(
                f"occupancy shape {list(occupancy.shape)} does not match logits "
                f"{list(logits.shape[:-1])}"
            )
        low, high = (int(v) for v in torch.aminmax(occupancy))
        if low < 0 or high >= num_classes:
            raise ConfigError(f"occupancy labels must be in [0, {num_classes}), got {low}..{high}")
        valid = None
        if self.config.use_camera_mask:
            if camera_mask is None or camera_mask.shape != occupancy.shape:
                raise ConfigError(
                    "use_camera_mask is set: camera_mask must be a bool tensor shaped like the "
                    f"occupancy {list(occupancy.shape)}, got "
                    f"{None if camera_mask is None else list(camera_mask.shape)}"
                )
            valid = camera_mask.reshape(-1).bool()  # [N]
        # [N, C]: a view of fp32 logits; bf16/fp16 ones are upcast, since sums and the Lovasz
        # cumulative counts over 640k voxels per sample are not representable in 8 mantissa bits.
        flat_logits = logits.reshape(-1, num_classes).float()
        labels = occupancy.reshape(-1).long()  # [N]
        total = flat_logits.new_zeros(())
        terms: dict[str, float] = {}
        if self.config.ce_weight > 0:
            cross_entropy = masked_cross_entropy(flat_logits, labels, valid, self.class_weights)
            total = total + self.config.ce_weight * cross_entropy
            terms["occ_ce"] = float(cross_entropy.detach())
        if self.config.lovasz_weight > 0:
            lovasz = lovasz_softmax(flat_logits.softmax(dim=-1), labels, valid)
            total = total + self.config.lovasz_weight * lovasz
            terms["occ_lovasz"] = float(lovasz.detach())
        return total, terms

    @torch.no_grad()
    def predict(self, visual_hidden_states: torch.Tensor) -> torch.Tensor:
        """Most likely class per voxel, uint8 [B, X, Y, Z], computed in eval mode.

        The branch's previous train/eval mode is restored afterwards, so calling this from a
        training loop (e.g. for a validation image) does not change the training run.
        """
        with _eval_mode(self):
            return self(visual_hidden_states).argmax(dim=-1).to(torch.uint8)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
