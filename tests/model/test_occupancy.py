"""The occupancy branch: shapes, one-way data flow, freezing, losses, and learning."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F

from occvla_ros.constants import FREE_CLASS, NUM_OCC_CLASSES, OCC_GRID_SHAPE
from occvla_ros.errors import ConfigError
from occvla_ros.model.losses import lovasz_softmax, masked_cross_entropy
from occvla_ros.model.occupancy import OccupancyBranch, OccupancyBranchConfig
from occvla_ros.model.vqvae import VQVAEConfig

VISUAL_DIM = 32
SMALL_GRID = 40  # the tiny structure on a 40 x 40 x 16 grid: same code paths, 25x less work


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tensors are small: one thread is about as fast unloaded and, on a busy 2-core
    machine, avoids OpenMP stalls measured at 60x (42 s instead of 0.7 s for 10 steps)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _small_config(**overrides) -> OccupancyBranchConfig:
    vqvae = dataclasses.replace(VQVAEConfig.tiny(), spatial_size=(SMALL_GRID, SMALL_GRID))
    tiny = OccupancyBranchConfig.tiny()
    return dataclasses.replace(tiny, vqvae=vqvae, query_grid=(5, 5), **overrides)


def _branch(config: OccupancyBranchConfig, seed: int = 0) -> OccupancyBranch:
    torch.manual_seed(seed)
    return OccupancyBranch(config, visual_dim=VISUAL_DIM)


def _labels(batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, NUM_OCC_CLASSES, (batch, SMALL_GRID, SMALL_GRID, 16), generator=generator
    )


def test_tiny_preset_decodes_the_full_occ3d_grid():
    branch = _branch(OccupancyBranchConfig.tiny())
    visual = torch.randn(1, 12, VISUAL_DIM)
    with torch.no_grad():
        logits = branch(visual)
    assert logits.shape == (1, *OCC_GRID_SHAPE, NUM_OCC_CLASSES)
    occupancy = branch.predict(visual)
    assert occupancy.dtype == torch.uint8
    assert occupancy.shape == (1, *OCC_GRID_SHAPE)
    assert torch.equal(occupancy, logits.argmax(-1).to(torch.uint8))


def test_real_preset_sizes():
    config = OccupancyBranchConfig()
    assert config.query_grid == (50, 50) and config.patch_size == (1, 1)
    assert OccupancyBranchConfig.tiny().patch_size == (5, 5)
    with torch.device("meta"):
        branch = OccupancyBranch(config, visual_dim=2304)
    frozen = sum(p.numel() for p in branch.vqvae.parameters())
    assert frozen == 14_168_272
    trainable = sum(p.numel() for p in branch.trainable_parameters())
    assert trainable + frozen == sum(p.numel() for p in branch.parameters())


def test_the_branch_only_reads_its_input():
    branch = _branch(_small_config()).train()
    for dtype in (torch.float32, torch.bfloat16):
        visual = torch.randn(2, 10, VISUAL_DIM, dtype=dtype, requires_grad=True)
        snapshot, version = visual.detach().clone(), visual._version
        loss, _ = branch.loss(
            branch(visual), _labels(2), torch.ones(2, 40, 40, 16, dtype=torch.bool)
        )
        loss.backward()
        assert visual._version == version  # no in-place operation touched it
        assert torch.equal(visual.detach(), snapshot)
        assert visual.grad is not None and visual.grad.abs().sum() > 0
        assert visual._backward_hooks is None and visual.requires_grad and visual.is_leaf


def test_gradient_reaches_the_visual_tokens_and_never_the_frozen_decoder():
    config = _small_config()
    branch = _branch(config).train()
    assert branch.frozen_modules == ("vqvae",)
    assert not branch.vqvae.training  # kept in eval mode while the branch trains
    frozen_ids = {id(p) for p in branch.vqvae.parameters()}
    trainable = list(branch.trainable_parameters())
    assert trainable and not frozen_ids & {id(p) for p in trainable}
    frozen_before = {name: t.clone() for name, t in branch.vqvae.state_dict().items()}
    trainable_before = [p.detach().clone() for p in trainable]

    # Even an optimiser over ALL parameters (weight decay included) must leave the decoder alone.
    for parameters in (trainable, list(branch.parameters())):
        optimizer = torch.optim.AdamW(parameters, lr=1e-2, weight_decay=0.1)
        for _ in range(2):
            visual = torch.randn(1, 10, VISUAL_DIM, requires_grad=True)
            loss, terms = branch.loss(branch(visual), _labels(), torch.ones(1, 40, 40, 16).bool())
            optimizer.zero_grad()
            loss.backward()
            assert visual.grad is not None and visual.grad.abs().sum() > 0
            assert all(p.grad is None for p in branch.vqvae.parameters())
            optimizer.step()
    assert set(terms) == {"occ_ce"}
    for name, tensor in branch.vqvae.state_dict().items():
        assert torch.equal(tensor, frozen_before[name]), name
    assert any(not torch.equal(p, b) for p, b in zip(trainable, trainable_before, strict=True))


def test_unfreezing_the_decoder_is_refused():
    branch = _branch(_small_config())
    branch.requires_grad_(False).requires_grad_(True)  # the branch's own switch keeps it frozen
    assert not any(p.requires_grad for p in branch.vqvae.parameters())
    assert all(p.requires_grad for n, p in branch.named_parameters() if not n.startswith("vqvae."))
    torch.nn.Sequential(branch).requires_grad_(True)  # a parent unfreezing everything
    with pytest.raises(ConfigError, match=r"frozen VQ-VAE require grad \(first: vqvae\."):
        branch(torch.randn(1, 4, VISUAL_DIM))


def test_camera_mask_restricts_the_loss():
    branch = _branch(_small_config(class_weights=tuple(range(1, NUM_OCC_CLASSES + 1))))
    labels = _labels()
    mask = torch.rand(labels.shape, generator=torch.Generator().manual_seed(1)) < 0.3
    logits = torch.randn(*labels.shape, NUM_OCC_CLASSES, requires_grad=True)
    loss, _ = branch.loss(logits, labels, mask)
    loss.backward()
    assert logits.grad[~mask].abs().max() == 0  # voxels outside the mask do not count
    assert logits.grad[mask].abs().max() > 0
    # Same value as PyTorch's weighted mean cross-entropy over the visible voxels only.
    expected = F.cross_entropy(logits[mask], labels[mask], weight=branch.class_weights)
    torch.testing.assert_close(loss, expected)
    # Changing labels outside the mask changes nothing.
    relabelled = torch.where(mask, labels, (labels + 1) % NUM_OCC_CLASSES)
    torch.testing.assert_close(branch.loss(logits, relabelled, mask)[0], loss)

    unmasked = _branch(_small_config(use_camera_mask=False))
    full, _ = unmasked.loss(logits, labels, mask)  # the mask is ignored when not configured
    torch.testing.assert_close(full, F.cross_entropy(logits.reshape(-1, 18), labels.reshape(-1)))
    with pytest.raises(ConfigError, match="camera_mask must be a bool tensor"):
        branch.loss(logits, labels, None)


def test_loss_rejects_labels_outside_the_classes():
    branch = _branch(_small_config(use_camera_mask=False))
    labels = _labels()
    labels[0, 0, 0, 0] = 255
    with pytest.raises(ConfigError, match=r"\[0, 18\), got 0\.\.255"):
        branch.loss(torch.zeros(*labels.shape, NUM_OCC_CLASSES), labels)


def test_loss_of_bf16_logits_is_computed_in_fp32():
    branch = _branch(_small_config(lovasz_weight=1.0, use_camera_mask=False))
    labels = _labels()
    logits = torch.randn(*labels.shape, NUM_OCC_CLASSES).to(torch.bfloat16)
    loss, terms = branch.loss(logits, labels)
    reference, reference_terms = branch.loss(logits.float(), labels)
    assert torch.equal(loss, reference)
    assert loss.dtype == torch.float32
    assert terms == pytest.approx(reference_terms, rel=1e-6)


def test_masked_cross_entropy_with_nothing_visible_is_zero_not_nan():
    logits = torch.randn(50, 4, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.zeros(50, dtype=torch.long), torch.zeros(50).bool())
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad.abs().sum() == 0


def _one_hot(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(classes, num_classes).float()


def test_lovasz_is_zero_on_a_perfect_prediction_and_one_minus_iou_on_hard_ones():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (400,), generator=generator)
    assert lovasz_softmax(_one_hot(labels, 6), labels).item() == 0.0

    predicted = torch.where(torch.rand(400, generator=generator) < 0.3, (labels + 1) % 6, labels)
    ious = []
    for c in labels.unique().tolist():
        intersection = ((predicted == c) & (labels == c)).sum().item()
        union = ((predicted == c) | (labels == c)).sum().item()
        ious.append(intersection / union)
    expected = 1.0 - sum(ious) / len(ious)
    loss = lovasz_softmax(_one_hot(predicted, 6), labels)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() > 0.2

    valid = torch.rand(400, generator=generator) < 0.5
    restricted = lovasz_softmax(_one_hot(predicted, 6), labels, valid)
    assert restricted.item() == pytest.approx(
        lovasz_softmax(_one_hot(predicted[valid], 6), labels[valid]).item(), abs=1e-7
    )


def test_lovasz_gradient_lowers_the_loss():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (300,), generator=generator)
    logits = torch.randn(300, 4, generator=generator, requires_grad=True)
    before = lovasz_softmax(logits.softmax(-1), labels)
    before.backward()
    with torch.no_grad():
        after = lovasz_softmax((logits - 5.0 * logits.grad).softmax(-1), labels)
    assert after < before


def test_branch_reports_the_lovasz_term_when_enabled():
    branch = _branch(_small_config(lovasz_weight=0.5, use_camera_mask=False))
    labels = _labels()
    logits = torch.randn(*labels.shape, NUM_OCC_CLASSES)
    loss, terms = branch.loss(logits, labels)
    assert set(terms) == {"occ_ce", "occ_lovasz"}
    assert loss.item() == pytest.approx(terms["occ_ce"] + 0.5 * terms["occ_lovasz"], rel=1e-5)


def test_quantized_predictions_are_codebook_vectors_with_straight_through_gradient():
    branch = _branch(_small_config(quantize_predictions=True))
    visual = torch.randn(1, 6, VISUAL_DIM, requires_grad=True)
    captured = []
    handle = branch.vqvae.vqvae.post_quant_conv.register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0])
    )
    logits = branch(visual)
    handle.remove()
    codes = captured[0].detach().permute(0, 2, 3, 1).reshape(-1, 32)  # [cells, C]
    distances = torch.cdist(codes, branch.vqvae.vqvae.embedding.weight)  # [cells, K]
    assert distances.min(dim=1).values.max() < 1e-4  # codes are ~0.07 apart
    logits.logsumexp(-1).sum().backward()
    assert visual.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"query_grid": (7, 7)}, r"query_grid \(7, 7\) must be two sizes that divide"),
        ({"hidden_dim": 30}, "hidden_dim=30 must be divisible by num_heads=4"),
        ({"ce_weight": 0.0}, "not both 0, got 0.0 and 0.0"),
        ({"class_weights": (1.0, 2.0)}, r"18 values >= 0, got \(1.0, 2.0\)"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"vqvae": {"bogus": 1}}, r"vqvae: unknown keys \['bogus'\]"),
    ],
)
def test_config_errors_name_the_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(OccupancyBranchConfig.tiny(), **overrides)


def test_config_round_trips_through_plain_data():
    config = OccupancyBranchConfig.tiny()
    plain = dataclasses.asdict(config)
    plain["query_grid"] = list(plain["query_grid"])  # as YAML gives it back
    assert OccupancyBranchConfig(**plain) == config


def test_predict_restores_the_training_mode():
    branch = _branch(_small_config()).train()
    branch.predict(torch.randn(1, 4, VISUAL_DIM))
    assert branch.training and not branch.vqvae.training


@pytest.mark.slow  # ~2 s alone, much more on a busy 2-core machine
def test_tiny_branch_overfits_one_scene_through_the_frozen_decoder():
    """The branch learns to produce one scene through the frozen (random) decoder.

    The scene is one the frozen decoder can express (decoded from a reference latent grid), so
    the test measures the branch's learning, not a random decoder's capacity; with OccWorld's
    trained decoder any plausible scene is expressible.
    """
    branch = _branch(_small_config(use_camera_mask=False))
    with torch.no_grad():
        reference = torch.randn(1, 32, 10, 10, generator=torch.Generator().manual_seed(3))
        scene = branch.vqvae.decode_latents(reference).argmax(-1)  # [1, 40, 40, 16]
    occupied = scene != FREE_CLASS
    visual = torch.randn(1, 24, VISUAL_DIM, generator=torch.Generator().manual_seed(4))

    def occupied_accuracy() -> float:
        predicted = branch.predict(visual).long()
        return (predicted[occupied] == scene[occupied]).float().mean().item()

    optimizer = torch.optim.AdamW(branch.trainable_parameters(), lr=1e-2)
    initial_accuracy = occupied_accuracy()
    losses = []
    for _ in itertools.repeat(None, 100):
        loss, terms = branch.loss(branch(visual), scene)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(terms["occ_ce"])
    final_accuracy = occupied_accuracy()
    assert losses[-1] < 0.85 * losses[0]
    assert final_accuracy > initial_accuracy + 0.25, (initial_accuracy, final_accuracy)
