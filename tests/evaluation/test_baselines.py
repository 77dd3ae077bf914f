"""Baselines: constant velocity, and the ego / ego+command / oracle MLP's training, saving and
loading."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from occvla_ros.errors import CheckpointError, ConfigError
from occvla_ros.evaluation.baselines import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    EgoMLPConfig,
    EgoStatusBaseline,
    constant_velocity,
    ego_features,
    train_ego_baseline,
)


def test_constant_velocity_drives_straight_at_the_current_speed():
    waypoints = constant_velocity(np.array([[10.0, 1.0, 0.2], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(waypoints[0, :, 0], 10.0 * 0.5 * np.arange(1, 7))
    np.testing.assert_allclose(waypoints[0, :, 1], 0.0)
    np.testing.assert_allclose(waypoints[1], 0.0)


def synthetic_motion(count: int, seed: int):
    """Ego states and past positions of cars at constant acceleration; exact future targets."""
    rng = np.random.default_rng(seed)
    speed = rng.uniform(0, 15, count)
    acceleration = rng.uniform(-2, 2, count)
    past_times = -0.5 * np.arange(4, 0, -1)  # -2.0 .. -0.5 s
    past = np.zeros((count, 4, 2))
    past[..., 0] = speed[:, None] * past_times + 0.5 * acceleration[:, None] * past_times**2
    future_times = 0.5 * np.arange(1, 7)
    targets = np.zeros((count, 6, 2))
    targets[..., 0] = speed[:, None] * future_times + 0.5 * acceleration[:, None] * future_times**2
    ego_state = np.stack([speed, acceleration, np.zeros(count)], axis=1)
    return ego_state, past, targets


@pytest.mark.slow
def test_mlp_learns_ego_motion_and_round_trips_through_safetensors(tmp_path):
    ego_state, past, targets = synthetic_motion(1000, seed=0)
    mask = np.ones((1000, 6), bool)
    mask[:100, 4:] = False  # truncated futures are masked out of the loss
    baseline = train_ego_baseline(
        ego_features(ego_state, past), targets, mask, EgoMLPConfig(hidden_sizes=(64, 64)), epochs=60
    )
    test_state, test_past, test_targets = synthetic_motion(200, seed=1)
    predicted = baseline.predict(test_state, test_past)
    error = np.linalg.norm(predicted - test_targets, axis=-1).mean()
    speed_only = np.linalg.norm(constant_velocity(test_state) - test_targets, axis=-1).mean()
    assert error < 0.5 * speed_only  # it uses the acceleration constant velocity ignores
    baseline.save(tmp_path)
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["kind"] == "ego-status-mlp"
    # The weights are as readable as the config (safetensors alone writes them 0600).
    modes = {stat.S_IMODE((tmp_path / name).stat().st_mode) for name in (CONFIG_FILE, WEIGHTS_FILE)}
    assert len(modes) == 1
    loaded = EgoStatusBaseline.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict(test_state, test_past), predicted)


def test_bad_baseline_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match=CONFIG_FILE):
        EgoStatusBaseline.load(tmp_path)
    config = EgoMLPConfig(hidden_sizes=(8,))
    ego_state, past, targets = synthetic_motion(16, seed=2)
    baseline = train_ego_baseline(
        ego_features(ego_state, past), targets, np.ones((16, 6)), config, epochs=1
    )
    baseline.save(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="do not load"):
        EgoStatusBaseline.load(tmp_path)
    (tmp_path / CONFIG_FILE).write_text('{"kind": "something else"}')
    with pytest.raises(CheckpointError, match="bad ego baseline config"):
        EgoStatusBaseline.load(tmp_path)
    with pytest.raises(ConfigError, match="past positions"):
        baseline.predict(ego_state, past[:, :2])
    with pytest.raises(ConfigError, match="hidden sizes"):
        EgoMLPConfig(hidden_sizes=())


def test_fill_past_repeats_the_oldest_known_position():
    from occvla_ros.evaluation.sources import fill_past

    past = np.array([[[9, 9], [9, 9], [-5, 0], [-2.5, 0]], [[1, 1], [2, 2], [3, 3], [4, 4]]], float)
    mask = np.array([[False, False, True, True], [False, False, False, False]])
    filled = fill_past(past, mask)
    np.testing.assert_allclose(filled[0], [[-5, 0], [-5, 0], [-5, 0], [-2.5, 0]])
    np.testing.assert_allclose(filled[1], 0.0)  # no past at all: the current position


def test_a_feature_constant_in_training_does_not_blow_up_at_test_time():
    ego_state, past, targets = synthetic_motion(64, seed=3)  # yaw rate exactly 0 throughout
    baseline = train_ego_baseline(
        ego_features(ego_state, past), targets, np.ones((64, 6)), EgoMLPConfig(), epochs=20
    )
    turning = ego_state.copy()
    turning[:, 2] = 0.05  # a gentle turn never seen in training
    shift = np.abs(baseline.predict(turning, past) - baseline.predict(ego_state, past)).max()
    assert shift < 5.0


@pytest.mark.slow
def test_command_and_world_state_features_reach_the_mlp_and_survive_saving(tmp_path):
    """The ego+command MLP and the oracle read what the ego state cannot show: here the lateral
    target comes only from the command (turn left / right / straight) and a world feature."""
    rng = np.random.default_rng(0)
    count = 300
    ego_state, past, _ = synthetic_motion(count, seed=2)
    commands = [("turn left", "turn right", "go straight")[i % 3] for i in range(count)]
    world = rng.uniform(0.0, 4.0, (count, 1))
    targets = np.zeros((count, 6, 2))
    sign = np.array(
        [{"turn left": 1.0, "turn right": -1.0, "go straight": 0.0}[c] for c in commands]
    )
    targets[..., 1] = (3.0 * sign + world[:, 0])[:, None] * np.linspace(0.2, 1.0, 6)
    config = EgoMLPConfig(hidden_sizes=(32,), use_command=True, world_features=("offset",))
    features = ego_features(ego_state, past, commands, world)
    assert features.shape == (count, config.input_size) == (count, 3 + 8 + 3 + 1)
    baseline = train_ego_baseline(
        features, targets, np.ones((count, 6), bool), config, epochs=60, batch_size=32
    )
    predicted = baseline.predict(ego_state, past, commands, world)
    assert (
        np.abs(predicted[..., 1] - targets[..., 1]).mean() < 0.25 * np.abs(targets[..., 1]).mean()
    )
    loaded = EgoStatusBaseline.load(baseline.save(tmp_path))
    assert loaded.config.use_command and loaded.config.world_features == ("offset",)
    np.testing.assert_allclose(loaded.predict(ego_state, past, commands, world), predicted)
    with pytest.raises(ConfigError, match="driving command"):
        loaded.predict(ego_state, past)
    with pytest.raises(ConfigError, match="unknown driving commands"):
        ego_features(ego_state[:1], past[:1], ["fly"])
