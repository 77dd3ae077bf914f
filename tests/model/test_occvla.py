"""OccVLA: the skippable occupancy branch, gradients, stages, scoring and inference."""

from __future__ import annotations

import copy

import pytest
import torch

from occvla_ros.errors import ConfigError
from tests.model.conftest import synthetic_batch


def test_skipping_occupancy_branch_leaves_meta_action_and_trajectory_bit_identical(tiny_model):
    batch = synthetic_batch(tiny_model.config, batch=2, seed=1)
    without = tiny_model.predict(batch["pixel_values"], batch["ego_state"], with_occupancy=False)
    with_branch = tiny_model.predict(batch["pixel_values"], batch["ego_state"], with_occupancy=True)
    assert without.occupancy is None
    assert with_branch.occupancy.shape == (2, 200, 200, 16)
    assert with_branch.occupancy.dtype == torch.uint8
    assert torch.equal(without.meta_action_indices, with_branch.meta_action_indices)
    assert torch.equal(without.meta_action_scores, with_branch.meta_action_scores)
    assert torch.equal(without.waypoints, with_branch.waypoints)
    assert without.meta_actions == with_branch.meta_actions
    assert without.waypoints.shape == (2, 6, 2)


def test_single_pass_scoring_equals_slow_per_candidate_likelihoods(tiny_model):
    batch = synthetic_batch(tiny_model.config, batch=2, seed=2)
    prediction = tiny_model.predict(batch["pixel_values"], batch["ego_state"])
    texts = tiny_model.config.meta_actions.texts
    slow = torch.empty(2, len(texts))
    with torch.no_grad():
        for row in range(2):
            prompt = tiny_model._prompts({"ego_state": batch["ego_state"][row : row + 1]})
            pixels = batch["pixel_values"][row : row + 1]
            for k, text in enumerate(texts):
                tokens = tiny_model.processor.training_batch(prompt, [text])
                output = tiny_model.backbone(
                    tokens,
                    pixels,
                    logits_to_keep=tokens.input_ids.shape[1],
                    capture_visual=False,
                )
                log_probs = torch.log_softmax(output.logits[0, :-1].float(), dim=-1)
                answer = tokens.labels[0, 1:] != -100
                targets = tokens.labels[0, 1:][answer]
                slow[row, k] = log_probs[answer].gather(-1, targets[:, None]).sum()
    torch.testing.assert_close(prediction.meta_action_scores, slow, rtol=1e-4, atol=1e-4)
    assert torch.equal(prediction.meta_action_indices, slow.argmax(dim=-1))


def test_occupancy_loss_alone_reaches_the_lora_adapters(tiny_model):
    model = copy.deepcopy(tiny_model).train()
    batch = synthetic_batch(model.config, batch=1, seed=3)
    tokens = model.processor.training_batch(model._prompts(batch), batch["meta_action_text"])
    output = model.backbone(tokens, batch["pixel_values"])
    logits = model.occupancy(output.visual_hidden_states)
    loss, _ = model.occupancy.loss(logits, batch["occupancy"], batch["occupancy_mask"])
    loss.backward()
    adapters = {name: p.grad for name, p in model.backbone.named_parameters() if "lora_" in name}
    assert adapters, "no LoRA adapters in the backbone"
    # The feature layer is the last one here: every adapter up to it sees the gradient.
    nonzero = [name for name, grad in adapters.items() if grad is not None and grad.abs().sum() > 0]
    assert len(nonzero) > len(adapters) // 2, nonzero
    assert model.backbone.camera_embeddings.grad.abs().sum() > 0
    projector = [p.grad for n, p in model.backbone.named_parameters() if "modules_to_save" in n]
    assert projector and all(g is not None and g.abs().sum() > 0 for g in projector)


def test_training_steps_never_change_the_frozen_vqvae_decoder(tiny_model):
    model = copy.deepcopy(tiny_model).train()
    before = {k: v.clone() for k, v in model.occupancy.vqvae.state_dict().items()}
    parameters = model.trainable_parameters("occupancy_language")
    frozen = {id(p) for p in model.occupancy.vqvae.parameters()}
    assert not frozen & {id(p) for p in parameters}
    # Even an optimiser given every parameter leaves the decoder alone: it receives no grad.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = synthetic_batch(model.config, batch=1, seed=4)
    for _ in range(2):
        loss, logs = model(batch, "occupancy_language")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert {"text", "occupancy", "occ_ce", "total"} <= set(logs)
    after = model.occupancy.vqvae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.occupancy.vqvae.training is False


@pytest.mark.parametrize("stage", ["qa", "planning"])
def test_other_stages_give_finite_named_losses(tiny_model, stage):
    model = copy.deepcopy(tiny_model).train()
    batch = synthetic_batch(model.config, batch=2, seed=5)
    loss, logs = model(batch, stage)
    loss.backward()
    assert torch.isfinite(loss)
    assert set(logs) == ({"text"} if stage == "qa" else {"planning_l1"})
    if stage == "planning":  # the VLM is frozen: no gradient reaches it
        assert all(p.grad is None for p in model.backbone.parameters())
        assert all(p.grad is not None for p in model.planning_head.parameters())


def test_generate_text_greedy_decodes_a_string_per_sample(tiny_model):
    batch = synthetic_batch(tiny_model.config, batch=2, seed=6)
    answers = tiny_model.generate_text(
        batch["pixel_values"], batch["ego_state"], questions=batch["question"], max_new_tokens=4
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_prediction_switches_a_model_left_in_training_mode_to_eval_once(tiny_model):
    model = copy.deepcopy(tiny_model).train()
    batch = synthetic_batch(model.config, batch=1, seed=7)
    model.predict(batch["pixel_values"], batch["ego_state"])
    assert not any(module.training for module in model.modules())
    model.train()
    model.generate_text(batch["pixel_values"], batch["ego_state"], max_new_tokens=1)
    assert not any(module.training for module in model.modules())


def test_bad_inputs_and_stage_raise_config_errors(tiny_model):
    batch = synthetic_batch(tiny_model.config, batch=1)
    with pytest.raises(ConfigError, match="stage"):
        tiny_model(batch, "pretraining")
    with pytest.raises(ConfigError, match="pixel_values"):
        tiny_model.predict(batch["pixel_values"][:, :5], batch["ego_state"])
    nan_state = batch["ego_state"].clone()
    nan_state[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="finite"):
        tiny_model.predict(batch["pixel_values"], nan_state)


def _saved_bytes_and_gradients(model, batch) -> tuple[int, dict[str, torch.Tensor]]:
    """Bytes autograd keeps for the backward of one occupancy_language loss, and the gradients."""
    saved = []

    def keep(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loss, _ = model(batch, "occupancy_language")
    loss.backward()
    gradients = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return sum(saved), gradients


def test_gradient_checkpointing_keeps_gradients_and_stores_less(tiny_model):
    batch = synthetic_batch(tiny_model.config, batch=1, seed=5)
    plain = copy.deepcopy(tiny_model).train()
    checkpointed = copy.deepcopy(tiny_model).train()
    checkpointed.backbone.enable_gradient_checkpointing()
    plain_bytes, plain_gradients = _saved_bytes_and_gradients(plain, batch)
    checkpointed_bytes, gradients = _saved_bytes_and_gradients(checkpointed, batch)
    assert checkpointed_bytes < plain_bytes
    assert gradients.keys() == plain_gradients.keys()
    assert any("lora_" in name for name in gradients)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, plain_gradients[name], msg=name)


def test_gradient_checkpointing_keeps_the_no_grad_scoring_cache(tiny_model):
    # The planning stage scores meta-actions with a KV cache under no_grad, in training mode,
    # where a checkpointed layer would drop the cache.
    batch = synthetic_batch(tiny_model.config, batch=1, seed=6)
    plain = copy.deepcopy(tiny_model).train()
    checkpointed = copy.deepcopy(tiny_model).train()
    checkpointed.backbone.enable_gradient_checkpointing()
    torch.manual_seed(0)  # the same dropout draws in both
    expected, _ = plain(batch, "planning")
    torch.manual_seed(0)
    loss, _ = checkpointed(batch, "planning")
    torch.testing.assert_close(loss, expected)
    modules = checkpointed.backbone._checkpointed_modules
    assert modules and all(module.gradient_checkpointing for module in modules)
