"""OccVLA configuration as data: typed dataclasses, two presets, YAML round-trip.

``OccVLAConfig.from_preset("paligemma2-3b-224")`` is the paper's model (PaliGemma2-3B at 224 px,
loaded from a local weights directory); ``OccVLAConfig.from_preset("tiny")`` has the same
architecture with a few narrow layers, random init and an in-process tokenizer, for tests and the
CPU demo. A checkpoint stores the configuration it was trained with (see ``checkpoint.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from occvla_ros.constants import DRIVING_COMMANDS, NUM_CAMERAS, NUM_WAYPOINTS
from occvla_ros.errors import ConfigError
from occvla_ros.meta_action import MetaActionVocabulary
from occvla_ros.model.occupancy import OccupancyBranchConfig

PRESETS: tuple[str, ...] = ("tiny", "paligemma2-3b-224")
STAGES: tuple[str, ...] = ("qa", "occupancy_language", "planning")


def _require_positive_ints(owner: str, **values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{owner}.{name} must be a positive integer, got {value!r}")


@dataclass
class BackboneConfig:
    """The PaliGemma2 backbone: SigLIP vision tower -> linear projector -> Gemma2 decoder."""

    # Where the real weights live (a local directory with config.json, *.safetensors and the
    # tokenizer files, as downloaded by the user). None: build from the sizes below, random init.
    weights_dir: str | None = None

    # SigLIP vision tower.
    image_size: int = 224
    patch_size: int = 14
    vision_hidden_size: int = 1152
    vision_intermediate_size: int = 4304
    vision_layers: int = 27
    vision_heads: int = 16

    # Gemma2 language model.
    text_hidden_size: int = 2304
    text_intermediate_size: int = 9216
    text_layers: int = 26
    text_heads: int = 8
    text_kv_heads: int = 4
    head_dim: int = 256
    # Vocabulary of the real model; the tiny preset sizes it from len(tokenizer) instead (None).
    vocab_size: int | None = 257_152
    image_token_id: int | None = 257_152  # None: the tokenizer's <image> id

    def __post_init__(self) -> None:
        _require_positive_ints(
            "BackboneConfig",
            image_size=self.image_size,
            patch_size=self.patch_size,
            vision_hidden_size=self.vision_hidden_size,
            vision_intermediate_size=self.vision_intermediate_size,
            vision_layers=self.vision_layers,
            vision_heads=self.vision_heads,
            text_hidden_size=self.text_hidden_size,
            text_intermediate_size=self.text_intermediate_size,
            text_layers=self.text_layers,
            text_heads=self.text_heads,
            text_kv_heads=self.text_kv_heads,
            head_dim=self.head_dim,
        )
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"BackboneConfig.image_size={self.image_size} must be a multiple of "
                f"patch_size={self.patch_size}"
            )
        if self.vision_hidden_size % self.vision_heads:
            raise ConfigError(
                f"BackboneConfig.vision_hidden_size={self.vision_hidden_size} must be divisible "
                f"by vision_heads={self.vision_heads}"
            )
        if self.text_heads % self.text_kv_heads:
            raise ConfigError(
                f"BackboneConfig.text_heads={self.text_heads} must be a multiple of "
                f"text_kv_heads={self.text_kv_heads}"
            )

    @property
    def tokens_per_view(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class LoRASettings:
    """Low-rank adapters (peft) on the language model and optionally the vision tower."""

    enabled: bool = True
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # Projection names adapted in every targeted decoder layer.
    target_projections: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    adapt_vision_tower: bool = False

    def __post_init__(self) -> None:
        self.target_projections = tuple(self.target_projections)
        _require_positive_ints("LoRASettings", rank=self.rank, alpha=self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoRASettings.dropout must be in [0, 1), got {self.dropout}")
        if self.enabled and not self.target_projections:
            raise ConfigError("LoRASettings.target_projections is empty while LoRA is enabled")


@dataclass
class PromptConfig:
    """What the text prompt tells the VLM."""

    # Tell the VLM the high-level route command. In nuScenes the command is derived from the
    # ground-truth future (the +-2 m rule of ST-P3/UniAD/VAD), so it leaks part of the answer; in
    # the synthetic world it comes from the route. Off unless a config asks for it.
    use_command: bool = False
    question: str = "What should the ego vehicle do next?"
    # Prompt + answer tokens (image tokens not counted): OmniDrive description answers run to a
    # few hundred tokens; the longest synthetic QA pair is 286 tiny-tokenizer tokens.
    max_text_tokens: int = 512

    def __post_init__(self) -> None:
        _require_positive_ints("PromptConfig", max_text_tokens=self.max_text_tokens)
        if not self.question.strip():
            raise ConfigError("PromptConfig.question must not be empty")


POOLINGS: tuple[str, ...] = ("attention", "camera_mean")
TRAINING_ACTIONS: tuple[str, ...] = ("predicted", "ground_truth")


@dataclass
class PlanningHeadConfig:
    """MLP: [meta-action, ego state, past trajectory, command, pooled visual] -> 6 x (x, y)."""

    action_embed_dim: int = 64
    # "attention": num_queries learned queries cross-attend to every visual token (each tagged
    # with a learned camera x patch embedding) -> num_queries x visual_dim; "camera_mean": one
    # mean token per camera -> 6 x visual_dim.
    pooling: str = "attention"
    visual_dim: int = 256
    num_queries: int = 16
    attention_heads: int = 8
    num_past: int = 4  # previous keyframes (0.5 s apart) in the input, as the ego MLP's
    # Read the route command (an embedding of one of `commands`); the model then needs one.
    use_command: bool = False
    commands: tuple[str, ...] = DRIVING_COMMANDS
    command_embed_dim: int = 16
    hidden_dim: int = 512
    num_layers: int = 3
    dropout: float = 0.1
    num_waypoints: int = NUM_WAYPOINTS
    # Predict the offset from constant velocity (straight on at the current speed), not the
    # waypoints from zero: the MLP starts from a sensible plan and learns the deviation.
    kinematic_prior: bool = True
    # Which meta-action stage 3 feeds the head: "predicted" (the frozen VLM's scored argmax, what
    # the head gets at test time) or "ground_truth" (teacher forcing).
    training_action: str = "predicted"

    def __post_init__(self) -> None:
        self.commands = tuple(self.commands)
        _require_positive_ints(
            "PlanningHeadConfig",
            action_embed_dim=self.action_embed_dim,
            visual_dim=self.visual_dim,
            num_queries=self.num_queries,
            attention_heads=self.attention_heads,
            command_embed_dim=self.command_embed_dim,
            hidden_dim=self.hidden_dim,
            num_layers=self.num_layers,
            num_waypoints=self.num_waypoints,
        )
        for name, value, allowed in (
            ("pooling", self.pooling, POOLINGS),
            ("training_action", self.training_action, TRAINING_ACTIONS),
        ):
            if value not in allowed:
                raise ConfigError(f"PlanningHeadConfig.{name}={value!r}; use one of {allowed}")
        if not isinstance(self.num_past, int) or self.num_past < 0:
            raise ConfigError(f"PlanningHeadConfig.num_past must be >= 0, got {self.num_past!r}")
        if self.visual_dim % self.attention_heads:
            raise ConfigError(
                f"PlanningHeadConfig.visual_dim={self.visual_dim} must be divisible by "
                f"attention_heads={self.attention_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"PlanningHeadConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.commands or len(set(self.commands)) != len(self.commands):
            raise ConfigError(f"PlanningHeadConfig.commands must be distinct, got {self.commands}")


@dataclass
class LossWeights:
    """Weights of the stage-2 joint loss: text * meta-action CE + occupancy * occupancy loss."""

    text: float = 1.0
    occupancy: float = 1.0

    def __post_init__(self) -> None:
        if not (self.text >= 0 and self.occupancy >= 0) or self.text + self.occupancy == 0:
            raise ConfigError(
                f"LossWeights must be >= 0 and not both 0, got text={self.text}, "
                f"occupancy={self.occupancy}"
            )


@dataclass
class OccVLAConfig:
    """Everything that defines an OccVLA model (no runtime settings such as device)."""

    preset: str = "paligemma2-3b-224"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    lora: LoRASettings = field(default_factory=LoRASettings)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    meta_actions: MetaActionVocabulary = field(default_factory=MetaActionVocabulary)
    # The occupancy branch and the planning head read the language model's hidden states at the
    # image-token positions after this decoder layer (1-based; text_layers = the last layer).
    visual_feature_layer: int = 26
    occupancy: OccupancyBranchConfig = field(default_factory=OccupancyBranchConfig)
    # Build the occupancy branch at all (False: a VLM + planning head only, e.g. an ablation).
    with_occupancy: bool = True
    planning: PlanningHeadConfig = field(default_factory=PlanningHeadConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; expected one of {PRESETS}")
        for name, kind in (
            ("backbone", BackboneConfig),
            ("lora", LoRASettings),
            ("prompt", PromptConfig),
            ("occupancy", OccupancyBranchConfig),
            ("planning", PlanningHeadConfig),
            ("loss_weights", LossWeights),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _build(kind, value, f"OccVLAConfig.{name}"))
        if isinstance(self.meta_actions, dict):
            self.meta_actions = MetaActionVocabulary.from_dict(self.meta_actions)
        if not 1 <= self.visual_feature_layer <= self.backbone.text_layers:
            raise ConfigError(
                f"OccVLAConfig.visual_feature_layer={self.visual_feature_layer} must be in "
                f"1..{self.backbone.text_layers} (the language model's decoder layers)"
            )

    @property
    def image_size(self) -> int:
        return self.backbone.image_size

    @property
    def num_image_tokens(self) -> int:
        """Image placeholder tokens per sample: all cameras' patches."""
        return NUM_CAMERAS * self.backbone.tokens_per_view

    @classmethod
    def from_preset(cls, name: str) -> OccVLAConfig:
        if name == "paligemma2-3b-224":
            return cls()
        if name == "tiny":
            return cls(
                preset="tiny",
                backbone=BackboneConfig(
                    image_size=112,
                    patch_size=14,
                    vision_hidden_size=128,
                    vision_intermediate_size=256,
                    vision_layers=2,
                    vision_heads=2,
                    text_hidden_size=128,
                    text_intermediate_size=256,
                    text_layers=2,
                    text_heads=2,
                    text_kv_heads=1,
                    head_dim=64,
                    vocab_size=None,
                    image_token_id=None,
                ),
                lora=LoRASettings(rank=8, alpha=16, dropout=0.0),
                prompt=PromptConfig(max_text_tokens=384),
                visual_feature_layer=2,
                occupancy=OccupancyBranchConfig.tiny(),
                planning=PlanningHeadConfig(
                    action_embed_dim=16,
                    visual_dim=32,
                    num_queries=8,
                    attention_heads=2,
                    command_embed_dim=8,
                    hidden_dim=128,
                    num_layers=2,
                ),
            )
        raise ConfigError(f"unknown preset {name!r}; expected one of {PRESETS}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["meta_actions"] = self.meta_actions.to_dict()
        return _plain(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OccVLAConfig:
        """Values in ``data`` override the defaults of its ``preset`` (a partial YAML works)."""
        if not isinstance(data, dict):
            raise ConfigError(f"an OccVLA configuration must be a mapping, got {type(data)}")
        preset = data.get("preset", cls.preset)
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; expected one of {PRESETS}")
        merged = _merge(cls.from_preset(preset).to_dict(), data, "OccVLAConfig")
        return _build(cls, merged, "OccVLAConfig")

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load_yaml(cls, path: str | Path) -> OccVLAConfig:
        """An OccVLAConfig YAML (a checkpoint's ``config.yaml``), or a training YAML
        (``training/configs/*.yaml``, a run's ``config.yaml``), whose ``model`` section is the
        configuration: OccVLAConfig has no ``model`` field, so the two cannot be confused."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from error
        if isinstance(data, dict) and "model" in data:
            data = data["model"] or {}
        return cls.from_dict(data)


def _build(kind: type, data: dict[str, Any], owner: str) -> Any:
    """kind(**data) with an error that names unknown keys instead of a bare TypeError."""
    known = {f.name for f in dataclasses.fields(kind) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{owner}: unknown keys {unknown}; known keys are {sorted(known)}")
    return kind(**data)


def _merge(base: dict[str, Any], override: dict[str, Any], owner: str) -> dict[str, Any]:
    """``base`` with ``override``'s values, recursing into nested sections; names unknown keys."""
    unknown = sorted(set(override) - set(base))
    if unknown:
        raise ConfigError(f"{owner}: unknown keys {unknown}; known keys are {sorted(base)}")
    merged = dict(base)
    for key, value in override.items():
        if isinstance(base[key], dict) and isinstance(value, dict) and key != "meta_actions":
            merged[key] = _merge(base[key], value, f"{owner}.{key}")
        else:
            merged[key] = value
    return merged


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so YAML stays plain (safe_dump/safe_load round-trip)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
