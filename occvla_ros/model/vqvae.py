"""OccWorld-compatible VQ-VAE scene tokenizer for Occ3D semantic occupancy.

The tokenizer treats the height axis of a [200, 200, 16] label grid as channels: every voxel's
class is embedded in 8 dimensions, the 16 heights x 8 dimensions = 128 channels of each BEV cell
feed a 2D convolutional encoder down to a 50 x 50 latent grid, a vector quantizer snaps each
latent cell to one of 512 codes, and a mirrored decoder brings it back to 200 x 200 x 128
channels, read as 16 heights x 8 dimensions whose dot products with the (tied) class embeddings
are the per-voxel class logits.

The module nesting (and therefore every state-dict name and shape) follows OccWorld's released
tokenizer, so its checkpoints load with :func:`load_occworld_vqvae` after a prefix strip. The
code is written from the published facts, not copied.

Entry points:
    ``encode(occupancy)``          int64 [B, X, Y, Z]  -> z       [B, C_lat, x, y]
    ``quantize(z)``                z                   -> Quantized (codes [B, C_lat, x, y], ...)
    ``decode_latents(codes)``      [B, C_lat, x, y]    -> logits  [B, X, Y, Z, num_classes]
    ``forward(occupancy)``         all three           -> VQVAEOutput
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from occvla_ros.constants import NUM_OCC_CLASSES, OCC_GRID_SHAPE
from occvla_ros.errors import CheckpointError, ConfigError
from occvla_ros.model.losses import lovasz_softmax, masked_cross_entropy

logger = logging.getLogger(__name__)


@dataclass
class VQVAEConfig:
    """Architecture of the scene tokenizer. The defaults are OccWorld's released tokenizer."""

    # Input grid: Occ3D labels [X, Y, Z]; each voxel's class becomes a class_embed_dim vector and
    # the Z heights are stacked into Z * class_embed_dim channels of a 2D image over (X, Y).
    num_classes: int = NUM_OCC_CLASSES
    class_embed_dim: int = 8
    num_heights: int = OCC_GRID_SHAPE[2]
    spatial_size: tuple[int, int] = (OCC_GRID_SHAPE[0], OCC_GRID_SHAPE[1])

    # 2D convolutional encoder / decoder: one level per multiplier, each level halving the
    # resolution except the last; level 0 is full resolution.
    base_channels: int = 64
    channel_multipliers: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (2,)  # self-attention after each block of these levels
    norm_groups: int = 32
    norm_eps: float = 1e-6

    # Latent grid and codebook.
    latent_channels: int = 128
    codebook_size: int = 512
    commitment_beta: float = 1.0  # weight of the encoder's commitment term in the VQ loss

    def __post_init__(self) -> None:
        self.spatial_size = tuple(self.spatial_size)
        self.channel_multipliers = tuple(self.channel_multipliers)
        self.attention_levels = tuple(self.attention_levels)
        positive = {
            "num_classes": self.num_classes,
            "class_embed_dim": self.class_embed_dim,
            "num_heights": self.num_heights,
            "base_channels": self.base_channels,
            "num_res_blocks": self.num_res_blocks,
            "norm_groups": self.norm_groups,
            "latent_channels": self.latent_channels,
            "codebook_size": self.codebook_size,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"VQVAEConfig.{name} must be a positive integer, got {value!r}")
        if not 2 <= self.num_classes <= 256:
            raise ConfigError(
                f"VQVAEConfig.num_classes must be in 2..256 (predictions are uint8), "
                f"got {self.num_classes}"
            )
        if not self.channel_multipliers or any(m < 1 for m in self.channel_multipliers):
            raise ConfigError(
                "VQVAEConfig.channel_multipliers must be non-empty positive integers, got "
                f"{self.channel_multipliers}"
            )
        smallest = 2 ** (len(self.channel_multipliers) - 1)
        if len(self.spatial_size) != 2 or any(s < smallest for s in self.spatial_size):
            raise ConfigError(
                f"VQVAEConfig.spatial_size must be two sizes >= {smallest} (one cell left after "
                f"{smallest.bit_length() - 1} halvings), got {self.spatial_size}"
            )
        for channels in self.level_channels:
            if channels % self.norm_groups:
                raise ConfigError(
                    f"VQVAEConfig.norm_groups={self.norm_groups} must divide every level's "
                    f"channel count {self.level_channels}"
                )
        num_levels = len(self.channel_multipliers)
        if any(level not in range(num_levels) for level in self.attention_levels):
            raise ConfigError(
                f"VQVAEConfig.attention_levels {self.attention_levels} must be level indices in "
                f"0..{num_levels - 1}"
            )
        if not self.norm_eps > 0:
            raise ConfigError(f"VQVAEConfig.norm_eps must be > 0, got {self.norm_eps}")
        if not self.commitment_beta >= 0:
            raise ConfigError(
                f"VQVAEConfig.commitment_beta must be >= 0, got {self.commitment_beta}"
            )

    @classmethod
    def tiny(cls) -> VQVAEConfig:
        """OccWorld's structure, output grid and codebook size (512 codes) with narrow channels
        and latent vectors: trainable on a CPU."""
        return cls(base_channels=16, norm_groups=8, latent_channels=32, codebook_size=512)

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_multipliers)

    @property
    def input_channels(self) -> int:
        """Channels of the 2D image the encoder reads: heights x class-embedding dimensions."""
        return self.num_heights * self.class_embed_dim

    @property
    def level_shapes(self) -> tuple[tuple[int, int], ...]:
        """Spatial shape at every level; the last one is the latent grid (50 x 50 by default).

        Downsampling (pad one cell right/bottom, stride-2 3x3 conv) maps a size n to n // 2; the
        decoder upsamples by 2 and pads back to these recorded shapes, so odd sizes survive.
        """
        shapes = [self.spatial_size]
        for _ in self.channel_multipliers[:-1]:
            shapes.append((shapes[-1][0] // 2, shapes[-1][1] // 2))
        return tuple(shapes)

    @property
    def latent_shape(self) -> tuple[int, int]:
        return self.level_shapes[-1]


def _group_norm(config: VQVAEConfig, channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(config.norm_groups, channels, eps=config.norm_eps, affine=True)


class ResnetBlock(nn.Module):
    """Two (GroupNorm, swish, 3x3 conv) steps plus a residual path (1x1 conv if widths differ)."""

    def __init__(self, config: VQVAEConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(config, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(config, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # A 1x1 projection only where the width changes (Identity has no state-dict entries).
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, H, W] -> [B, C_out, H, W]
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over all cells of a feature map, with a residual path."""

    def __init__(self, config: VQVAEConfig, channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(config, channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W]
        batch, channels, height, width = x.shape
        h = self.norm(x)

        def tokens(conv: nn.Conv2d) -> torch.Tensor:  # [B, 1, H*W, C]
            return conv(h).flatten(2).transpose(1, 2).unsqueeze(1)

        attended = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))
        attended = attended.squeeze(1).transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.proj_out(attended)


class Downsample(nn.Module):
    """Pad one cell right/bottom, then a stride-2 3x3 conv: H -> H // 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2, zero-padded to the encoder's recorded shape of that level, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        missing_h, missing_w = shape[0] - x.shape[2], shape[1] - x.shape[3]
        if missing_h or missing_w:
            x = F.pad(
                x,
                (
                    missing_w // 2,
                    missing_w - missing_w // 2,
                    missing_h // 2,
                    missing_h - missing_h // 2,
                ),
            )
        return self.conv(x)


class _Level(nn.Module):
    """The ResNet blocks of one resolution, each followed by self-attention where configured."""

    def __init__(
        self, config: VQVAEConfig, in_channels: int, out_channels: int, level: int
    ) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * config.num_res_blocks
        self.block = nn.ModuleList(
            ResnetBlock(config, widths[i], widths[i + 1]) for i in range(config.num_res_blocks)
        )
        with_attention = level in config.attention_levels
        self.attn = nn.ModuleList(
            AttentionBlock(config, out_channels)
            for _ in range(config.num_res_blocks if with_attention else 0)
        )

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.block):
            h = block(h)
            if self.attn:
                h = self.attn[index](h)
        return h


class EncoderLevel(_Level):
    def __init__(
        self, config: VQVAEConfig, in_channels: int, out_channels: int, level: int
    ) -> None:
        super().__init__(config, in_channels, out_channels, level)
        is_last = level == len(config.channel_multipliers) - 1
        self.downsample = None if is_last else Downsample(out_channels)


class DecoderLevel(_Level):
    def __init__(
        self, config: VQVAEConfig, in_channels: int, out_channels: int, level: int
    ) -> None:
        super().__init__(config, in_channels, out_channels, level)
        self.upsample = None if level == 0 else Upsample(out_channels)


class MidBlock(nn.Module):
    def __init__(self, config: VQVAEConfig, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(config, channels, channels)
        self.attn_1 = AttentionBlock(config, channels)
        self.block_2 = ResnetBlock(config, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """[B, Z*E, X, Y] embedded labels -> [B, C_lat, x, y] continuous latents."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        channels = config.level_channels
        self.conv_in = nn.Conv2d(config.input_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList(
            EncoderLevel(config, channels[max(level - 1, 0)], channels[level], level)
            for level in range(len(channels))
        )
        self.mid = MidBlock(config, channels[-1])
        self.norm_out = _group_norm(config, channels[-1])
        self.conv_out = nn.Conv2d(channels[-1], config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level.run_blocks(h)
            if level.downsample is not None:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """[B, C_lat, x, y] latents -> [B, Z*E, X, Y] per-height class-embedding predictions."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        channels = config.level_channels
        self.level_shapes = config.level_shapes
        self.conv_in = nn.Conv2d(config.latent_channels, channels[-1], 3, padding=1)
        self.mid = MidBlock(config, channels[-1])
        # Indexed by level (0 = full resolution), built and run from the coarsest level up.
        self.up = nn.ModuleList(
            DecoderLevel(
                config, channels[min(level + 1, len(channels) - 1)], channels[level], level
            )
            for level in range(len(channels))
        )
        self.norm_out = _group_norm(config, channels[0])
        self.conv_out = nn.Conv2d(channels[0], config.input_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level_index in reversed(range(len(self.up))):
            level = self.up[level_index]
            h = level.run_blocks(h)
            if level.upsample is not None:
                h = level.upsample(h, self.level_shapes[level_index - 1])
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantized(NamedTuple):
    codes: torch.Tensor  # [B, C_lat, x, y] codebook vectors, straight-through to the input
    indices: torch.Tensor  # int64 [B, x, y] codebook indices
    loss: torch.Tensor  # scalar: codebook term + beta * commitment term


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook with 1x1 convs before (quant_conv) and after (post_quant_conv)."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.commitment_beta = config.commitment_beta
        self.embedding = nn.Embedding(config.codebook_size, config.latent_channels)
        nn.init.uniform_(
            self.embedding.weight, -1.0 / config.codebook_size, 1.0 / config.codebook_size
        )
        self.quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)
        # Dead-code restarts while training (0: off; the tokenizer stage sets it): every
        # dead_code_window training calls, codes no latent chose in that window are moved onto
        # latents of the current batch. Without it a small codebook collapses to a few codes (8
        # of 64 after 80 steps of the tiny recipe) and small objects cannot be reconstructed.
        # Not in the state dict (OccWorld's names stay exact).
        self.dead_code_window = 0
        self._calls_in_window = 0
        self.register_buffer(
            "code_counts", torch.zeros(config.codebook_size, dtype=torch.long), persistent=False
        )

    def snap_to_codebook(self, latents: torch.Tensor) -> Quantized:
        """Replace each cell of ``latents`` [B, C, x, y] by its nearest code (L2).

        The returned codes carry the straight-through gradient: d codes / d latents = identity.
        """
        batch, channels, height, width = latents.shape
        flat = latents.permute(0, 2, 3, 1).reshape(-1, channels)  # [B*x*y, C]
        tracking = self.training and self.dead_code_window > 0 and torch.is_grad_enabled()
        if tracking and self._calls_in_window >= self.dead_code_window:
            self._restart_dead_codes(flat.detach())
        codebook = self.embedding.weight  # [K, C]
        distances = (
            flat.pow(2).sum(1, keepdim=True)
            - 2.0 * flat @ codebook.t()
            + codebook.pow(2).sum(1)[None, :]
        )  # [B*x*y, K]
        indices = distances.argmin(dim=1)
        if tracking:
            self.code_counts += torch.bincount(indices, minlength=self.code_counts.numel())
            self._calls_in_window += 1
        nearest = self.embedding(indices).reshape(batch, height, width, channels)
        nearest = nearest.permute(0, 3, 1, 2)  # [B, C, x, y]
        codebook_term = F.mse_loss(nearest, latents.detach())
        commitment_term = F.mse_loss(latents, nearest.detach())
        codes = latents + (nearest - latents).detach()
        return Quantized(
            codes=codes,
            indices=indices.reshape(batch, height, width),
            loss=codebook_term + self.commitment_beta * commitment_term,
        )

    @torch.no_grad()
    def _restart_dead_codes(self, latents: torch.Tensor) -> None:
        """Codes unused in the window become random rows of ``latents`` [N, C]; new window.

        Under torch.distributed every rank calls this at the same step (the window counts
        calls), and rank 0's codebook is broadcast so the replicas stay equal.
        """
        dead = (self.code_counts == 0).nonzero().squeeze(1)  # [D]
        if dead.numel():
            picks = torch.randint(latents.shape[0], (dead.numel(),), device=latents.device)
            self.embedding.weight[dead] = latents[picks].to(self.embedding.weight.dtype)
            logger.info("restarted %d dead codes of %d", dead.numel(), self.code_counts.numel())
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(self.embedding.weight.data, src=0)
        self.code_counts.zero_()
        self._calls_in_window = 0


class VQVAEOutput(NamedTuple):
    logits: torch.Tensor  # [B, X, Y, Z, num_classes]
    indices: torch.Tensor  # int64 [B, x, y]
    vq_loss: torch.Tensor  # scalar


class OccupancyVQVAE(nn.Module):
    """OccWorld's scene tokenizer: Occ3D labels <-> a 50 x 50 grid of codebook indices."""

    def __init__(self, config: VQVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else VQVAEConfig()
        # Registration order and names reproduce OccWorld's state dict; the quantizer is called
        # "vqvae" there, hence the odd attribute name.
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.class_embeds = nn.Embedding(self.config.num_classes, self.config.class_embed_dim)
        self.vqvae = VectorQuantizer(self.config)

    def _check_labels(self, occupancy: torch.Tensor) -> None:
        expected = (*self.config.spatial_size, self.config.num_heights)
        if occupancy.dim() != 4 or tuple(occupancy.shape[1:]) != expected:
            raise ConfigError(
                f"occupancy must have shape [B, {', '.join(map(str, expected))}], "
                f"got {list(occupancy.shape)}"
            )
        if occupancy.dtype.is_floating_point or occupancy.dtype == torch.bool:
            raise ConfigError(f"occupancy must hold integer class ids, got {occupancy.dtype}")

    def encode(self, occupancy: torch.Tensor) -> torch.Tensor:
        """Class ids int [B, X, Y, Z] -> continuous latents [B, C_lat, x, y] (before quant_conv)."""
        self._check_labels(occupancy)
        batch, size_x, size_y, _ = occupancy.shape
        embedded = self.class_embeds(occupancy.long())  # [B, X, Y, Z, E]
        # Channel index = height * E + embedding dimension (height-major), as OccWorld lays it out.
        embedded = embedded.reshape(batch, size_x, size_y, self.config.input_channels)
        return self.encoder(embedded.permute(0, 3, 1, 2))  # [B, C_lat, x, y]

    def quantize(self, z: torch.Tensor) -> Quantized:
        """Encoder latents -> quant_conv -> nearest codes (straight-through), indices, VQ loss."""
        return self.vqvae.snap_to_codebook(self.vqvae.quant_conv(z))

    def decode_latents(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook-space latents [B, C_lat, x, y] -> class logits [B, X, Y, Z, num_classes].

        ``codes`` need not be codebook vectors: the occupancy branch feeds its continuous
        predictions here. Applies post_quant_conv, the decoder, and the tied class embeddings.
        """
        expected = (self.config.latent_channels, *self.config.latent_shape)
        if codes.dim() != 4 or tuple(codes.shape[1:]) != expected:
            raise ConfigError(
                f"latents must have shape [B, {', '.join(map(str, expected))}], "
                f"got {list(codes.shape)}"
            )
        decoded = self.decoder(self.vqvae.post_quant_conv(codes))  # [B, Z*E, X, Y]
        batch, _, size_x, size_y = decoded.shape
        # One [B*X*Y*Z, E] @ [E, num_classes] product: a 5-D matmul would loop over voxels.
        per_height = decoded.permute(0, 2, 3, 1).reshape(-1, self.config.class_embed_dim)
        logits = per_height @ self.class_embeds.weight.t()  # [B*X*Y*Z, num_classes]
        return logits.view(
            batch, size_x, size_y, self.config.num_heights, self.config.num_classes
        )  # [B, X, Y, Z, num_classes]

    def forward(self, occupancy: torch.Tensor) -> VQVAEOutput:
        quantized = self.quantize(self.encode(occupancy))
        return VQVAEOutput(
            logits=self.decode_latents(quantized.codes),
            indices=quantized.indices,
            vq_loss=quantized.loss,
        )

    def reconstruction_loss(
        self,
        occupancy: torch.Tensor,
        weights: ReconstructionWeights | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The tokenizer's own training objective on ``occupancy`` (int [B, X, Y, Z]).

        Runs the forward pass and applies :func:`reconstruction_loss` (OccWorld's weights by
        default). A data-parallel wrapper must call the module itself, then the function.
        """
        return reconstruction_loss(self(occupancy), occupancy, weights, class_weights)


@dataclass(frozen=True)
class ReconstructionWeights:
    """Weights of the tokenizer objective; the defaults are OccWorld's (CE 10, Lovasz 1, VQ 1)."""

    ce: float = 10.0
    lovasz: float = 1.0
    vq: float = 1.0

    def __post_init__(self) -> None:
        if not all(weight >= 0 for weight in (self.ce, self.lovasz, self.vq)) or not (
            self.ce + self.lovasz > 0
        ):
            raise ConfigError(
                "reconstruction weights must be >= 0 with ce or lovasz > 0, got "
                f"ce={self.ce}, lovasz={self.lovasz}, vq={self.vq}"
            )


def reconstruction_loss(
    output: VQVAEOutput,
    occupancy: torch.Tensor,
    weights: ReconstructionWeights | None = None,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """ce * cross-entropy + lovasz * Lovasz-softmax + vq * VQ loss of a tokenizer's ``output``.

    ``output``: the tokenizer's forward on ``occupancy`` (int [B, X, Y, Z]). Every voxel counts
    (the tokenizer reconstructs the whole grid, not only what the cameras see), in fp32.
    ``class_weights`` [num_classes] weights the cross-entropy per class (None: unweighted, as
    OccWorld; see :func:`balanced_class_weights`). Returns (loss, {"vq_ce", "vq_lovasz",
    "vq_codebook"}); a term whose weight is 0 is neither computed nor reported (the VQ term is
    always reported: it measures the codebook fit).
    """
    weights = weights if weights is not None else ReconstructionWeights()
    num_classes = output.logits.shape[-1]
    flat_logits = output.logits.reshape(-1, num_classes).float()  # [N, C], a view when fp32
    labels = occupancy.reshape(-1).long()  # [N]
    total = weights.vq * output.vq_loss.float()
    terms = {"vq_codebook": float(output.vq_loss.detach())}
    if weights.ce > 0:
        cross_entropy = masked_cross_entropy(flat_logits, labels, class_weights=class_weights)
        total = total + weights.ce * cross_entropy
        terms["vq_ce"] = float(cross_entropy.detach())
    if weights.lovasz > 0:
        lovasz = lovasz_softmax(flat_logits.softmax(dim=-1), labels)
        total = total + weights.lovasz * lovasz
        terms["vq_lovasz"] = float(lovasz.detach())
    return total, terms


def balanced_class_weights(counts: torch.Tensor) -> torch.Tensor:
    """Per-class cross-entropy weights [C] from voxel counts [C]: 1 / ln(1.02 + frequency).

    ENet's (Paszke et al., 2016) bounded inverse-frequency weighting: a class of frequency f
    gets 1 / ln(1.02 + f), so the rarest classes get at most ~50 x and the commonest (free,
    ~0.8 of the voxels) ~1.7; scaled so that the mean weight per counted voxel is 1.
    """
    counts = counts.double()
    if counts.dim() != 1 or not bool((counts >= 0).all()) or not float(counts.sum()) > 0:
        raise ConfigError("class counts must be a 1-D tensor of non-negative counts, not all 0")
    frequency = counts / counts.sum()
    weights = 1.0 / torch.log(1.02 + frequency)
    return (weights / (weights * frequency).sum()).float()


# Prefixes a released OccWorld checkpoint may put before the tokenizer's own names: "module."
# from (Distributed)DataParallel, "vae." from the full world model that contains the tokenizer.
_WRAPPER_PREFIX = "module."
_WORLD_MODEL_PREFIX = "vae."
_MAX_LISTED_KEYS = 12


def _read_state_dict(source: str | Path) -> Mapping[str, object]:
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"VQ-VAE checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any reader failure means the file is unusable
        raise CheckpointError(
            f"cannot read VQ-VAE checkpoint {path}: {type(error).__name__}: {error}"
        ) from error


def _describe(keys: list[str]) -> str:
    listed = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return f"{listed}, ... ({more} more)" if more > 0 else listed


def _tokenizer_tensors(state: Mapping[str, object], source: str) -> dict[str, torch.Tensor]:
    """Strip wrappers and prefixes; keep only the tokenizer's tensors of a full world model."""
    while isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} does not hold a state dict (got {type(state).__name__})")
    unwrapped: dict[str, object] = {}
    for key, value in state.items():
        name = str(key)
        while name.startswith(_WRAPPER_PREFIX):
            name = name[len(_WRAPPER_PREFIX) :]
        unwrapped[name] = value
    if any(name.startswith(_WORLD_MODEL_PREFIX) for name in unwrapped):
        ignored = [name for name in unwrapped if not name.startswith(_WORLD_MODEL_PREFIX)]
        if ignored:
            logger.info(
                "%s: ignoring %d tensors outside the tokenizer (vae.*)", source, len(ignored)
            )
        unwrapped = {
            name[len(_WORLD_MODEL_PREFIX) :]: value
            for name, value in unwrapped.items()
            if name.startswith(_WORLD_MODEL_PREFIX)
        }
    not_tensors = [name for name, value in unwrapped.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{source}: entries that are not tensors: {_describe(not_tensors)}")
    return unwrapped  # type: ignore[return-value]


def load_occworld_vqvae(
    model: OccupancyVQVAE, source: str | Path | Mapping[str, object]
) -> OccupancyVQVAE:
    """Load OccWorld tokenizer weights into ``model`` (in place) and return it.

    ``source``: a ``.safetensors`` file, a torch checkpoint (``.pth``/``.pt``/``.ckpt``, read with
    ``weights_only=True``), or an in-memory state dict. Nested ``{"state_dict": ...}`` wrappers
    and ``module.`` prefixes are removed; when names carry the ``vae.`` prefix of the full
    OccWorld world model, only those tensors are used. Every tensor of the model must be present
    with the right shape and finite values, and nothing else: otherwise a
    :class:`CheckpointError` lists the missing, unexpected, mis-shaped or non-finite names and
    ``model`` is left unchanged.
    """
    if isinstance(source, Mapping):
        description, state = "OccWorld VQ-VAE state dict", source
    else:
        description, state = str(source), _read_state_dict(source)
    tensors = _tokenizer_tensors(state, description)
    expected = model.state_dict()
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    misshaped = [
        f"{name} {tuple(tensors[name].shape)} != {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in tensors and tensors[name].shape != tensor.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected: {_describe(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped (checkpoint != model): {_describe(misshaped)}")
    if problems:
        raise CheckpointError(
            f"{description} does not match the VQ-VAE ({model.config.base_channels} base channels, "
            f"{model.config.latent_channels} latent channels): " + "; ".join(problems)
        )
    non_finite = [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if non_finite:
        raise CheckpointError(f"{description}: non-finite values in {_describe(non_finite)}")
    model.load_state_dict(tensors, strict=True)
    return model


# A trained scene tokenizer directory, as `python -m training.train --stage tokenizer` writes it:
# the weights (OccWorld's names, so either loader reads them) and the configuration they fit.
SCENE_TOKENIZER_WEIGHTS = "scene_tokenizer.safetensors"
SCENE_TOKENIZER_CONFIG = "scene_tokenizer.yaml"
SCENE_TOKENIZER_FORMAT = 1


def save_scene_tokenizer(
    directory: str | Path,
    config: VQVAEConfig,
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write a tokenizer's ``state`` (its state dict) and ``config`` into ``directory``.

    ``metadata`` (plain values: the run, its validation metrics) is stored beside the config
    for people reading the directory; loading ignores it.
    """
    import yaml
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()},
        str(directory / SCENE_TOKENIZER_WEIGHTS),
    )
    fields = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in dataclasses.asdict(config).items()
    }
    document = {
        "format_version": SCENE_TOKENIZER_FORMAT,
        "vqvae": fields,
        "metadata": dict(metadata or {}),
    }
    (directory / SCENE_TOKENIZER_CONFIG).write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


def read_scene_tokenizer_config(directory: str | Path) -> VQVAEConfig:
    """The :class:`VQVAEConfig` a scene tokenizer directory was trained with."""
    import yaml

    path = Path(directory) / SCENE_TOKENIZER_CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"{directory} is not a scene tokenizer checkpoint: {SCENE_TOKENIZER_CONFIG} is "
            "missing (train one with `python -m training.train --stage tokenizer`, then pass "
            "its RUN/checkpoint)"
        )
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CheckpointError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or document.get("format_version") != SCENE_TOKENIZER_FORMAT:
        raise CheckpointError(
            f"{path}: unsupported scene tokenizer format; expected format_version "
            f"{SCENE_TOKENIZER_FORMAT}"
        )
    fields = document.get("vqvae")
    known = {field.name for field in dataclasses.fields(VQVAEConfig)}
    if not isinstance(fields, dict) or set(fields) - known:
        raise CheckpointError(f"{path}: 'vqvae' must map VQVAEConfig fields, got {fields!r}")
    try:
        return VQVAEConfig(**fields)
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"{path}: {error}") from error


def load_scene_tokenizer(
    directory: str | Path, model: OccupancyVQVAE | None = None
) -> OccupancyVQVAE:
    """A trained scene tokenizer from ``directory``: into ``model`` (in place), or a new one.

    ``model``'s configuration must equal the recorded one (a :class:`CheckpointError` names the
    fields that differ, e.g. a tiny tokenizer offered to the real preset). The tensors are
    checked as :func:`load_occworld_vqvae` does, and ``model`` is left unchanged on any error.
    """
    directory = Path(directory)
    config = read_scene_tokenizer_config(directory)
    if model is None:
        model = OccupancyVQVAE(config)
    elif model.config != config:
        differing = [
            f"{field.name} {getattr(config, field.name)!r} (model: "
            f"{getattr(model.config, field.name)!r})"
            for field in dataclasses.fields(VQVAEConfig)
            if getattr(config, field.name) != getattr(model.config, field.name)
        ]
        raise CheckpointError(
            f"scene tokenizer {directory} was trained with another configuration than this "
            f"model's: {'; '.join(differing)}"
        )
    return load_occworld_vqvae(model, directory / SCENE_TOKENIZER_WEIGHTS)
