"""Planning baselines without cameras, scored by the same metrics as the model.

- Constant velocity: the ego keeps its current speed straight ahead, ``(v * t, 0)`` in the ego
  frame at t = 0.5, 1.0, ..., 3.0 s.
- Ego-status MLP (in the spirit of AD-MLP): a small MLP reads the ego state (speed, longitudinal
  acceleration, yaw rate) and the past trajectory (the ego positions of the previous keyframes in
  the current ego frame; before the scene start the oldest known position), optionally the
  high-level driving command (one-hot, ``use_command``: the ego+command MLP, given what the model
  is given), and regresses the 6 future waypoints. Every input is standardised with the training
  set's mean and standard deviation. No sensor input. Trained by ``occvla train-ego-baseline`` on
  a training split; saved as ``model.safetensors`` plus a JSON config holding the architecture and
  the input normalisation (no pickle).
- Privileged oracle: the same MLP also given the synthetic world's state (``world_features``, see
  :mod:`occvla_ros.data.world_annotations`: the lane needed, the road's heading ahead, the distance
  and wait of the next stop, the lead's gap, speed and brake lights, the obstacle's distance and
  lane). What a perfect perception of the scene would know; the gap between it and the
  ego+command MLP is what the cameras can add (``benchmarks/sight_matters.py`` measures it).

The ``train-ego-baseline`` subcommand is defined here (``add_arguments`` / ``run``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occvla_ros.constants import DRIVING_COMMANDS, NUM_WAYPOINTS, WAYPOINT_DT_S
from occvla_ros.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

EGO_STATE_SIZE = 3
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
BASELINE_KIND = "ego-status-mlp"
MIN_FEATURE_STD = 0.1  # m, m/s, m/s^2 or rad/s


def constant_velocity(ego_state: np.ndarray) -> np.ndarray:
    """Waypoints [B, 6, 2] (ego frame) of driving straight on at the speed in ego_state [B, 3]."""
    ego_state = np.asarray(ego_state, dtype=np.float64)
    times = WAYPOINT_DT_S * np.arange(1, NUM_WAYPOINTS + 1)  # [T]
    waypoints = np.zeros((len(ego_state), NUM_WAYPOINTS, 2))
    waypoints[..., 0] = ego_state[:, :1] * times
    return waypoints


@dataclass(frozen=True)
class EgoMLPConfig:
    """Architecture and input layout of the ego-status MLP."""

    num_past: int = 4  # past keyframes (0.5 s apart) in the input
    hidden_sizes: tuple[int, ...] = (256, 256)
    use_command: bool = False  # the driving command, one-hot over constants.DRIVING_COMMANDS
    world_features: tuple[str, ...] = ()  # privileged world state (the oracle), by name
    # Normalisation of the input features, filled from the training set.
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if self.num_past < 0 or not self.hidden_sizes or min(self.hidden_sizes) <= 0:
            raise ConfigError(
                f"ego MLP needs num_past >= 0 and positive hidden sizes; got {self.num_past}, "
                f"{self.hidden_sizes}"
            )
        if len(self.feature_mean) not in (0, self.input_size) or len(self.feature_std) != len(
            self.feature_mean
        ):
            raise ConfigError(
                f"ego MLP normalisation must have {self.input_size} means and stds; got "
                f"{len(self.feature_mean)} and {len(self.feature_std)}"
            )

    @property
    def input_size(self) -> int:
        command = len(DRIVING_COMMANDS) if self.use_command else 0
        return EGO_STATE_SIZE + 2 * self.num_past + command + len(self.world_features)

    def to_dict(self) -> dict:
        return {"kind": BASELINE_KIND, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> EgoMLPConfig:
        if data.get("kind") != BASELINE_KIND:
            raise ConfigError(f"not an {BASELINE_KIND} config (kind {data.get('kind')!r})")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        )


def ego_features(
    ego_state: np.ndarray,
    past_trajectory: np.ndarray,
    commands: Sequence[str] | None = None,
    world_state: np.ndarray | None = None,
) -> np.ndarray:
    """Input features [B, F] from ego_state [B, 3], past positions [B, P, 2], then (when given)
    the commands [B] one-hot and the world state [B, W]."""
    ego_state = np.asarray(ego_state, dtype=np.float32)
    parts = [ego_state, np.asarray(past_trajectory, dtype=np.float32).reshape(len(ego_state), -1)]
    if commands is not None:
        unknown = sorted(set(commands) - set(DRIVING_COMMANDS))
        if unknown:
            raise ConfigError(f"unknown driving commands {unknown}; expected {DRIVING_COMMANDS}")
        one_hot = np.array([[c == known for known in DRIVING_COMMANDS] for c in commands])
        parts.append(one_hot.astype(np.float32).reshape(len(ego_state), -1))
    if world_state is not None:
        parts.append(np.asarray(world_state, dtype=np.float32).reshape(len(ego_state), -1))
    return np.concatenate(parts, axis=1)


def build_mlp(config: EgoMLPConfig):
    """The torch module: normalised features [B, F] -> waypoints [B, 6 * 2]."""
    import torch
    from torch import nn

    class EgoStatusMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            width = config.input_size
            for hidden in config.hidden_sizes:
                layers += [nn.Linear(width, hidden), nn.ReLU()]
                width = hidden
            layers.append(nn.Linear(width, NUM_WAYPOINTS * 2))
            self.layers = nn.Sequential(*layers)
            mean = config.feature_mean or (0.0,) * config.input_size
            std = config.feature_std or (1.0,) * config.input_size
            self.register_buffer("feature_mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("feature_std", torch.tensor(std, dtype=torch.float32))

        def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, F] -> [B, T, 2]
            normalised = (features - self.feature_mean) / self.feature_std
            return self.layers(normalised).view(-1, NUM_WAYPOINTS, 2)

    return EgoStatusMLP()


class EgoStatusBaseline:
    """A trained ego-status MLP with its config; ``predict`` maps features to waypoints."""

    def __init__(self, config: EgoMLPConfig, module) -> None:
        self.config = config
        self.module = module.eval()

    def predict(
        self,
        ego_state: np.ndarray,
        past_trajectory: np.ndarray,
        commands: Sequence[str] | None = None,
        world_state: np.ndarray | None = None,
    ) -> np.ndarray:
        """Waypoints [B, 6, 2] (ego frame) from ego_state [B, 3] and past positions [B, P, 2],
        plus the commands [B] and world state [B, W] when the config reads them."""
        import torch

        if self.config.use_command and commands is None:
            raise ConfigError("this ego baseline reads the driving command: pass commands")
        if self.config.world_features and world_state is None:
            raise ConfigError("this baseline is the world-state oracle: pass world_state")
        features = ego_features(
            ego_state,
            past_trajectory,
            commands if self.config.use_command else None,
            world_state if self.config.world_features else None,
        )
        if features.shape[1] != self.config.input_size:
            raise ConfigError(
                f"ego baseline expects {self.config.input_size} input features "
                f"({self.config.num_past} past positions); got {features.shape[1]}"
            )
        with torch.no_grad():
            return self.module(torch.from_numpy(features)).double().numpy()

    @property
    def method(self) -> str:
        """Its name in results: "ego_command_mlp" when it reads the command, else "ego_mlp"."""
        return "ego_command_mlp" if self.config.use_command else "ego_mlp"

    @property
    def label(self) -> str:
        return "ego+command MLP" if self.config.use_command else "ego-status MLP"

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.module.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        # safetensors writes its file private (0600): give it the config file's umask mode.
        (directory / WEIGHTS_FILE).chmod(stat.S_IMODE((directory / CONFIG_FILE).stat().st_mode))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EgoStatusBaseline:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise CheckpointError(f"ego baseline checkpoint is missing {path}")
        try:
            config = EgoMLPConfig.from_dict(json.loads(config_path.read_text()))
        except (json.JSONDecodeError, TypeError, ConfigError) as error:
            raise CheckpointError(f"bad ego baseline config {config_path}: {error}") from error
        module = build_mlp(config)
        try:
            module.load_state_dict(load_file(str(weights_path)))
        except (SafetensorError, RuntimeError, OSError) as error:
            raise CheckpointError(
                f"ego baseline weights {weights_path} do not load: {error}"
            ) from error
        return cls(config, module)


def train_ego_baseline(
    features: np.ndarray,
    targets: np.ndarray,
    target_mask: np.ndarray,
    config: EgoMLPConfig,
    *,
    epochs: int = 200,
    learning_rate: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
) -> EgoStatusBaseline:
    """Fit the MLP to features [N, F] -> targets [N, 6, 2] with a masked L1 loss (mask [N, 6])."""
    import torch

    if len(features) == 0:
        raise ConfigError("no training samples for the ego baseline")
    features = np.asarray(features, dtype=np.float32)
    mean = features.mean(axis=0)
    # A feature (nearly) constant in training, e.g. the yaw rate on straight roads, must not turn
    # small test-time changes into huge normalised inputs: floor its scale at MIN_FEATURE_STD.
    std = np.maximum(features.std(axis=0), MIN_FEATURE_STD)
    config = dataclasses.replace(
        config, feature_mean=tuple(mean.tolist()), feature_std=tuple(std.tolist())
    )
    torch.manual_seed(seed)
    module = build_mlp(config)
    optimiser = torch.optim.AdamW(module.parameters(), lr=learning_rate, weight_decay=1e-4)
    inputs = torch.from_numpy(features)
    goal = torch.from_numpy(np.nan_to_num(np.asarray(targets, dtype=np.float32)))
    weight = torch.from_numpy(np.asarray(target_mask, dtype=np.float32))[..., None]  # [N, T, 1]
    generator = torch.Generator().manual_seed(seed)
    module.train()
    for epoch in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(inputs), batch_size):
            batch = order[start : start + batch_size]
            error = (module(inputs[batch]) - goal[batch]).abs() * weight[batch]  # [b, T, 2]
            loss = error.sum() / weight[batch].sum().clamp(min=1.0) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        if epoch % 50 == 0 or epoch == epochs - 1:
            logger.info("ego baseline epoch %d: L1 %.4f m", epoch, total / len(inputs))
    return EgoStatusBaseline(config, module)


# ---- `occvla train-ego-baseline` ----


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from occvla_ros.data.index import add_loader_arguments

    add_loader_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="directory for the checkpoint")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--with-command",
        action="store_true",
        help="also read the high-level driving command (left / right / straight), as a model "
        "whose prompt or planning head reads it does: the ego+command MLP",
    )


def run(args: argparse.Namespace) -> int:
    if args.epochs <= 0 or args.learning_rate <= 0:
        raise ConfigError(
            f"--epochs and --learning-rate must be positive: {args.epochs}, {args.learning_rate}"
        )
    from occvla_ros.output_dir import check_output_directory

    check_output_directory(args.out)
    from occvla_ros.evaluation.sources import load_ego_motion

    motion = load_ego_motion(args)
    baseline = train_ego_baseline(
        ego_features(
            motion.ego_state,
            motion.past_trajectory,
            motion.commands if args.with_command else None,
        ),
        motion.trajectory,
        motion.trajectory_mask,
        EgoMLPConfig(num_past=motion.past_trajectory.shape[1], use_command=args.with_command),
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    baseline.save(args.out)
    print(f"{baseline.label} trained on {len(motion.tokens)} samples of {args.split}: {args.out}")
    return 0
