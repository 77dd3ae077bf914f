"""The planning head's inputs: standardised ego motion, past trajectory, command, visual layout."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from occvla_ros.errors import ConfigError
from occvla_ros.model.configuration import PlanningHeadConfig
from occvla_ros.model.planning_head import PlanningHead, RunningStandardizer
from tests.model.conftest import synthetic_batch

TOKENS_PER_VIEW = 16
WIDTH = 24


def _head(**overrides) -> PlanningHead:
    config = PlanningHeadConfig(
        action_embed_dim=4,
        visual_dim=16,
        num_queries=4,
        attention_heads=2,
        hidden_dim=64,
        num_layers=2,
        dropout=0.0,
        **overrides,
    )
    torch.manual_seed(0)
    return PlanningHead(config, num_actions=3, visual_width=WIDTH, num_visual_tokens=6 * 16)


def test_running_standardizer_uses_the_statistics_of_every_batch_seen():
    standardizer = RunningStandardizer(3, min_std=1e-3)
    data = torch.randn(50, 3) * torch.tensor([5.0, 0.5, 0.01]) + torch.tensor([8.0, -1.0, 0.2])
    for chunk in (data[:7], data[7:8], data[8:40], data[40:]):
        standardizer(chunk)
    torch.testing.assert_close(standardizer.mean, data.mean(dim=0))
    torch.testing.assert_close(standardizer.std, data.std(dim=0, unbiased=False))
    standardizer.eval()
    frozen = standardizer.mean.clone()
    standardizer(torch.full((4, 3), 100.0))
    assert torch.equal(standardizer.mean, frozen)
    # A feature that never varies is scaled by the floor, not blown up.
    constant = RunningStandardizer(1, min_std=0.1)
    constant(torch.ones(10, 1))
    torch.testing.assert_close(constant.eval()(torch.tensor([[1.2]])), torch.tensor([[2.0]]))


def _visual_with_a_bright_token(patch: int) -> torch.Tensor:
    """Front camera's token ``patch`` bright, all else zero: same per-camera mean for any patch."""
    visual = torch.zeros(1, 6 * TOKENS_PER_VIEW, WIDTH)
    visual[0, patch] = torch.linspace(-3.0, 3.0, WIDTH)  # not constant: LayerNorm keeps it
    return visual


def test_attention_pooling_reads_where_a_feature_is_and_camera_mean_cannot():
    left, right = _visual_with_a_bright_token(2), _visual_with_a_bright_token(13)
    inputs = (torch.zeros(1, dtype=torch.long), torch.tensor([[5.0, 0.0, 0.0]]))
    attention, mean = _head().eval(), _head(pooling="camera_mean").eval()
    assert not torch.allclose(attention(*inputs, left), attention(*inputs, right))
    assert torch.equal(mean(*inputs, left), mean(*inputs, right))


def test_a_trained_head_steers_by_where_the_camera_sees_something():
    """A toy task only vision can solve: swerve left when the bright token is in the left half
    of the front view, right otherwise; ego state and action say nothing."""
    head = _head().train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    patches = torch.arange(TOKENS_PER_VIEW)
    side = torch.where(patches % 4 < 2, 1.0, -1.0)  # columns 0-1 of a 4 x 4 patch grid: left
    visual = torch.stack([_visual_with_a_bright_token(int(p))[0] for p in patches])  # [16, N, D]
    target = torch.zeros(len(patches), 6, 2)
    target[..., 1] = side[:, None] * torch.arange(1, 7)  # lateral offset growing with time
    actions, ego = torch.zeros(len(patches), dtype=torch.long), torch.zeros(len(patches), 3)
    mask = torch.ones(len(patches), 6, dtype=torch.bool)
    for _ in range(150):
        loss = PlanningHead.loss(head(actions, ego, visual), target, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    lateral = head(actions, ego, visual)[:, -1, 1]  # [16] at 3 s
    assert (torch.sign(lateral) == side).all(), lateral


def test_past_trajectory_and_command_change_the_plan():
    head = _head(use_command=True).eval()
    action, ego = torch.zeros(1, dtype=torch.long), torch.tensor([[5.0, 0.0, 0.0]])
    visual = torch.randn(1, 6 * TOKENS_PER_VIEW, WIDTH)
    past = torch.tensor([[[-8.0, 0.0], [-6.0, 0.0], [-4.0, 0.5], [-2.0, 1.0]]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    base = head(action, ego, visual, past_trajectory=past, past_mask=mask, commands=["go straight"])
    left = head(action, ego, visual, past_trajectory=past, past_mask=mask, commands=["turn left"])
    no_history = head(action, ego, visual, commands=["go straight"])
    masked = head(
        action, ego, visual, past_trajectory=past, past_mask=~mask, commands=["go straight"]
    )
    assert not torch.allclose(base, left)
    assert not torch.allclose(base, no_history)
    torch.testing.assert_close(no_history, masked)  # missing positions carry no value
    with pytest.raises(ConfigError, match="command"):
        head(action, ego, visual, past_trajectory=past, past_mask=mask)
    with pytest.raises(ConfigError, match="unknown driving command"):
        head(action, ego, visual, commands=["fly"])
    with pytest.raises(ConfigError, match="past positions"):
        head(
            action,
            ego,
            visual,
            past_trajectory=past[:, :2],
            past_mask=mask[:, :2],
            commands=["go straight"],
        )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pooling", "max", "pooling"),
        ("training_action", "oracle", "training_action"),
        ("attention_heads", 5, "divisible"),
        ("num_past", -1, "num_past"),
        ("dropout", 1.0, "dropout"),
        ("commands", ("go straight", "go straight"), "distinct"),
    ],
)
def test_bad_planning_head_config_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(PlanningHeadConfig(), **{field: value})


def test_planning_stage_feeds_the_head_the_vlm_s_own_meta_action(tiny_model, monkeypatch):
    model = copy.deepcopy(tiny_model).train()
    batch = synthetic_batch(model.config, batch=2, seed=8)
    scores, _ = model.score_meta_actions(batch["pixel_values"], batch["ego_state"], None)
    seen = []
    forward = model.planning_head.forward

    def spy(action_index, *args, **kwargs):
        seen.append(action_index.clone())
        return forward(action_index, *args, **kwargs)

    monkeypatch.setattr(model.planning_head, "forward", spy)
    model(batch, "planning")
    assert torch.equal(seen[-1], scores.argmax(dim=-1))
    model.config.planning.training_action = "ground_truth"
    model(batch, "planning")
    assert torch.equal(seen[-1], batch["meta_action"])


def test_predict_reads_the_past_trajectory_and_requires_a_command_when_used(tiny_model):
    batch = synthetic_batch(tiny_model.config, batch=2, seed=9)
    pixels, ego = batch["pixel_values"], batch["ego_state"]
    with_past = tiny_model.predict(
        pixels, ego, past_trajectory=batch["past_trajectory"], past_mask=batch["past_mask"]
    )
    without = tiny_model.predict(pixels, ego)
    assert not torch.allclose(with_past.waypoints, without.waypoints)
    model = copy.deepcopy(tiny_model)
    model.config.planning.use_command = True
    assert model.uses_command
    with pytest.raises(ConfigError, match="route command"):
        model.predict(pixels, ego)


def test_a_longer_history_than_the_head_reads_keeps_the_newest_positions():
    head = _head(num_past=2).eval()
    action, ego = torch.zeros(1, dtype=torch.long), torch.tensor([[5.0, 0.0, 0.0]])
    visual = torch.randn(1, 6 * TOKENS_PER_VIEW, WIDTH)
    past = torch.tensor([[[-8.0, 0.0], [-6.0, 0.0], [-4.0, 0.5], [-2.0, 1.0]]])
    mask = torch.tensor([[False, True, True, True]])
    full = head(action, ego, visual, past_trajectory=past, past_mask=mask)
    newest = head(action, ego, visual, past_trajectory=past[:, 2:], past_mask=mask[:, 2:])
    torch.testing.assert_close(full, newest)


def test_the_kinematic_prior_starts_from_constant_velocity():
    head = _head().eval()
    with torch.no_grad():
        head.mlp[-1].weight.zero_()
        head.mlp[-1].bias.zero_()
    ego = torch.tensor([[4.0, 0.0, 0.0], [10.0, 1.0, 0.1]])
    visual = torch.randn(2, 6 * TOKENS_PER_VIEW, WIDTH)
    waypoints = head(torch.zeros(2, dtype=torch.long), ego, visual)
    expected = torch.zeros(2, 6, 2)
    expected[..., 0] = ego[:, :1] * 0.5 * torch.arange(1, 7)
    torch.testing.assert_close(waypoints, expected)
    plain = _head(kinematic_prior=False).eval()
    with torch.no_grad():
        plain.mlp[-1].weight.zero_()
        plain.mlp[-1].bias.zero_()
    assert torch.equal(plain(torch.zeros(2, dtype=torch.long), ego, visual), torch.zeros(2, 6, 2))
